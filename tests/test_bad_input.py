"""Bad input at every library entry point: a ValueError naming the argument, the value and what is expected."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet

rng = np.random.default_rng(0)
X = rng.normal(size=(6, 3)).astype(np.float32)
LABELS = np.array([0, 1, 2, 1, 0, 2])


def _nan_X():
    bad = X.copy()
    bad[2, 1] = np.nan
    return bad


def _inf_X():
    bad = X.copy()
    bad[0, 0] = np.inf
    return bad


# (X, y, regex the message must match)
DATA_CASES = {
    "nan in X": (_nan_X(), LABELS, r"X contains 1 NaN or infinite"),
    "inf in X": (_inf_X(), LABELS, r"X contains 1 NaN or infinite"),
    "wrong feature count": (X[:, :2], LABELS, r"X has 2 features .* first size is 3.*\(m, 3\)"),
    "1-D X": (X[:, 0], LABELS, r"X has shape \(6,\): expected a 2-D array"),
    "3-D X": (X[:, :, None], LABELS, r"X has shape \(6, 3, 1\): expected a 2-D array"),
    "empty X": (X[:0], LABELS[:0], r"X has shape \(0, 3\): expected at least one sample"),
    "strings in X": (np.array([["a", "b", "c"]] * 6), LABELS, r"X has dtype <U1: expected real numbers"),
    "bools in X": (X > 0, LABELS, r"X has dtype bool: expected real numbers"),
    "label out of range": (X, np.array([0, 1, 3, 1, 0, 2]), r"y has labels in \[0, 3\]: expected class labels 0..2"),
    "negative label": (X, np.array([0, -1, 2, 1, 0, 2]), r"y has labels in \[-1, 2\]: expected class labels 0..2"),
    "non-integer label": (X, np.array([0, 1.5, 2, 1, 0, 2]), r"y has non-integer values: expected class labels 0..2"),
    "length mismatch": (X, LABELS[:5], r"y has 5 samples but X has 6"),
    "wrong target width": (X, np.zeros((6, 2)), r"y has shape \(6, 2\) but the network has 3 outputs"),
    "3-D y": (X, np.zeros((6, 3, 1)), r"y has shape \(6, 3, 1\): expected \(m,\) labels or \(m, 3\) targets"),
    "nan in y": (X, np.array([0, 1, np.nan, 1, 0, 2]), r"y contains NaN"),
    "one-hot outside [0, 1]": (X, np.full((6, 3), 2.0), r"y has values outside \[0, 1\]"),
}


# fit learns the class list from y (integer labels outside 0..k-1 name classes), so where the
# labels cannot be k classes it says how many it found; evaluate on an unfitted model has no list.
FIT_MESSAGES = {
    "label out of range": r"y holds 4 classes \[0, 1, 2, 3\] but the network has 3 outputs: build it with sizes\[-1\]=4",
    "negative label": r"y holds 4 classes \[-1, 0, 1, 2\] but the network has 3 outputs",
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_fit_evaluate_and_loss_refuse_bad_data(backend, case):
    bad_X, bad_y, message = DATA_CASES[case]
    model = xpnet.MLP([3, 4, 3], backend=backend)
    with pytest.raises(ValueError, match=FIT_MESSAGES.get(case, message)):
        xpnet.fit(model, bad_X, bad_y, epochs=1, verbose=False)
    assert model.classes is None  # nothing learned from refused data
    with pytest.raises(ValueError, match=message):
        model.evaluate(bad_X, bad_y)
    with pytest.raises(ValueError, match=message):
        model.loss_and_grads(bad_X, bad_y)


@pytest.mark.parametrize("case", ["nan in X", "wrong feature count", "3-D X", "empty X", "strings in X"])
def test_predict_and_forward_refuse_bad_X(backend, case):
    bad_X, _, message = DATA_CASES[case]
    model = xpnet.MLP([3, 4, 3], backend=backend)
    for method in (model.forward, model.predict, model.predict_proba):
        with pytest.raises(ValueError, match=message):
            method(bad_X)


def test_bad_data_already_on_the_device(backend):
    model = xpnet.MLP([3, 4, 3], backend=backend)
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        model.evaluate(backend.asarray(_nan_X()), backend.asarray(LABELS))
    with pytest.raises(ValueError, match="y has labels in"):
        model.evaluate(backend.asarray(X), backend.asarray(np.array([0, 1, 7, 1, 0, 2])))


def test_single_sigmoid_unit_needs_0_1_labels(backend):
    model = xpnet.MLP([3, 2, 1], output="sigmoid", backend=backend)
    with pytest.raises(ValueError, match=r"y has values in \[0, 2\]: a single sigmoid unit expects 0/1 labels"):
        model.evaluate(X, np.array([0, 1, 2, 1, 0, 1]))


MODEL_CASES = [
    (dict(sizes=[3]), r"sizes=\[3\] is not a list of layer widths: expected at least 2 integers"),
    (dict(sizes=[3, 0, 2]), r"sizes=\[3, 0, 2\]"),
    (dict(sizes=[3, 2.5, 2]), r"sizes=\[3, 2.5, 2\]"),
    (dict(sizes="784,10"), r"sizes='784,10'"),
    (dict(sizes=None), r"sizes=None"),
    (dict(activation="swish"), r"activation='swish' is not known: expected one of 'sigmoid', 'tanh'"),
    (dict(activation="softmax"), r"activation='softmax' is not known"),
    (dict(output="tanh"), r"output='tanh' is not known: expected one of 'softmax', 'sigmoid', 'identity'"),
    (dict(loss="hinge"), r"loss='hinge' is not known"),
    (dict(loss="binary_cross_entropy"), r"loss='binary_cross_entropy' does not fit output='softmax'"),
    (dict(output="identity", loss="cross_entropy"), r"loss='cross_entropy' does not fit output='identity'"),
    (dict(init="zeros"), r"init='zeros' is not known: expected one of 'small', 'xavier', 'he', 'normal'"),
    (dict(dtype="float16"), r"dtype='float16' is not known"),
    (dict(seed=-1), r"seed=-1 is not a seed"),
    (dict(sizes=[3, 1]), r"sizes\[-1\]=1 with output='softmax'"),
]


@pytest.mark.parametrize("kwargs,message", MODEL_CASES)
def test_bad_model_arguments(host_backend, kwargs, message):
    kwargs = {"sizes": [3, 4, 3], **kwargs}
    with pytest.raises(ValueError, match=message):
        xpnet.MLP(backend=host_backend, **kwargs)


def test_a_model_larger_than_free_memory(host_backend):
    """Refused from the arithmetic, before a byte is allocated: 15 TB of float32 weights,
    more than any host's free memory (checked first: the weights are drawn there)."""
    with pytest.raises(ValueError, match=r"needs 14907.1 GiB for its 4,001,592,000,010 parameters alone "
                                         r"\(4 bytes each\), more than the [\d.]+ GiB of free memory.*: use narrower layers"):
        xpnet.MLP([784, 2_000_000, 2_000_000, 10], backend=host_backend)


