"""Per-step learning rates (warm-up, one-cycle), ReduceLROnPlateau and gradient clipping:
against PyTorch where it is installed and hand formulas everywhere, with no read back from
the device inside a step, few array operations, and bit-identical resume."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from test_reliability import SignalAt

import xpnet
from xpnet.cli import main
from xpnet.optim import OneCycle
from xpnet.train import Callback, ReduceLROnPlateau, TrainingInterrupted


def _per_step(opt, epochs: int, steps: int) -> list[float]:
    """Every step's rate over a run, as start_epoch computes them (the step count advanced by hand)."""
    out = []
    for epoch in range(epochs):
        out += opt.rates(epoch, epochs, steps)
        opt.t += steps
    return out


def _onecycle_by_hand(lr, total, pct=0.3, div=25.0, final=1e4):
    """PyTorch's OneCycleLR (cos, two phases), written out from its documentation."""
    initial, low = lr / div, lr / div / final
    up = pct * total - 1
    rates = []
    for s in range(total):
        if s <= up:
            a, b, frac = initial, lr, s / up
        else:
            a, b, frac = lr, low, (s - up) / (total - 1 - up)
        rates.append(b + (a - b) / 2 * (math.cos(math.pi * frac) + 1))
    return rates


def test_onecycle_by_hand():
    opt = xpnet.SGD(0.5, schedule="onecycle")
    rates = _per_step(opt, 3, 10)  # 30 steps: the peak at step 0.3 * 30 - 1 = 8
    np.testing.assert_allclose(rates, _onecycle_by_hand(0.5, 30), rtol=1e-12)
    assert rates[8] == max(rates)
    assert max(rates) == pytest.approx(0.5) and rates[0] == pytest.approx(0.5 / 25)
    assert rates[-1] == pytest.approx(0.5 / 25 / 1e4)


def test_onecycle_matches_pytorch():
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([param], lr=0.5)
    sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.5, total_steps=28, cycle_momentum=False)
    ref = []
    for _ in range(28):
        ref.append(sched.get_last_lr()[0])
        ref_opt.step()
        sched.step()
    np.testing.assert_allclose(_per_step(xpnet.SGD(0.5, schedule=OneCycle()), 4, 7), ref, rtol=1e-10)


def test_warmup_then_cosine_by_hand():
    epochs, steps, warm = 3, 4, 6
    opt = xpnet.Adam(1e-2, schedule="cosine", warmup_steps=warm)
    rates = _per_step(opt, epochs, steps)
    want = [1e-2 * 0.5 * (1 + math.cos(math.pi * (s // steps) / epochs)) * min(1.0, (s + 1) / warm)
            for s in range(epochs * steps)]
    np.testing.assert_allclose(rates, want, rtol=1e-12)
    # in epochs: the same as that many epochs' steps
    assert _per_step(xpnet.Adam(1e-2, schedule="cosine", warmup_epochs=2), 3, 4) == \
        _per_step(xpnet.Adam(1e-2, schedule="cosine", warmup_steps=8), 3, 4)


def test_warmup_matches_pytorch_linear_lr():
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LinearLR(ref_opt, start_factor=1 / 5, total_iters=4)
    ref = []
    for _ in range(12):
        ref.append(sched.get_last_lr()[0])
        ref_opt.step()
        sched.step()
    np.testing.assert_allclose(_per_step(xpnet.SGD(0.1, warmup_steps=5), 3, 4), ref, rtol=1e-10)


def test_fit_takes_the_per_step_rates(backend):
    X, y = xpnet.make_moons(100, seed=1)
    opt = xpnet.SGD(0.2, schedule="onecycle", warmup_steps=3)
    history = xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend, seed=0), X, y, opt, epochs=3, batch_size=25, verbose=False)
    rates = _per_step(xpnet.SGD(0.2, schedule="onecycle", warmup_steps=3), 3, 4)
    assert history.lr == pytest.approx([rates[3], rates[7], rates[11]])  # each epoch's last step
    assert xpnet.to_numpy(opt._lrs["lr"]).tolist() == pytest.approx(rates[8:], rel=1e-6)  # the vector on the device


def _sequence_by_hand(values, patience, factor=0.1, threshold=1e-4, cooldown=0, lr=1.0, min_lr=0.0):
    """PyTorch's ReduceLROnPlateau (mode min, relative threshold), step by step."""
    best, bad, cool, out = math.inf, 0, 0, []
    for v in values:
        if v < best * (1 - threshold):
            best, bad = v, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > 1e-8:
                lr = new
            cool, bad = cooldown, 0
        out.append(lr)
    return out


@pytest.mark.parametrize("kw", [dict(patience=1), dict(patience=0, cooldown=2), dict(patience=2, min_lr=0.05)])
def test_reduce_on_plateau_follows_pytorch(kw):
    values = [1.0, 0.9, 0.95, 0.9, 0.91, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7]
    opt = xpnet.SGD(1.0)
    cb = ReduceLROnPlateau(opt, **kw)
    history = xpnet.History()
    cb.on_train_begin(None, history)
    got = []
    for v in values:
        history.val_loss.append(v)
        cb.on_epoch_end(None, history)
        got.append(opt.lr * opt.lr_scale)
    np.testing.assert_allclose(got, _sequence_by_hand(values, **kw), rtol=1e-12)
    torch = pytest.importorskip("torch")
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kw)
    want = []
    for v in values:
        ref.step(v)
        want.append(ref_opt.param_groups[0]["lr"])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_plateau_lowers_the_rate_in_fit(backend):
    X, y = xpnet.make_moons(100, seed=1)
    opt = xpnet.SGD(0.1)
    history = xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend, seed=0), X, y, opt, epochs=4, batch_size=50,
                        verbose=False, validation_data=(X, y),
                        callbacks=[ReduceLROnPlateau(opt, monitor="train_loss", patience=0, threshold=10.0)])
    assert history.lr == pytest.approx([0.1, 0.1, 0.01, 0.001])  # threshold 10: never better after the first


