"""scikit-learn's ``MLPRegressor`` on xpnet's engine: squared error or Poisson deviance, and
beyond scikit-learn's own the Huber loss (delta 1) and absolute error."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d

from ..backend import to_numpy
from .estimator import MLPEstimator
from .heads import LOSS_HEADS, Head
from .inputs import on_device


class MLPRegressor(RegressorMixin, MLPEstimator):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on xpnet's engine.

    ``loss``: ``'squared_error'`` (identity outputs) or ``'poisson'`` (exp outputs, half
    Poisson deviance; targets >= 0), as scikit-learn's; beyond them ``'huber'`` (PyTorch's
    ``HuberLoss`` with delta 1 per element: ``0.5 d^2`` for ``|d| <= 1``, ``|d| - 0.5`` beyond) and
    ``'absolute_error'`` (``|d|``; its gradient at 0 is 0), identity outputs, each summed over
    the outputs and averaged over the rows (scikit-learn's squared error is also averaged over the
    outputs, but not its gradient). Other parameters as :class:`MLPClassifier`.
    """

    _parameter_constraints: dict = {**MLPEstimator._parameter_constraints,
                                    "loss": [StrOptions({"squared_error", "poisson", *LOSS_HEADS})]}
    _numeric_y = True
    _is_classifier = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device="cpu", dtype="float32",
                 threads=None, dropout=0.0, norm=None, residual=False):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
                         power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun, device=device, dtype=dtype,
                         threads=threads, dropout=dropout, norm=norm, residual=residual)
        self.loss = loss

    def _check_targets(self, y, incremental: bool):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return y

    def _n_outputs(self, y) -> int:
        return 1 if y.ndim == 1 else y.shape[1]

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _head(self) -> Head:
        return LOSS_HEADS.get(self.loss) or super()._head()

    def _model_classes(self):
        return None

    def _model_targets(self, y):
        return np.asarray(y, dtype=np.float64) if isinstance(y, np.ndarray) else y

    def _score_targets(self, y) -> np.ndarray:
        return np.asarray(y)

    def _validation_score(self, X_val, y_val, sw_val) -> float:
        pred = np.asarray(to_numpy(self._outputs(X_val)))
        pred = pred[:, 0] if pred.shape[1] == 1 else pred
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y_val, pred, sample_weight=sw_val))

    @available_if(lambda est: est._stochastic())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, keeping the optimizer state between calls."""
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predictions ``(n_samples,)``, or ``(n_samples, n_outputs)`` for several targets."""
        X, on_device, dtype = self._predict_input(X)
        with self._threads(), self.mlp_.backend.activate():
            A = self._outputs(X)
            if A.shape[1] == 1:
                A = A[:, 0]
            return self._result(A, on_device, dtype)

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of the predictions (uniform average over outputs), optionally sample-weighted."""
        pred = to_numpy(self.predict(X))
        y = to_numpy(y) if on_device(y) else y
        sample_weight = to_numpy(sample_weight) if on_device(sample_weight) else sample_weight
        return float(r2_score(y, pred, sample_weight=sample_weight))
