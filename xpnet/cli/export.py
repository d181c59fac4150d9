"""``xpnet export``: a saved model as a file another runtime serves (ONNX)."""

from __future__ import annotations

import argparse

from ..io import check_writable
from .files import as_flags, check_npz, check_paths


def cmd_export(args: argparse.Namespace) -> int:
    """Write ``--model`` as ``--onnx`` (opset 12, :func:`xpnet.export_onnx`); one line on success."""
    from ..export import OPSET, export_onnx, require_onnx
    from ..model import load

    check_paths([("--model", args.model)], [("--onnx", args.onnx)])
    check_writable(args.onnx, "--onnx")
    require_onnx()  # a missing onnx package is said before the model is read
    check_npz("--model", args.model, "an xpnet model file")
    with as_flags(("path", "--model", args.model)):
        model = load(args.model)
    with as_flags(("path", "--onnx", args.onnx)):
        export_onnx(model, args.onnx)
    k = model.sizes[-1]
    label = "string" if model.classes is not None and model.classes.dtype.kind == "U" else "int64"
    outputs = (f"variable {model.dtype} (N, {k})" if not model.is_classifier else
               f"label {label} (N{f', {k}' if model.multilabel else ''}), probabilities {model.dtype} (N, {k})")
    print(f"wrote {args.onnx}: ONNX opset {OPSET}, input X {model.dtype} (N, {model.sizes[0]}), outputs {outputs}")
    return 0
