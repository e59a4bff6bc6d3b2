"""scikit-learn pipelines built from a project's schema, and their skops artifacts. Pure: no ORM.

A project picks a model family by name (labeling.project_settings.MODEL_FAMILIES) and may set
that estimator's parameters; ``check_config`` names every unknown or invalid one, so that a bad
config fails with a clear message before anything is fitted.

Artifacts are only ever loaded with skops, after checking their SHA-256 against the registry, and
with no types trusted beyond skops' defaults (scikit-learn, numpy, scipy) and the allow-list below
(scikit-learn's own data-only tree and calibration classes): a file that needs more is refused,
never unpickled.
"""

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import skops.io as sio
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from feedback.features import layout

ESTIMATORS: dict[str, type[BaseEstimator]] = {
    "logistic_regression": LogisticRegression,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "random_forest": RandomForestClassifier,
    "linear_svc": LinearSVC,
    "sgd": SGDClassifier,
    "multinomial_nb": MultinomialNB,
}
# What each family gets unless the project says otherwise (recorded in the run's config).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "hist_gradient_boosting": {"learning_rate": 0.1, "max_iter": 100},
    "random_forest": {"n_estimators": 100, "min_samples_leaf": 1},
    "linear_svc": {"C": 1.0},
    # log_loss: SGD needs a probabilistic loss for predict_proba.
    "sgd": {"loss": "log_loss", "alpha": 0.0001, "max_iter": 1000},
    "multinomial_nb": {"alpha": 1.0},
}
DEFAULT_CONFIG: dict[str, Any] = {"family": "logistic_regression", "params": FAMILY_DEFAULTS["logistic_regression"]}
# Families that take a seed (random_state), and those that need a dense matrix.
SEEDED = frozenset({"logistic_regression", "hist_gradient_boosting", "random_forest", "linear_svc", "sgd"})
DENSE = frozenset({"hist_gradient_boosting"})
# A dense matrix of a text column's TF-IDF is one float per term per row: keep it small.
DENSE_TEXT_FEATURES = 300
PROBABILISTIC_SGD_LOSSES = ("log_loss", "modified_huber")


def resolved_config(family: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"family": family, "params": {**FAMILY_DEFAULTS.get(family, {}), **params}}


class ConfigError(ValueError):
    """A training config naming an unknown family, or parameters its estimator does not take."""


def check_config(config: dict[str, Any]) -> list[str]:
    """Every problem of ``config`` (``{"family", "params"}``), as messages; empty when it is valid.

    Unknown parameter names are listed with the known ones; values are checked by scikit-learn's
    own parameter constraints, without fitting."""
    family = config.get("family")
    params = config.get("params", {})
    if family not in ESTIMATORS:
        return [f"training.family: unknown model family {family!r}; known: {', '.join(ESTIMATORS)}"]
    if not isinstance(params, dict):
        return ["training.params: must be an object of parameter: value"]
    cls = ESTIMATORS[str(family)]
    known = set(cls().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)[:300]
        return [f"training.params: {names} not a parameter of {cls.__name__}; known: {', '.join(sorted(known))}"]
    try:
        estimator = cls(**params)
        estimator._validate_params()
    except (TypeError, ValueError) as exc:
        return [f"training.params: {str(exc)[:500]}"]
    if family == "sgd" and params.get("loss") not in PROBABILISTIC_SGD_LOSSES:
        return [f"training.params: sgd needs a loss with probabilities: one of {', '.join(PROBABILISTIC_SGD_LOSSES)}"]
    return []


class ArtifactError(Exception):
    """An artifact that fails its digest check or needs types we do not trust."""


# Beyond skops' defaults we trust exactly these: numpy's dtype objects, and scikit-learn's own
# fitted trees and calibrators, which skops rebuilds from their arrays (they carry no code).
TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]
TOKEN_PATTERN = r"(?u)\b\w+\b"


def _has_words(column: NDArray[Any]) -> bool:
    return any(isinstance(v, str) and v.strip() for v in column)


