"""Each fused kernel's arithmetic against the generic ``xp`` code it replaces, on the CPU.

The kernels' one C source is built here by the machine's C compiler
(:class:`xpnet.kernels.HostKernels`): every work item runs, in order, on one thread, so what
is checked is the arithmetic of each item, in float32 (to 1e-6 relative) and float64 (to
1e-12), on odd sizes, with every output poisoned beforehand (NaN or garbage) so that an
element a kernel forgets to write shows. That the same text compiles for a GPU is
tests/test_nvrtc.py's; how its threads share the work is the device run's.
"""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import kernels as K
from xpnet.activations import ACTIVATIONS
from xpnet.losses import softmax_cross_entropy
from xpnet.optim import SGD, Adam

pytestmark = [
    pytest.mark.kernels,
    pytest.mark.skipif(K.c_compiler() is None, reason="no C compiler (tried $CC, cc, gcc) to build the CPU kernels"),
]

RTOL = {"float32": 1e-6, "float64": 1e-12}
SHAPES = [(1, 1), (1, 7), (5, 1), (7, 13), (33, 10), (64, 128)]


@pytest.fixture(scope="module", params=["float32", "float64"])
def k(request):
    return K.HostKernels(request.param)


def close(actual, expected, dtype, scale=None):
    """Equal to ``rtol`` of the dtype, relative to the largest expected magnitude (or ``scale``)."""
    expected = np.asarray(expected, dtype=np.float64)
    top = scale if scale is not None else max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL[dtype], atol=RTOL[dtype] * top)


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def test_every_kernel_has_one_source_with_a_declaration_both_compilers_read():
    for name in K.KERNELS:
        text = K.source(name)
        assert text.count("KERNEL void") == 1 and f"KERNEL void {name}(" in text
        assert all(p.kind in ("real*", "double*", "long long*", "int*", "double", "long long", "int") for p in K.signature(name))
    for compiler in ("c", "cuda"):
        body = K.module_source("float32", compiler)
        assert all(f"KERNEL void {name}(" in body for name in K.KERNELS)


@pytest.mark.parametrize("act", list(K.ACTIVATION_CODES))
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_act_is_the_layer_forward(k, act, shape):
    rng = np.random.default_rng(hash((act, shape)) % 2**32)
    Z, b = rand(rng, shape, k.dtype, 3.0), rand(rng, shape[1:], k.dtype)
    if Z.size > 2:  # the sigmoid's and tanh's far ends: no overflow, exact saturation
        Z.flat[0], Z.flat[1] = 90.0, -90.0
    expected = ACTIVATIONS[act].forward(np, Z + b)
    out = Z.copy()
    k("bias_act", Z.size, out, b, shape[0], shape[1], K.ACTIVATION_CODES[act])
    close(out, expected, k.dtype)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("act", list(K.ACTIVATION_CODES))
@pytest.mark.parametrize("shape", SHAPES)
def test_act_backward_is_the_layer_backward(k, act, shape):
    rng = np.random.default_rng(hash((act, shape, 1)) % 2**32)
    A = ACTIVATIONS[act].forward(np, rand(rng, shape, k.dtype, 2.0))
    dA = rand(rng, shape, k.dtype)
    expected = ACTIVATIONS[act].backward(np, A, dA)
    out = dA.copy()
    k("act_backward", A.size, out, A, A.size, K.ACTIVATION_CODES[act])
    close(out, expected, k.dtype)


