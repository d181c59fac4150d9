"""ONNX out: the whole model (input scaler, every layer, output, class labels) as one graph.

:func:`to_onnx` builds the graph and :func:`export_onnx` writes it (atomically, as every xpnet
file). The graph follows skl2onnx's conventions for scikit-learn models (its ``to_onnx`` with
``zipmap=False``): one input ``X`` ``(N, n_in)`` in the model's dtype with a dynamic batch size
``N``; a classifier returns ``label`` first, then ``probabilities``; a regressor returns ``variable``.

- ``label``: ``(N,)`` class labels, int64 or string from ``model.classes`` (``0..k-1`` without
  them): the arg-max of the probabilities, or ``p >= 0.5`` for one sigmoid unit, gathered from
  the class list; a multi-label model's ``(N, k)`` 0/1 rows (int64), as :meth:`MLP.predict`.
- ``probabilities``: ``(N, k)`` in the model's dtype, :meth:`MLP.predict_proba` (one sigmoid
  unit: ``(N, 1)``, the probability of ``classes[1]``).
- ``variable``: ``(N, n_out)`` a regressor's outputs in its targets' units (the target scaler
  undone), skl2onnx's shape: :meth:`MLP.predict` gives ``(N,)`` for one output.

Opset 12 of the default domain (:data:`OPSET`), IR version 7: the lowest opset that has every
operator used (``GreaterOrEqual`` came in 12). GELU (``Gelu``, opset 20) and layer norm
(``LayerNormalization``, 17) are built from primitives instead, the same arithmetic as
:mod:`xpnet.activations` and :mod:`xpnet.layers` in the same order, so that older runtimes load
the file and its numbers follow xpnet's step by step. ONNX has no ``log1p``/``expm1``: softplus
is ``Log(1 + Exp(-|z|)) + Max(z, 0)`` and ELU ``Exp(Min(z, 0)) - 1`` below 0, both without
overflow and off from xpnet's by under one float32 step of 1 (absolute). Sigmoid is xpnet's
overflow-free two-branch form, and leaky ReLU and ELU are ``Where`` nodes (onnxruntime has no
float64 ``LeakyRelu`` or ``Elu``). Dropout is not in the graph (inference); batch norm is its
eval-mode arithmetic with the running statistics, ``(z - mean) * invstd * gamma + beta``.

A function of the model, not an ``MLP`` method: this module ranks above ``model`` (it writes
through ``io``), and a lower room never imports a higher one. scikit-learn's estimators have
``export_onnx(path)``, which passes their own ``predict``'s conventions as an :class:`ExportHead`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from ._version import __version__
from .activations import GELU_C, GELU_K, LEAKY_SLOPE
from .backend import to_numpy
from .io import atomic_write
from .layers import EPS

OPSET = 12  # the default domain's opset of every exported graph (see the module docstring)
IR_VERSION = 7  # the ONNX file format version that opset 12 came with (onnx 1.7): read by onnxruntime >= 1.3
ONNX_HINT = ('ONNX export needs the onnx package: pip install "onnx>=1.16" (and "onnxruntime>=1.18" to run the file; '
             'from a checkout, pip install ".[onnx]")')
PROTO_LIMIT = 2**31 - 1  # protobuf's limit on one serialized message: larger models would need external data


class ExportHead(NamedTuple):
    """How the network's outputs become the graph's results where a wrapper's ``predict`` and
    ``predict_proba`` differ from :class:`~xpnet.MLP`'s (scikit-learn's estimators)."""

    classes: Any = None  # the labels of outputs 0..k-1 (one sigmoid unit: of 0 and 1) in place of model.classes
    both_columns: bool = False  # one sigmoid unit: probabilities (N, 2) = [1 - p, p], scikit-learn's predict_proba
    above_half: bool = False  # a sigmoid unit is on at p > 0.5 (scikit-learn), not p >= 0.5 (xpnet)
    exp: bool = False  # a regressor's outputs go through exp (MLPRegressor(loss="poisson"))


def require_onnx():
    """The onnx package, or a ValueError with the one line that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ValueError(ONNX_HINT) from None
    return onnx


class _Graph:
    """The nodes and constants of a graph being built, each value named in order."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx, self.dtype = onnx, dtype
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: Any, dtype: Any = None, name: str | None = None) -> str:
        """An initializer holding ``value`` in ``dtype`` (default: the model's)."""
        name = name or self._name("c")
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        """One node of ``op_type``; returns the name of its one output."""
        out = out or self._name(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], name=f"{op_type}_{len(self.nodes)}",
                                                     **attrs))
        return out


def _sigmoid(g: _Graph, z: str) -> str:
    # activations.sigmoid: exp only sees -|z|; 1 / (1 + e) where z >= 0, e / (1 + e) below
    e = g.op("Exp", g.op("Neg", g.op("Abs", z)))
    d = g.op("Add", e, g.const(1.0))
    return g.op("Where", g.op("GreaterOrEqual", z, g.const(0.0)), g.op("Div", g.const(1.0), d), g.op("Div", e, d))