def preprocessor(schema: dict[str, str], X: NDArray[Any], family: str = "logistic_regression") -> ColumnTransformer:
    """Per-kind transformers; a text column without a single word in ``X`` is left out (TF-IDF
    cannot fit an empty vocabulary). Naive Bayes gets non-negative numeric columns; families that
    need a dense matrix get a smaller vocabulary and a dense output."""
    cols = layout(schema)
    dense = family in DENSE
    parts: list[tuple[str, Any, Any]] = []
    if cols.numeric:
        scaler = MinMaxScaler(clip=True) if family == "multinomial_nb" else StandardScaler()
        numeric = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), scaler)
        parts.append(("numeric", numeric, cols.numeric))
    if cols.categorical:
        categorical = OneHotEncoder(handle_unknown="ignore", min_frequency=1)
        parts.append(("categorical", categorical, cols.categorical))
    for position in cols.text:
        if not _has_words(X[:, position]):
            continue
        # A scalar column selector hands TfidfVectorizer the 1-D array of strings it expects.
        text = TfidfVectorizer(
            sublinear_tf=True,
            ngram_range=(1, 2),
            max_features=DENSE_TEXT_FEATURES if dense else 50_000,
            token_pattern=TOKEN_PATTERN,
        )
        parts.append((f"text_{position}", text, position))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0 if dense else 0.3)


def classifier_for(config: dict[str, Any], seed: int, y: NDArray[Any]) -> Any:
    """The family's estimator with its parameters (raises ConfigError for a bad config)."""
    problems = check_config(config)
    if problems:
        raise ConfigError("; ".join(problems))
    family = str(config["family"])
    params = dict(config.get("params", {}))
    if family in SEEDED:
        params.setdefault("random_state", seed)
    estimator = ESTIMATORS[family](**params)
    if family == "linear_svc":
        # LinearSVC has no probabilities: calibrate it by cross-validation (k folds need k rows per class).
        _, counts = np.unique(y, return_counts=True)
        return CalibratedClassifierCV(estimator, cv=int(min(3, max(2, counts.min()))), method="sigmoid")
    return estimator


def _every_class_twice(X: NDArray[Any], y: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Repeat the rows of classes seen once, so that cross-validated calibration can split them."""
    values, counts = np.unique(y, return_counts=True)
    single = set(values[counts < 2].tolist())
    if not single:
        return X, y
    extra = np.array([label in single for label in y], dtype=bool)
    return np.concatenate([X, X[extra]]), np.concatenate([y, y[extra]])


def fit(schema: dict[str, str], config: dict[str, Any], X: NDArray[Any], y: NDArray[Any], seed: int) -> Pipeline:
    """Fit the pipeline for ``schema`` on (X, y); a single-class training set gets a prior-only
    classifier, so training works from a handful of labels. Raises ConfigError for a bad config."""
    family = str(config.get("family", "logistic_regression"))
    if len(np.unique(y)) < 2:
        classifier: Any = DummyClassifier(strategy="prior")
    else:
        classifier = classifier_for(config, seed, y)
        if family == "linear_svc":
            X, y = _every_class_twice(X, y)
    model = Pipeline([("features", preprocessor(schema, X, family)), ("classifier", classifier)])
    return model.fit(X, y)


def probabilities_over(model: Pipeline, X: NDArray[Any], labels: list[str]) -> NDArray[np.float64]:
    """predict_proba with one column per project label (in project order); labels the model never
    saw get probability 0, so every row sums to 1."""
    fitted = model.predict_proba(X)
    out = np.zeros((len(X), len(labels)))
    position = {label: i for i, label in enumerate(labels)}
    for column, cls in enumerate(model.classes_):
        out[:, position[str(cls)]] = fitted[:, column]
    return out


@dataclass(frozen=True)
class Artifact:
    data: bytes
    digest: str


def dump(model: Pipeline) -> Artifact:
    data = sio.dumps(model)
    return Artifact(data=data, digest=hashlib.sha256(data).hexdigest())


def load(data: bytes, digest: str) -> Pipeline:
    """Load a skops artifact after its digest check, trusting only skops' defaults and TRUSTED_TYPES."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise ArtifactError("artifact digest does not match the registry")
    untrusted = [name for name in sio.get_untrusted_types(data=data) if name not in TRUSTED_TYPES]
    if untrusted:
        raise ArtifactError(f"artifact needs untrusted types: {', '.join(untrusted)[:300]}")
    model = sio.load(io.BytesIO(data), trusted=TRUSTED_TYPES)
    if not isinstance(model, Pipeline):
        raise ArtifactError("artifact is not a scikit-learn Pipeline")
    return model