def test_the_gpu_s_free_memory_is_checked_too(backend, monkeypatch):
    """With no figure for the host, a model still gets built; on CuPy, one larger than the
    GPU's free memory is refused naming the GPU."""
    import importlib

    monkeypatch.setattr(importlib.import_module("xpnet.backend"), "host_memory", lambda: None)
    xpnet.MLP([4, 3, 2], backend=backend)
    if backend.is_cupy:
        with pytest.raises(ValueError, match=r"more than the [\d.]+ GiB of free memory on cuda:\d+: use narrower layers"):
            xpnet.MLP([784, 2_000_000, 2_000_000, 10], backend=backend)


FIT_CASES = [
    (dict(epochs=0), r"epochs=0 is out of range: expected > 0"),
    (dict(epochs=-2), r"epochs=-2"),
    (dict(epochs=1.5), r"epochs=1.5 is not an integer"),
    (dict(batch_size=0), r"batch_size=0 is out of range"),
    (dict(batch_size="full"), r"batch_size='full' is not an integer"),
    (dict(seed=True), r"seed=True is not a seed"),
    (dict(optimizer="adam"), r"optimizer='adam' is not an optimizer"),
    (dict(validation_data=X), r"validation_data must be a pair"),
    (dict(validation_data=(X[:, :2], LABELS)), r"validation_data\[0\] has 2 features"),
    (dict(validation_data=(X, LABELS[:3])), r"validation_data\[1\] has 3 samples"),
]


@pytest.mark.parametrize("kwargs,message", FIT_CASES)
def test_bad_fit_arguments(backend, kwargs, message):
    model = xpnet.MLP([3, 4, 3], backend=backend)
    with pytest.raises(ValueError, match=message):
        xpnet.fit(model, X, LABELS, verbose=False, **kwargs)


# --------------------------------------------------------------- the CLI
# Each case: files to create (name -> content), argv, message. Every case must exit 2 with
# one line on stderr naming the problem, and leave an existing --save file untouched.
def _npz(**arrays):
    import io as _io

    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_MOONS_X, _MOONS_Y = xpnet.make_moons(40, seed=0)