def _gelu(g: _Graph, z: str) -> str:
    # 0.5 z (1 + tanh(c (z + k z^3))), in activations._gelu's order
    cube = g.op("Mul", g.op("Mul", g.op("Mul", g.const(GELU_K), z), z), z)
    t = g.op("Tanh", g.op("Mul", g.const(GELU_C), g.op("Add", z, cube)))
    return g.op("Mul", g.op("Mul", g.const(0.5), z), g.op("Add", g.const(1.0), t))


def _elu(g: _Graph, z: str) -> str:
    below = g.op("Sub", g.op("Exp", g.op("Min", z, g.const(0.0))), g.const(1.0))  # exp of min(z, 0): no overflow
    return g.op("Where", g.op("Greater", z, g.const(0.0)), z, below)


def _softplus(g: _Graph, z: str) -> str:
    e = g.op("Exp", g.op("Neg", g.op("Abs", z)))  # log(1 + exp(-|z|)) + max(z, 0)
    return g.op("Add", g.op("Log", g.op("Add", g.const(1.0), e)), g.op("Max", z, g.const(0.0)))


ACTIVATIONS = {  # name -> (graph, input) -> output, as xpnet.activations.ACTIVATIONS computes it
    "sigmoid": _sigmoid,
    "tanh": lambda g, z: g.op("Tanh", z),
    "relu": lambda g, z: g.op("Relu", z),
    "leaky_relu": lambda g, z: g.op("Where", g.op("Greater", z, g.const(0.0)), z, g.op("Mul", g.const(LEAKY_SLOPE), z)),
    "identity": lambda g, z: z,
    "gelu": _gelu,
    "silu": lambda g, z: g.op("Mul", z, _sigmoid(g, z)),
    "elu": _elu,
    "softplus": _softplus,
    "softmax": lambda g, z: g.op("Softmax", z, axis=1),
}


def _batch_norm(g: _Graph, z: str, gamma, beta, mean, var) -> str:
    # eval mode (layers.batch_norm_forward): the running statistics, invstd in the model dtype as there
    invstd = (var + EPS) ** -0.5  # (n,)
    xhat = g.op("Mul", g.op("Sub", z, g.const(mean)), g.const(invstd))
    return g.op("Add", g.op("Mul", xhat, g.const(gamma)), g.const(beta))


def _layer_norm(g: _Graph, z: str, gamma, beta) -> str:
    # layers.layer_norm_forward: mean and biased variance over each row's n units
    n = gamma.shape[0]
    axes, per_unit = {"axes": [1], "keepdims": 1}, g.const(1.0 / n)
    xc = g.op("Sub", z, g.op("Mul", g.op("ReduceSum", z, **axes), per_unit))  # (N, n)
    var = g.op("Mul", g.op("ReduceSum", g.op("Mul", xc, xc), **axes), per_unit)  # (N, 1)
    invstd = g.op("Pow", g.op("Add", var, g.const(EPS)), g.const(-0.5))
    return g.op("Add", g.op("Mul", g.op("Mul", xc, invstd), g.const(gamma)), g.const(beta))


def _label_table(classes: Any) -> np.ndarray | None:
    """Class labels as an ONNX-ready host array (int64, bool, float64 or str), ``None`` for ``0..k-1``."""
    if classes is None:
        return None
    arr = np.asarray(classes)
    if arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr.tolist()):
        arr = arr.astype(str)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
        return None if np.array_equal(arr, np.arange(len(arr))) else arr
    if arr.dtype.kind == "U":
        return arr.astype(object)  # onnx stores strings from an object array
    if arr.dtype.kind in "bf":
        return arr.astype(np.bool_ if arr.dtype.kind == "b" else np.float64)
    raise ValueError(f"classes of dtype {arr.dtype} cannot be ONNX labels: expected integers, strings, booleans or floats")


def _check_model(model) -> None:
    """ValueError for a model whose scalers are still to be fitted."""
    if model.unfitted:
        raise ValueError(f"the model's {' and '.join(model.unfitted)} (given as a kind) is not fitted yet: fit the model "
                         "(or call model.prepare(X, y)) before exporting it, so that the graph carries the fitted scaler")


