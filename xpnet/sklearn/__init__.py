"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, on xpnet's engine.

    from xpnet.sklearn import MLPClassifier   # instead of sklearn.neural_network
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), device="cuda").fit(X, y)

Needs scikit-learn >= 1.7 (``pip install "scikit-learn>=1.7"``, or ``pip install ".[sklearn]"`` from
a checkout); ``import xpnet`` alone never imports it.

**What follows scikit-learn**, read from its ``sklearn/neural_network/_multilayer_perceptron.py``
and ``_stochastic_optimizers.py`` (1.7 to 1.9): every parameter's name, meaning, default and
check; the initial weights (Glorot-uniform, drawn from the same ``RandomState`` in the same
order), the early-stopping split and the per-epoch shuffles, so that with ``dtype="float64"``
a fit follows scikit-learn's step for step (the tests check this); the loss (data term as a
sample-weighted mean, plus ``0.5 * alpha * ||W||^2 / batch``, weights only, under every
solver), the stopping rules (``tol``, ``n_iter_no_change``, ``'adaptive'`` dividing the rate
by 5 and stopping below 1e-6), ``'invscaling'`` on the samples seen ``t_`` (:class:`SGDRule`,
:class:`AdamRule`), the update rules' forms (Sutskever momentum, scikit-learn's epsilon),
``partial_fit`` (one epoch, optimizer state kept), ``warm_start``, and the fitted attributes.

**What is xpnet's**: the forward and backward pass (:meth:`xpnet.MLP.backprop`, which
weights rows through ``row_weights``), the update rules (:class:`xpnet.SGD` and
:class:`xpnet.Adam` with ``form="sklearn"``, written once in ``xp`` as whole-buffer
operations on :attr:`xpnet.MLP.flat`), float32 by default (``dtype``), the
device (``device="cuda"``; CuPy input then stays on the GPU) and ``threads`` (BLAS threads
during fit and predict).

**Differences**: the log-loss of an unweighted fit is computed from the logits (no clipping
at machine epsilon, which only matters where a probability is below about 1e-7); outputs are
computed in ``dtype`` and returned in the input's float type; sparse input is made dense.

**The rooms**: :mod:`~xpnet.sklearn.estimator` (what both estimators share: parameters,
input checks, the solvers' loops, files), :mod:`~xpnet.sklearn.classifier` and
:mod:`~xpnet.sklearn.regressor`, :mod:`~xpnet.sklearn.solvers` (scikit-learn's rate
schedules and stopping around :mod:`xpnet.optim`'s rules), :mod:`~xpnet.sklearn.heads`
(output activations and scikit-learn's losses) and :mod:`~xpnet.sklearn.inputs`.

**Pickles** follow scikit-learn's convention (network and optimizer state included) and run
code when loaded: unpickle only files you trust. :meth:`MLPClassifier.save` /
:meth:`MLPClassifier.load` write and read xpnet's own model file instead (``.npz`` of arrays
plus JSON, read without pickle): the fitted network, its classes and the estimator's
parameters, not the optimizer state.
"""

from __future__ import annotations

try:
    import sklearn.base  # noqa: F401  (the rooms below import from it)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f'xpnet.sklearn needs scikit-learn >= 1.7: pip install "scikit-learn>=1.7" ({exc})') from None

from .classifier import MLPClassifier  # noqa: E402
from .estimator import expected_failed_checks  # noqa: E402
from .regressor import MLPRegressor  # noqa: E402
from .solvers import AdamRule, SGDRule  # noqa: E402

__all__ = ["AdamRule", "MLPClassifier", "MLPRegressor", "SGDRule", "expected_failed_checks"]

# Pickles name the classes as xpnet.sklearn.<name>, whichever room defines them: files stay
# readable when the rooms move (and files pickled before the package split load).
for _cls in (MLPClassifier, MLPRegressor, SGDRule, AdamRule):
    _cls.__module__ = __name__
del _cls