@pytest.mark.parametrize("C", [0.05, 1e3], ids=["clipped", "not-clipped"])
def test_clipping_equals_a_hand_computation(backend, C):
    X, y = xpnet.make_moons(64, seed=3)
    model = xpnet.MLP([2, 6, 2], backend=backend, seed=0, dtype="float64")
    before = xpnet.to_numpy(model.flat).copy()
    Xd, Yd, _ = model.device_data(X, y)
    seen = []

    def keep(grad):
        seen.append(xpnet.to_numpy(grad).copy())

    opt = xpnet.SGD(0.3, clip_norm=C)
    xpnet.train_step(model, opt, Xd, Yd, grad_hook=keep)
    g = seen[0]
    scale = min(1.0, C / (np.sqrt(np.sum(g * g)) + 1e-6))
    np.testing.assert_allclose(xpnet.to_numpy(model.flat), before - 0.3 * scale * g, rtol=1e-12, atol=1e-15)
    if C < 1:
        assert scale < 1


def test_clipping_in_fit_bounds_every_step(host_backend):
    # the norm of each applied step over lr is at most C (plain SGD: the step is lr times the clipped gradient)
    X, y = xpnet.make_moons(64, seed=3)
    model = xpnet.MLP([2, 6, 2], seed=0, dtype="float64")
    flats = []

    class Keep(Callback):
        def on_batch_end(self, batch):
            flats.append(xpnet.to_numpy(model.flat).copy())

    xpnet.fit(model, X, y, xpnet.SGD(1.0), epochs=2, batch_size=16, verbose=False, callbacks=[Keep()], clip_norm=0.01)
    steps = np.diff(np.array(flats), axis=0)
    assert np.all(np.linalg.norm(steps, axis=1) <= 0.01 * (1 + 1e-9))


READS = ("__float__", "__int__", "__bool__", "__index__", "__complex__", "__array__", "__dlpack__", "tolist", "item")


@contextlib.contextmanager
def _counting_reads(xs):
    """Count the ways an array-api-strict array's values reach the host."""
    count = [0]
    kind = type(xs.asarray(0))
    saved = {}

    def wrap(fn):
        def counted(*args, **kwargs):
            count[0] += 1
            return fn(*args, **kwargs)
        return counted

    try:
        for name in READS:
            if hasattr(kind, name):
                saved[name] = getattr(kind, name)
                setattr(kind, name, wrap(saved[name]))
        yield count
    finally:
        for name, fn in saved.items():
            setattr(kind, name, fn)


