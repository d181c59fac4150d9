"""Update rules against their formulas, step by step, in float64."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet


def _state(backend, rng):
    params = [rng.normal(size=(3, 2)), rng.normal(size=(2,))]
    return params, [backend.asarray(p.copy()) for p in params]


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.01), (0.5, False, 0.1)])
def test_sgd_matches_the_formula(backend, momentum, nesterov, wd):
    rng = np.random.default_rng(0)
    ref, params = _state(backend, rng)
    opt = xpnet.SGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    v = [np.zeros_like(p) for p in ref]
    for _ in range(3):
        grads = [rng.normal(size=p.shape) for p in ref]
        opt.step(params, [backend.asarray(g) for g in grads])
        for i, (p, g) in enumerate(zip(ref, grads)):
            g = g + wd * p if p.ndim == 2 else g  # decay on weights only
            v[i] = momentum * v[i] + g
            step = g + momentum * v[i] if nesterov else (v[i] if momentum else g)
            ref[i] = p - 0.1 * step
    for a, b in zip(params, ref):
        np.testing.assert_allclose(xpnet.to_numpy(a), b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("wd,form", [(0.0, "pytorch"), (0.05, "pytorch"), (0.0, "sklearn"), (0.05, "sklearn")])
def test_adam_matches_the_formula(backend, wd, form):
    """form="sklearn" adds eps to the uncorrected root: W - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)."""
    rng = np.random.default_rng(1)
    ref, params = _state(backend, rng)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-3  # an eps large enough to tell the forms apart
    opt = xpnet.Adam(lr, betas=(b1, b2), eps=eps, weight_decay=wd, form=form)
    m = [np.zeros_like(p) for p in ref]
    v = [np.zeros_like(p) for p in ref]
    for t in range(1, 5):
        grads = [rng.normal(size=p.shape) for p in ref]
        opt.step(params, [backend.asarray(g) for g in grads])
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            p = ref[i] * (1 - lr * wd) if ref[i].ndim == 2 else ref[i]
            if form == "sklearn":
                ref[i] = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[i] / (np.sqrt(v[i]) + eps)
            else:
                ref[i] = p - lr * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + eps)
    for a, b in zip(params, ref):
        np.testing.assert_allclose(xpnet.to_numpy(a), b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, True, 0.0), (0.9, False, 0.0), (0.9, True, 0.01), (1.0, False, 0.1)])
def test_sgd_in_scikit_learns_form_matches_its_formula(backend, momentum, nesterov, wd):
    """form="sklearn": v = mu v - lr g; W += mu v - lr g (Nesterov) or W += v; the rate changes mid-run."""
    rng = np.random.default_rng(2)
    ref, params = _state(backend, rng)
    opt = xpnet.SGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd, form="sklearn")
    v = [np.zeros_like(p) for p in ref]
    for lr in (0.1, 0.1, 0.02):
        opt.set_lr(lr)
        grads = [rng.normal(size=p.shape) for p in ref]
        opt.step(params, [backend.asarray(g) for g in grads])
        for i, (p, g) in enumerate(zip(ref, grads)):
            g = g + wd * p if p.ndim == 2 else g
            v[i] = momentum * v[i] - lr * g
            ref[i] = p + (momentum * v[i] - lr * g if nesterov else v[i])
    for a, b in zip(params, ref):
        np.testing.assert_allclose(xpnet.to_numpy(a), b, rtol=1e-13, atol=1e-15)
    assert opt.hyperparameters()["form"] == "sklearn" and "form" not in xpnet.SGD(0.1).hyperparameters()


def test_updates_are_in_place_on_mutable_backends(backend):
    params = [backend.asarray(np.ones((2, 2))), backend.asarray(np.ones(2))]
    before = list(params)
    xpnet.Adam(0.1).step(params, [backend.asarray(np.ones((2, 2))), backend.asarray(np.ones(2))])
    assert backend.mutable
    assert all(a is b for a, b in zip(params, before))


@pytest.mark.parametrize("make,message", [
    (lambda: xpnet.SGD(0), "lr=0"),
    (lambda: xpnet.SGD(-1), "lr=-1"),
    (lambda: xpnet.SGD(float("nan")), "lr=nan"),
    (lambda: xpnet.SGD("fast"), "lr='fast'"),
    (lambda: xpnet.SGD(0.1, momentum=1.0), "momentum=1.0"),
    (lambda: xpnet.SGD(0.1, nesterov=True), "nesterov=True needs momentum"),
    (lambda: xpnet.SGD(0.1, weight_decay=-1), "weight_decay=-1"),
    (lambda: xpnet.Adam(betas=(0.9, 1.0)), "betas="),
    (lambda: xpnet.Adam(eps=0), "eps=0"),
    (lambda: xpnet.Adam(schedule="linear"), "schedule='linear'"),
    (lambda: xpnet.SGD(0.1, form="keras"), "form='keras'"),
    (lambda: xpnet.SGD(0.1, momentum=1.5, form="sklearn"), "momentum=1.5"),
    (lambda: xpnet.StepDecay(step_size=0), "step_size=0"),
])
def test_bad_optimizer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make", [lambda: xpnet.Adam(1e-3), lambda: xpnet.SGD(0.1, momentum=0.9)], ids=["adam", "momentum"])
def test_state_that_decays_to_subnormals_is_flushed_to_zero(backend, make):
    """A gradient that stops (a dead unit) leaves m or the velocity to decay geometrically; in
    float32 it would sink into the subnormal range (slow on x86) after ~800 steps."""
    opt = make()
    params = [backend.asarray(np.ones(50, np.float32))]
    opt.attach(params, backend, decay=[0])
    opt.step(params, [backend.asarray(np.full(50, 1e-3, np.float32))])
    zero = [backend.asarray(np.zeros(50, np.float32))]
    for _ in range(opt.FLUSH_EVERY * 60 - 1):  # ends on a flush step
        opt.step(params, zero)
    state = xpnet.to_numpy((opt.m if hasattr(opt, "m") else opt.velocity)[0])
    tiny = np.finfo(np.float32).tiny
    assert not np.any((state != 0) & (np.abs(state) < tiny))  # no subnormal left
    assert np.all(state == 0)  # 0.9 ** 960 * 1e-3 is far below float32's smallest normal: all flushed
