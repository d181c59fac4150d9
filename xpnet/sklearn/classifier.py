"""scikit-learn's ``MLPClassifier`` on xpnet's engine: labels of any type, multi-label indicator rows."""

from __future__ import annotations

import array_api_compat
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from ..backend import to_numpy
from ..model import MLP
from .estimator import MLPEstimator
from .inputs import check_sample_weight, on_device


class MLPClassifier(ClassifierMixin, MLPEstimator):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on xpnet's engine.

    Parameters are scikit-learn's (same names, meanings and defaults; see its
    documentation), plus:

    device : ``'cpu'`` (NumPy), ``'cuda'`` or ``'cuda:N'`` (CuPy), or an :class:`xpnet.Backend`
        for any array-API namespace (such an estimator clones but does not pickle).
    dtype : ``'float32'`` (default) or ``'float64'``: the network's arithmetic.
    threads : BLAS threads during fit and predict (threadpoolctl); None leaves the BLAS alone.
    dropout : inverted dropout after each hidden layer's activation while fitting (never in
        ``predict``): one rate for every hidden layer, or a list of one rate per hidden layer, each
        ``0 <= p < 1``; masks are drawn from ``random_state``. Default 0 (none).
    norm : ``None`` (default), ``'batch'`` (batch norm over each batch's rows, running statistics in
        ``predict``; every batch needs 2+ rows) or ``'layer'`` (over each row's units): normalizes
        each hidden layer's product before its activation, with a trained scale and shift.
    residual : ``True`` adds each hidden layer's input to its output wherever the layer keeps its
        width (``hidden_layer_sizes=(64, 64)``: the second); refused where none does. Default False.
    activation : scikit-learn's four, plus xpnet's ``'leaky_relu'``, ``'gelu'``, ``'silu'``,
        ``'elu'`` and ``'softplus'``.

    With the defaults (no dropout, norm or residual, scikit-learn's activations) a fit is
    scikit-learn's. With ``dropout`` or ``norm='batch'``, training and ``predict`` differ (train
    and eval mode), so ``solver='lbfgs'`` is refused (it needs one deterministic objective), and
    so is ``MLPRegressor(loss='poisson')``.
    class_weight : ``None`` (default: scikit-learn's MLPClassifier, step for step), ``'balanced'``
        (``n_samples / (n_classes * np.bincount(y))``) or a dict ``{label: weight}`` (others 1), as
        scikit-learn's other classifiers take it: each sample's weight is multiplied by its class's
        (``compute_sample_weight``) and the fit is then a sample-weighted one (the loss a weighted
        mean over each batch, as scikit-learn's MLP computes it with ``sample_weight``). Not for
        multi-label targets; ``'balanced'`` not in ``partial_fit``.

    Targets: class labels of any type (integers, strings, ...) in ``classes_``, or a 2-D 0/1
    indicator matrix for multi-label classification (logistic outputs). Fitted attributes
    are scikit-learn's (``coefs_`` and ``intercepts_`` as host NumPy arrays: the linear layers'
    ``W`` and ``b``; with ``norm`` each hidden layer's scale and shift are in ``mlp_.params``), plus
    ``mlp_``, the fitted :class:`xpnet.MLP`.
    """

    _parameter_constraints: dict = {**MLPEstimator._parameter_constraints,
                                    "class_weight": [StrOptions({"balanced"}), dict, None]}
    _loss_name = "log_loss"
    _numeric_y = False
    _is_classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, device="cpu", dtype="float32", threads=None,
                 dropout=0.0, norm=None, residual=False, class_weight=None):
        shared = locals()  # the parameters of MLPEstimator, passed on as they are
        super().__init__(**{name: shared[name] for name in MLPEstimator._parameter_constraints})
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _fit(self, X, y, sample_weight=None, incremental: bool = False):
        """The estimator's fit with ``class_weight`` folded into ``sample_weight``."""
        if self.class_weight is None:
            return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)
        if incremental and self.class_weight == "balanced":  # as scikit-learn's SGDClassifier says it
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: the classes' shares are "
                             "not known from one batch; pass class_weight as a dict instead")
        labels = to_numpy(y) if on_device(y) else np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] > 1:
            raise ValueError(f"class_weight={self.class_weight!r} weights the samples of each class, and y holds "
                             "multi-label indicator rows: use sample_weight")
        labels = labels.ravel()
        n = len(X) if not hasattr(X, "shape") else X.shape[0]
        if len(labels) == n:  # otherwise the usual checks say what is wrong
            weights = compute_sample_weight(self.class_weight, labels)
            if sample_weight is not None:
                weights = weights * check_sample_weight(sample_weight, n)
            sample_weight = weights
        return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)

    # ----------------------------------------------------------- labels
    def _check_targets(self, y, incremental: bool):
        """scikit-learn's label checks; sets ``classes_`` when they are (re)learned."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if "classes_" not in self.__dict__ or (not self.warm_start and not incremental):
            y_type = type_of_target(y, input_name="y")
            if "multioutput" in y_type:
                raise ValueError("Multioutput target data is not supported with label binarization")
            self.classes_ = unique_labels(y)
            self._y_type = y_type
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        if (y.ndim == 2) != self._y_type.startswith("multilabel"):
            raise ValueError(f"y has shape {y.shape} but the classifier was fitted with "
                             f"{'multilabel indicator' if y.ndim == 1 else 'label vector'} targets")
        return y

    def _n_outputs(self, y) -> int:
        if self._y_type.startswith("multilabel"):
            return y.shape[1]
        return len(self.classes_) if self._y_type == "multiclass" else 1

    def _out_activation(self) -> str:
        return "softmax" if self._y_type == "multiclass" else "logistic"

    def _model_multilabel(self, sizes: list[int]) -> bool | None:
        """Multi-label indicator targets on 2+ logistic units: the network says so."""
        return True if self._y_type.startswith("multilabel") and sizes[-1] >= 2 else None

    def _model_classes(self):
        """The class list the network carries (None for multi-label and for a single class)."""
        if self._y_type.startswith("multilabel") or len(self.classes_) < 2:
            return None
        return np.asarray(self.classes_.tolist())  # plain integers or strings

    def _model_targets(self, y):
        """``y`` as the network takes it: its labels (it encodes them), indicator rows, or zeros for one class."""
        if self._y_type.startswith("multilabel"):
            return np.asarray(y, dtype=np.float64)
        if len(self.classes_) < 2:
            return np.zeros(len(y))
        return y

    def _score_targets(self, y) -> np.ndarray:
        """Host targets for the validation score: output indices, or the indicator matrix."""
        if self._y_type.startswith("multilabel"):
            return np.asarray(y).astype(np.int64)
        if len(self.classes_) < 2:
            return np.zeros(len(y), dtype=np.int64)
        return np.asarray(to_numpy(self.mlp_.encode_labels(y))).astype(np.int64)

    def _indices(self, A):
        """Output indices ``(m,)`` (or a 0/1 matrix for multi-label) from outputs, as scikit-learn thresholds."""
        xp = self.mlp_.xp
        if self.out_activation_ == "softmax":
            return xp.argmax(A, axis=1)
        if self.n_outputs_ > 1:
            return xp.astype(A > 0.5, xp.int64)
        return xp.astype(A[:, 0] > 0.5, xp.int64)

    def _validation_score(self, X_val, y_val, sw_val) -> float:
        pred = to_numpy(self._indices(self._outputs(X_val)))
        return float(accuracy_score(y_val, pred, sample_weight=sw_val))

    # ----------------------------------------------------------- API
    @available_if(lambda est: est._stochastic())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, keeping the optimizer state between calls.

        ``classes``: every class that will ever appear, required on the first call.
        """
        self._validate_params()
        known = self.__dict__.get("classes_")
        if known is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if known is not None:
                if not np.array_equal(known, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                                     f"was: {known!r}")
            else:
                y_probe = to_numpy(y) if on_device(y) else np.asarray(y)
                if type_of_target(y_probe).startswith("multilabel"):
                    self.classes_, self._y_type = unique_labels(y_probe), "multilabel-indicator"
                else:
                    self.classes_ = unique_labels(classes)
                    self._y_type = type_of_target(np.asarray(classes), input_name="classes")
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Class labels ``(n_samples,)`` (a 0/1 matrix ``(n_samples, n_classes)`` for multi-label)."""
        X, on_device, _ = self._predict_input(X)
        with self._threads(), self.mlp_.backend.activate():
            idx = self._indices(self._outputs(X))
            if self._y_type.startswith("multilabel"):
                return idx if on_device else np.asarray(to_numpy(idx))
            if len(self.classes_) < 2:
                out = np.repeat(self.classes_[0], X.shape[0])
                return self.mlp_.backend.asarray(out) if on_device else out
            labels = self.mlp_.decode_labels(idx)  # through the network's class list
            if on_device and not isinstance(labels, np.ndarray):
                return labels
            return np.asarray(to_numpy(labels)).astype(self.classes_.dtype, copy=False)

    def predict_proba(self, X):
        """Probabilities ``(n_samples, n_classes)``, columns in the order of ``classes_``."""
        X, on_device, dtype = self._predict_input(X)
        with self._threads(), self.mlp_.backend.activate():
            A = self._outputs(X)
            if self.n_outputs_ == 1:
                A = self.mlp_.xp.concat([1.0 - A, A], axis=1)
            return self._result(A, on_device, dtype)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        P = self.predict_proba(X)
        if isinstance(P, np.ndarray):
            return np.log(P, out=P)
        return array_api_compat.array_namespace(P).log(P)

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy (subset accuracy for multi-label), optionally sample-weighted."""
        pred = to_numpy(self.predict(X))
        y = to_numpy(y) if on_device(y) else y
        sample_weight = to_numpy(sample_weight) if on_device(sample_weight) else sample_weight
        return float(accuracy_score(y, pred, sample_weight=sample_weight))

    def _restore(self, mlp: MLP, record: dict) -> None:
        if mlp.output == "softmax":
            self._y_type = "multiclass"
        elif mlp.sizes[-1] > 1:
            self._y_type = "multilabel-indicator"
        else:
            self._y_type = "binary"
        classes = record.get("classes")
        if mlp.classes is not None:
            self.classes_ = mlp.classes
        elif classes is not None:  # one class, or multi-label: kept in the record
            self.classes_ = np.asarray(classes)
        else:
            raise ValueError("the file records no classes")

    def _fitted_record(self) -> dict:
        record = super()._fitted_record()
        if self._model_classes() is None:
            record["classes"] = np.asarray(self.classes_).tolist()
        return record