@pytest.mark.parametrize("make", [
    lambda: xpnet.Adam(1e-2, weight_decay=0.01, schedule="onecycle", warmup_steps=3, clip_norm=0.5),
    lambda: xpnet.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, schedule="cosine", warmup_epochs=1,
                      clip_norm=0.5),
], ids=["adam", "nesterov"])
def test_no_read_back_inside_a_step(make):
    xs = pytest.importorskip("array_api_strict")
    X, y = xpnet.make_moons(120, seed=2)
    marks = []
    with _counting_reads(xs) as reads:
        assert float(xs.asarray(1.0)) == 1.0 and reads[0] == 1  # the counter counts
        backend = xpnet.get_backend(xs, xs.Device("device1"))

        class Mark(Callback):
            def on_batch_end(self, batch):
                marks.append((batch, reads[0]))

        opt = make()
        xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend, seed=0), X, y, opt, epochs=2, batch_size=20, verbose=False,
                  validation_data=(X, y), callbacks=[Mark(), ReduceLROnPlateau(opt, patience=0)])
    inside = [b - a for (i, a), (j, b) in zip(marks, marks[1:]) if j == i + 1]
    assert len(inside) == 10 and set(inside) == {0}


OP_CASES = {  # name -> (plain, with a per-step schedule and warm-up)
    "sgd": (lambda: xpnet.SGD(0.01), lambda: xpnet.SGD(0.01, schedule="onecycle", warmup_steps=2)),
    "nesterov+wd": (lambda: xpnet.SGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
                    lambda: xpnet.SGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle")),
    "adam": (lambda: xpnet.Adam(1e-3), lambda: xpnet.Adam(1e-3, schedule="onecycle", warmup_steps=2)),
    "adamw": (lambda: xpnet.Adam(1e-3, weight_decay=1e-2), lambda: xpnet.Adam(1e-3, weight_decay=1e-2, warmup_steps=2)),
}
CLIP_OPS = 6  # the squared norm, then sqrt, + 1e-6, C / ., min(1, .) on 0-d arrays, and the gradient times the scale


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_array_operations_per_step(monkeypatch, name):
    pytest.importorskip("array_api_strict")
    from xpnet import opcount

    plain, scheduled = OP_CASES[name]
    monkeypatch.setitem(opcount.OPTIMIZERS, "plain", plain)
    monkeypatch.setitem(opcount.OPTIMIZERS, "scheduled", scheduled)
    monkeypatch.setitem(opcount.OPTIMIZERS, "clipped", lambda: _with_clip(scheduled()))
    base = opcount.ops_per_step((784, 128, 64, 10), "plain")
    assert opcount.ops_per_step((784, 128, 64, 10), "scheduled") == base  # the rate: a view of a device vector
    clipped = opcount.ops_per_step((784, 128, 64, 10), "clipped")
    assert clipped["update"] == base["update"] and clipped["step"] == base["step"] + CLIP_OPS


def _with_clip(opt):
    opt.clip_norm = 1.0
    return opt


RESUMED = {
    "adam-onecycle": lambda: xpnet.Adam(2e-2, weight_decay=0.01, schedule="onecycle", warmup_steps=4, clip_norm=0.3),
    "nesterov-cosine": lambda: xpnet.SGD(0.2, momentum=0.9, nesterov=True, schedule="cosine", warmup_epochs=1,
                                         clip_norm=0.3),
}


@pytest.mark.parametrize("name", sorted(RESUMED))
@pytest.mark.parametrize("interrupt", [dict(at=7), dict(at=10), dict(epoch_end=2)],
                         ids=["mid-epoch", "epoch-boundary", "during-validation"])
def test_resume_is_bit_identical(backend, tmp_path, name, interrupt):
    X, y = xpnet.make_moons(150, noise=0.2, seed=7)  # 5 steps per epoch at 32
    val = xpnet.make_moons(40, seed=8)

    def run(model, callbacks=(), **kw):
        opt = RESUMED[name]()
        plateau = ReduceLROnPlateau(opt, patience=0, threshold=0.05)  # reduces often
        return xpnet.fit(model, X, y, opt, epochs=4, batch_size=32, validation_data=val, verbose=False,
                         callbacks=[plateau, *callbacks], **kw)

    whole = xpnet.MLP([2, 12, 2], activation="tanh", backend=backend, seed=1)
    ref = run(whole)
    assert len(set(ref.lr)) == 4
    ck = str(tmp_path / "ck.npz")
    with pytest.raises(TrainingInterrupted):
        run(xpnet.MLP([2, 12, 2], activation="tanh", backend=backend, seed=1), [SignalAt(**interrupt)], checkpoint=ck)
    second = xpnet.MLP([2, 12, 2], activation="tanh", backend=backend, seed=1, init="small")
    history = run(second, resume=ck)
    a, b = xpnet.to_numpy(second.flat), xpnet.to_numpy(whole.flat)
    if backend.is_cupy:
        np.testing.assert_allclose(a, b, rtol=1e-6)
    else:
        np.testing.assert_array_equal(a, b)
        assert history.train_loss == ref.train_loss
    assert history.lr == ref.lr


def test_resume_refuses_other_clipping_or_warmup(tmp_path):
    X, y = xpnet.make_moons(60, seed=1)
    ck = str(tmp_path / "ck.npz")
    xpnet.fit(xpnet.MLP([2, 4, 2], seed=0), X, y, xpnet.SGD(0.1, clip_norm=1.0), epochs=1, verbose=False, checkpoint=ck)
    for other in (xpnet.SGD(0.1), xpnet.SGD(0.1, clip_norm=2.0, warmup_steps=3)):
        with pytest.raises(ValueError, match="clip_norm"):
            xpnet.fit(xpnet.MLP([2, 4, 2], seed=0), X, y, other, epochs=2, verbose=False, resume=ck)


@pytest.mark.parametrize("make, message", [
    (lambda: xpnet.SGD(0.1, warmup_steps=-1), "warmup_steps=-1"),
    (lambda: xpnet.SGD(0.1, warmup_steps=2, warmup_epochs=1), "give one of them"),
    (lambda: xpnet.Adam(clip_norm=0), "clip_norm=0"),
    (lambda: xpnet.SGD(0.1, schedule="linear"), "schedule='linear'"),
    (lambda: OneCycle(pct_start=1.0), "pct_start=1.0"),
    (lambda: ReduceLROnPlateau(xpnet.SGD(0.1), factor=1.0), "factor=1.0"),
    (lambda: ReduceLROnPlateau("sgd"), "not an optimizer"),
    (lambda: xpnet.SGD(0.1, warmup_steps=2).start_epoch(0, 3), "needs start_epoch"),
    (lambda: xpnet.fit(xpnet.MLP([2, 4, 2]), *xpnet.make_moons(20), clip_norm=-1.0), "clip_norm=-1.0"),
])
def test_bad_values_are_refused(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        make()


def test_cli_flags(capsys):
    code = main(["train", "--dataset", "moons", "--epochs", "3", "--schedule", "onecycle", "--warmup", "4",
                 "--clip-norm", "1", "--reduce-on-plateau", "1", "--json"])
    assert code == 0
    import json

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["final_lr"] == pytest.approx(0.1 / 25 / 1e4)
    for flag in ("--schedule {constant,step,cosine,onecycle}", "--warmup STEPS", "--clip-norm C", "--reduce-on-plateau"):
        with pytest.raises(SystemExit):
            main(["train", "-h"])
        assert flag in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--clip-norm", "0"], ["--warmup", "-2"], ["--reduce-on-plateau", "x"],
                                  ["--schedule", "linear"]])