@pytest.mark.parametrize("rows,classes", [(1, 2), (7, 3), (33, 10), (64, 10), (5, 17)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_xent_is_the_generic_head(k, rows, classes, eps, weighted):
    rng = np.random.default_rng(rows * 100 + classes)
    Z, b = rand(rng, (rows, classes), k.dtype, 4.0), rand(rng, (classes,), k.dtype)
    labels = rng.integers(0, classes, rows).astype(np.int64)
    W = rng.uniform(0.2, 2.0, rows).astype(k.dtype)
    if rows > 1:
        Z[0, :], labels[0] = -b, 0  # logits all 0: a tie, and the first of the equal largest is the prediction
        Z[1, :] = 200.0 * np.arange(classes) - 100.0  # far apart: no overflow
    Y = np.zeros((rows, classes), k.dtype)
    Y[np.arange(rows), labels] = 1.0
    logits = Z + b
    scale = 1.0 / rows
    loss, dZ = softmax_cross_entropy(np, logits, Y, scale, None, eps, W if weighted else None)
    if weighted:
        dZ = dZ * W[:, None]
    correct = int(np.sum(np.argmax(logits, axis=1) == labels))

    step = 3
    record = np.full(5, 0.0)
    record[step] = 0.0
    pos = np.array([step], np.int64)
    out = Z.copy()
    k("softmax_xent", rows, out, b, labels, W if weighted else np.full(1, np.nan, k.dtype), pos, rows, classes, eps,
      scale, int(weighted), record, record[4:5])
    close(out, dZ, k.dtype)
    close(record[step], loss, k.dtype)
    assert record[4] == correct and pos[0] == step  # the head reads the counter, never moves it
    assert np.count_nonzero(record[:4]) == 1  # the loss lands in the step's own slot


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("m,cols,batch", [(10, 3, 4), (13, 1, 5), (64, 17, 64), (7, 5, 1)])
def test_gather_takes_the_counter_s_batch_and_writes_the_step_s_scalars(k, shuffled, weighted, m, cols, batch):
    rng = np.random.default_rng(m * cols)
    X, L = rand(rng, (m, cols), k.dtype), rng.integers(0, 9, m).astype(np.int64)
    Wall = rng.uniform(size=m).astype(k.dtype)
    order = rng.permutation(m).astype(np.int64)
    steps = -(-m // batch)
    sched = np.array([41.0, *(0.1 * (i + 1) for i in range(steps))])
    for p in range(steps):
        rows = min(batch, m - p * batch)
        idx = order[p * batch:p * batch + rows] if shuffled else np.arange(p * batch, p * batch + rows)
        Xb, Lb = np.full((rows, cols), np.nan, k.dtype), np.full(rows, -7, np.int64)
        Wb = np.full(rows, np.nan, k.dtype) if weighted else np.zeros(1, k.dtype)
        scalars = np.full(2, np.nan)
        pos = np.array([p], np.int64)
        k("gather", rows * cols, X, L, Wall if weighted else np.zeros(1, k.dtype), order if shuffled else np.zeros(1, np.int64),
          pos, sched, batch, rows, cols, int(shuffled), int(weighted), Xb, Lb, Wb, scalars)
        np.testing.assert_array_equal(Xb, X[idx])
        np.testing.assert_array_equal(Lb, L[idx])
        if weighted:
            np.testing.assert_array_equal(Wb, Wall[idx])
        assert scalars.tolist() == [sched[1 + p], 41.0 + p + 1] and pos[0] == p


def _generic_update(opt, P, G, steps, n_decay, lrs, t_before):
    """``opt``'s generic update on a host copy of ``P``, ``steps`` times with per-step rates,
    its step count starting at ``t_before``."""
    P = P.copy()
    opt.attach([P], decay=[n_decay])
    opt.t = t_before
    for s in range(steps):
        opt.set_lr(lrs[s])
        opt.update([P], [G[s]])
    return P, opt


OPTS = {
    "sgd": lambda: SGD(0.1),
    "momentum+wd": lambda: SGD(0.1, momentum=0.9, weight_decay=0.01),
    "nesterov+wd": lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "nesterov": lambda: SGD(0.1, momentum=0.5, nesterov=True),
    "adam": lambda: Adam(1e-3),
    "adamw": lambda: Adam(3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
}


@pytest.mark.parametrize("name", list(OPTS))
@pytest.mark.parametrize("n,n_decay", [(1, 1), (7, 3), (1000, 900), (129, 0)])
def test_update_kernels_are_the_optimizers_rules(k, name, n, n_decay):
    rng = np.random.default_rng(n + n_decay)
    steps = 4
    P, G = rand(rng, (n,), k.dtype), [rand(rng, (n,), k.dtype) for _ in range(steps)]
    lrs = [0.1, 0.05, 0.2, 0.01] if name.startswith(("sgd", "mom", "nest")) else [1e-3, 2e-3, 5e-4, 1e-3]
    t_before = 10  # Adam's t comes from the device's step count: start it elsewhere than 0
    expected, opt = _generic_update(OPTS[name](), P, G, steps, n_decay, lrs, t_before)
    fresh = opt
    out = P.copy()
    pos = np.array([0], np.int64)
    sched = np.array([float(t_before), *lrs])
    record = np.full(2, 0.0)
    state = [np.zeros(n, k.dtype), np.zeros(n, k.dtype)]
    for s in range(steps):
        scalars = np.array([sched[1 + s], sched[0] + s + 1])  # what gather writes
        g = G[s].copy()
        if isinstance(fresh, Adam):
            k("adam", n, out, g, state[0], state[1], scalars, n, n_decay, *fresh.betas, fresh.eps, fresh.weight_decay,
              pos, record[1:])
        else:
            k("sgd", n, out, g, state[0] if fresh.momentum else np.zeros(1, k.dtype), scalars, n, n_decay, fresh.momentum,
              fresh.weight_decay, int(fresh.nesterov), pos, record[1:])
        np.testing.assert_array_equal(g, G[s])  # the gradient is only read
    close(out, expected, k.dtype)
    assert pos[0] == steps and record[1] == 0.0  # the counter advanced once a step; every weight finite
    if isinstance(fresh, Adam):
        close(state[0], opt.m[0], k.dtype)
        close(state[1], opt.v[0], k.dtype)
    elif fresh.momentum:
        close(state[0], opt.velocity[0], k.dtype)


@pytest.mark.parametrize("kernel", ["sgd", "adam"])
def test_a_non_finite_weight_raises_the_epoch_s_flag(k, kernel):
    n = 9
    P, G = np.ones(n, k.dtype), np.ones(n, k.dtype)
    G[4] = np.inf
    pos, flag = np.zeros(1, np.int64), np.zeros(1)
    scalars = np.array([0.1, 1.0])
    if kernel == "sgd":
        k("sgd", n, P, G, np.zeros(1, k.dtype), scalars, n, n, 0.0, 0.0, 0, pos, flag)
    else:
        k("adam", n, P, G, np.zeros(n, k.dtype), np.zeros(n, k.dtype), scalars, n, n, 0.9, 0.999, 1e-8, 0.0, pos, flag)
    assert flag[0] == 1.0 and pos[0] == 1


def test_arguments_are_checked_before_a_launch(k):
    Z = np.zeros((2, 3), k.dtype)
    with pytest.raises(TypeError, match="takes 5 arguments"):
        k("bias_act", 6, Z, np.zeros(3, k.dtype), 2, 3)
    other = "float64" if k.dtype == "float32" else "float32"
    with pytest.raises(TypeError, match=r"kernel bias_act: b must be a C-contiguous"):
        k("bias_act", 6, Z, np.zeros(3, other), 2, 3, 1)
    with pytest.raises(TypeError, match=r"kernel bias_act: Z must be a C-contiguous"):
        k("bias_act", 6, np.zeros((3, 2), k.dtype).T, np.zeros(3, k.dtype), 2, 3, 1)


def test_the_c_build_reports_a_broken_kernel_with_the_compiler_s_message(tmp_path, monkeypatch):
    broken = K.module_source("float32", "c").replace("const real z = Z[i] + b[i % cols];", "const real z = Z[i] + undefined_b;")
    monkeypatch.setattr(K, "module_source", lambda dtype, compiler: broken)
    with pytest.raises(RuntimeError, match=r"could not build the fused kernels for float32:(.|\n)*undefined_b"):
        K.build_library("float32", str(tmp_path))