def to_onnx(model, head: ExportHead | None = None):
    """The whole model as an ``onnx.ModelProto`` (opset :data:`OPSET`): the input scaler, every
    layer in eval mode, the output and the class labels (see the module docstring).

    Args:
        model: an :class:`~xpnet.MLP` on any backend (its parameters are read to the host).
        head: where a wrapper's predictions differ from the model's (:class:`ExportHead`); ``None``: the model's own.

    Returns:
        an ``onnx.ModelProto`` with input ``X`` ``(N, n_in)`` and outputs ``label`` ``(N,)`` and
        ``probabilities`` ``(N, k)`` (a classifier) or ``variable`` ``(N, n_out)`` (a regressor), in
        the model's dtype (float32 or float64). ``onnx.checker`` has checked it.

    Raises:
        ValueError: the onnx package is missing (the line says how to install it), or the model's
            scalers are not fitted yet.
    """
    onnx = require_onnx()
    head = head or ExportHead()
    _check_model(model)
    dtype = np.dtype(model.dtype)
    g = _Graph(onnx, dtype)
    params = [to_numpy(p).astype(dtype, copy=False) for p in model.params]
    index = model.layout.index
    a = "X"
    if model.scaler is not None:  # (x - shift) * factor, the shift and factor in the model dtype (MLP._features)
        a = g.op("Mul", g.op("Sub", a, g.const(model.scaler.shift, name="scale.shift")),
                 g.const(model.scaler.factor, name="scale.factor"))
    last = model.n_layers - 1
    for l in range(model.n_layers):
        z = g.op("Gemm", a, g.const(params[index("W", l)], name=f"W{l + 1}"), g.const(params[index("b", l)], name=f"b{l + 1}"))
        if l == last:
            break
        block = model.blocks[l]
        if block.norm == "batch":
            mean, var = (to_numpy(r).astype(dtype, copy=False) for r in model.running[l])
            z = _batch_norm(g, z, params[index("gamma", l)], params[index("beta", l)], mean, var)
        elif block.norm == "layer":
            z = _layer_norm(g, z, params[index("gamma", l)], params[index("beta", l)])
        f = ACTIVATIONS[block.activation](g, z)  # dropout: training only
        a = g.op("Add", f, a) if block.residual else f
    out = ACTIVATIONS[model.output](g, z)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    k = model.sizes[-1]
    if not model.is_classifier:
        if model.target_scaler is not None:  # MLP._unscaled: A / factor + shift
            out = g.op("Add", g.op("Div", out, g.const(model.target_scaler.factor, name="target.factor")),
                       g.const(model.target_scaler.shift, name="target.shift"))
        if head.exp:
            out = g.op("Exp", out)
        g.op("Identity", out, out="variable")
        outputs = [onnx.helper.make_tensor_value_info("variable", elem, ["N", k])]
    else:
        on = "Greater" if head.above_half else "GreaterOrEqual"
        if model.multilabel:  # (N, k) 0/1 rows
            g.op("Cast", g.op(on, out, g.const(0.5)), out="label", to=onnx.TensorProto.INT64)
            label_info = onnx.helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N", k])
        else:
            if k > 1:
                idx = g.op("ArgMax", out, axis=1, keepdims=0)  # the first of equal maxima, as NumPy's
            else:
                idx = g.op("Reshape", g.op("Cast", g.op(on, out, g.const(0.5)), to=onnx.TensorProto.INT64),
                           g.const([-1], np.int64))
            table = _label_table(model.classes if head.classes is None else head.classes)
            if table is None:
                g.op("Identity", idx, out="label")
                label_type = onnx.TensorProto.INT64
            else:
                g.op("Gather", g.const(table, table.dtype, name="classes"), idx, out="label", axis=0)
                label_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(str) if table.dtype == object else table.dtype)
            label_info = onnx.helper.make_tensor_value_info("label", label_type, ["N"])
        columns = k
        if head.both_columns and k == 1:
            out = g.op("Concat", g.op("Sub", g.const(1.0), out), out, axis=1)
            columns = 2
        g.op("Identity", out, out="probabilities")
        outputs = [label_info, onnx.helper.make_tensor_value_info("probabilities", elem, ["N", columns])]
    graph = onnx.helper.make_graph(g.nodes, "xpnet_mlp", [onnx.helper.make_tensor_value_info("X", elem, ["N", model.sizes[0]])],
                                   outputs, initializer=g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                                   producer_name="xpnet", producer_version=__version__,
                                   doc_string=f"xpnet MLP {model.sizes}, {model.activation} hidden, {model.output} output")
    if proto.ByteSize() > PROTO_LIMIT:
        raise ValueError(f"the model's {model.n_params:,} parameters make an ONNX file over 2 GiB, protobuf's limit for one "
                         "message: xpnet writes ONNX files up to that size")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path: str | os.PathLike, head: ExportHead | None = None) -> None:
    """Write ``model`` to ``path`` as an ONNX file (opset 12) that onnxruntime runs on its own.

    The graph (:func:`to_onnx`) carries the input scaler, every layer in eval mode (batch norm's
    running statistics, no dropout), the output activation, a regressor's target unscaling, and
    the class labels: input ``X`` ``(N, n_in)`` in the model's dtype, outputs ``label`` and
    ``probabilities`` (classifiers) or ``variable`` (regressors), skl2onnx's names. The write is
    atomic: a failed export leaves no file, and an existing one unchanged.

    Raises:
        ValueError: the onnx package is missing, the model's scalers are not fitted, or ``path``
            cannot be written (a directory, a missing directory).
    """
    proto = to_onnx(model, head)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