_NAN = _MOONS_X.copy()
_NAN[3, 0] = np.nan
CLI_CASES = {
    "nan in X": ({"d.npz": _npz(X=_NAN, y=_MOONS_Y)}, ["--data", "d.npz"], "X contains 1 NaN or infinite"),
    "inf in csv": ({"d.csv": "1,2,0\ninf,2,1\n3,4,0\n"}, ["--data", "d.csv"], "X contains 1 NaN or infinite"),
    "wrong feature count": ({"d.npz": _npz(X=_MOONS_X, y=_MOONS_Y)}, ["--data", "d.npz", "--layers", "3,8,2"],
                            "--layers starts with 3 but d.npz has 2 features: use --layers 2,8,2"),
    "outputs for labels 0 and 4": ({"d.npz": _npz(X=_MOONS_X, y=_MOONS_Y * 4)}, ["--data", "d.npz", "--layers", "2,8,5"],
                                   "--layers ends with 5 but d.npz needs 2 output(s)"),
    "a single class": ({"d.csv": "1,2,5\n2,2,5\n3,4,5\n4,4,5\n"}, ["--data", "d.csv"], "the labels hold 1 class(es)"),
    "non-integer label": ({"d.csv": "1,2,0\n2,2,0.5\n3,4,1\n4,4,1\n"}, ["--data", "d.csv", "--output", "softmax"],
                          "--output softmax needs class labels, but --data 'd.csv' has real-valued labels (0, 0.5, 1"),
    "classes asked of real values": ({"d.csv": "1,2,0\n2,2,0.5\n3,4,1\n4,4,1\n"},
                                     ["--data", "d.csv", "--task", "classification"],
                                     "--task classification needs class labels, but --data 'd.csv' has real-valued"),
    "regression of text labels": ({"d.csv": "1,2,a\n2,2,b\n3,4,a\n4,4,b\n"},
                                  ["--data", "d.csv", "--task", "regression", "--quiet"],
                                  "--task regression needs numbers, but the labels of d.csv are text (a, b, ...)"),
    "regression with a softmax": ({"d.csv": "1,2,0\n2,2,0.5\n3,4,1\n4,4,1\n"},
                                  ["--data", "d.csv", "--task", "regression", "--output", "softmax"],
                                  "--task regression predicts numbers with --output identity, not --output softmax"),
    "integers beyond 2**53": ({"d.csv": "1,2,0\n2,2,1e19\n3,4,0\n4,4,1e19\n"}, ["--data", "d.csv"],
                              "the labels are whole numbers, some beyond +-2**53 (such as 1e+19)"),
    "many distinct integers": ({"d.csv": "".join(f"{i},{i % 7},{25 + 3 * i}\n" for i in range(60))}, ["--data", "d.csv"],
                               "the labels are 60 distinct integers (25..202) in 60 rows, fewer than 10 rows each: a "
                               "quantity or classes? Pass --task regression"),
    "mismatched lengths": ({"d.npz": _npz(X=_MOONS_X, y=_MOONS_Y[:30])}, ["--data", "d.npz"],
                           "y has shape (30,) for 40 rows: expected (40,)"),
    "empty data": ({"d.npz": _npz(X=np.zeros((0, 2)), y=np.zeros(0, int))}, ["--data", "d.npz"], "has 0 row(s)"),
    "strings": ({"d.csv": "1,2,0\nabc,2,1\n"}, ["--data", "d.csv"], "line 2: 'abc,2,1' is not comma-separated numbers"),
    "bools": ({"d.npz": _npz(X=_MOONS_X > 0, y=_MOONS_Y)}, ["--data", "d.npz"], "X has dtype bool: expected numbers"),
    "no labels": ({"d.npz": _npz(X=_MOONS_X)}, ["--data", "d.npz"], "has no labels"),
    "wrong --layers syntax": ({}, ["--layers", "784;128;10"], "--layers: '784;128;10' is not a comma-separated list"),
    "zero epochs": ({}, ["--epochs", "0"], "--epochs: '0' must be > 0"),
    "negative epochs": ({}, ["--epochs", "-3"], "--epochs: '-3' must be > 0"),
    "zero batch size": ({}, ["--batch-size", "0"], "--batch-size: '0' must be > 0"),
    "negative learning rate": ({}, ["--lr", "-0.1"], "--lr: '-0.1' must be > 0"),
    "nan learning rate": ({}, ["--lr", "nan"], "--lr: 'nan' must be > 0"),
    "unknown optimizer": ({}, ["--optimizer", "rmsprop"], "--optimizer: invalid choice: 'rmsprop'"),
    "unknown init": ({}, ["--init", "zeros"], "--init: invalid choice: 'zeros'"),
    "missing file": ({}, ["--data", "nope.csv"], "--data 'nope.csv' does not exist"),
    "directory as data": ({"dir/x": ""}, ["--data", "dir"], "--data 'dir' is a directory"),
    "directory as save": ({"dir/x": ""}, ["--save", "dir"], "--save 'dir' is a directory"),
    "unwritable save location": ({"file": "x"}, ["--save", "file/model.npz"], "directory 'file' does not exist"),
    "resume from a missing checkpoint": ({}, ["--resume", "ck.npz"], "--resume 'ck.npz' is not a file"),
    "resume from garbage": ({"ck.npz": "garbage"}, ["--resume", "ck.npz"],
                            "--resume 'ck.npz' is not an xpnet checkpoint (.npz): it is a text file\n"),
    "resume from random bytes": ({"ck.npz": b"\x93NUMPY\x00\x01"}, ["--resume", "ck.npz"],
                                 "--resume 'ck.npz' is not an xpnet checkpoint (.npz): it is not a .npz (zip) archive"),
    "resume from a model file": ({}, ["--resume", "model.npz", "--save", "out.npz"],
                                 "--resume 'model.npz' is not an xpnet checkpoint"),
    "init-from a data file": ({"d.csv": "1,2,0\n2,2,1\n"}, ["--init-from", "d.csv"],
                              "--init-from 'd.csv' is not an xpnet model file or checkpoint (.npz): it is a text file "
                              "(data goes in --data)"),
    # the default loss of an identity output is mse: the hint names it once
    "cross-entropy on an identity output": ({}, ["--output", "identity", "--loss", "cross_entropy"],
                                            "; use loss='mse' (the default for output='identity')\n"),
    "zero threads": ({}, ["--threads", "0"], "--threads: '0' must be > 0"),
    # outputs onto inputs, however spelled: refused before any work, the input untouched
    "save onto the data": ({"d.csv": "1,2,0\n2,2,1\n3,4,0\n4,4,1\n"}, ["--data", "d.csv", "--save", "./d.csv"],
                           "--save './d.csv' is the same file as --data 'd.csv'"),
    "save onto the checkpoint": ({}, ["--checkpoint", "model.npz"], "--save 'model.npz' is the same file as --checkpoint"),
    "save through a symlink": ({"link.npz": None}, ["--resume", "link.npz", "--save", "model.npz"],
                               "--save 'model.npz' is the same file as --resume 'link.npz'"),
    "save onto init-from": ({}, ["--init-from", "model.npz"], "--save 'model.npz' is the same file as --init-from"),
    "plot file onto the data": ({"p/history.png": "1,2,0\n2,2,1\n"}, ["--data", "p/history.png", "--plot", "p"],
                                "--plot 'p/history.png' is the same file as --data 'p/history.png'"),
    "plot dir not writable": ({}, ["--plot", "/proc/self"], "--plot '/proc/self' is not a writable directory"),
    "allow-changes without resume": ({}, ["--allow-changes"], "--allow-changes applies only with --resume"),
    "layers too big for memory": ({}, ["--layers", "784,2000000,2000000,10"],
                                  "needs 14907.1 GiB for its 4,001,592,000,010 parameters"),
    "init-from with other layers": ({}, ["--init-from", "model.npz", "--layers", "784,32,10", "--save", "o.npz"],
                                    "--layers 784,32,10 differs from the layers 784,16,10 of --init-from 'model.npz'"),
    "init-from with --scale": ({}, ["--init-from", "model.npz", "--scale", "standard", "--save", "o.npz"],
                               "--scale does not apply with --init-from"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_refuses_bad_input_in_one_line_and_touches_nothing(case, tmp_path, monkeypatch, capsys):
    from xpnet.cli import main

    files, argv, message = CLI_CASES[case]
    monkeypatch.chdir(tmp_path)
    xpnet.MLP([784, 16, 10]).save("model.npz")  # a good file that no failure may change
    before = (tmp_path / "model.npz").read_bytes()
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:  # a symlink to the good file
            path.symlink_to(tmp_path / "model.npz")
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if "--save" not in argv:
        argv = [*argv, "--save", "model.npz"]
    try:
        code = main(["train", "--epochs", "1", *argv] if "--epochs" not in argv else ["train", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert (tmp_path / "model.npz").read_bytes() == before