def test_cli_bad_values_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and err[-1].startswith("xpnet train: error:")


def test_plateau_state_finds_its_callback_when_the_list_changes(tmp_path):
    """A resume with a callback added or removed before it (--early-stopping) still restores the
    plateau's reduced rate: saved states go to the next callback of their type."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 3)), rng.integers(0, 2, 120)  # noise: validation loss stalls
    val = (rng.normal(size=(40, 3)), rng.integers(0, 2, 40))
    ck = str(tmp_path / "ck.npz")
    opt = xpnet.SGD(0.5)
    plateau = xpnet.train.ReduceLROnPlateau(opt, patience=0)
    xpnet.fit(xpnet.MLP([3, 16, 2], seed=0), X, y, opt, epochs=4, batch_size=30, verbose=False, validation_data=val,
              callbacks=[xpnet.EarlyStopping(patience=100), plateau], checkpoint=ck)
    assert opt.lr_scale < 1.0  # reduced at least once
    again = xpnet.SGD(0.5)
    resumed = xpnet.train.ReduceLROnPlateau(again, patience=0)
    xpnet.fit(xpnet.MLP([3, 16, 2], seed=0), X, y, again, epochs=4, batch_size=30, verbose=False, validation_data=val,
              callbacks=[resumed], resume=ck)
    assert again.lr_scale == opt.lr_scale and resumed.best == plateau.best
