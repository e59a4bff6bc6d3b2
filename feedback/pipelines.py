"""scikit-learn pipelines built from a project's schema, and their skops artifacts. Pure: no ORM.

Artifacts are only ever loaded with skops, after checking their SHA-256 against the registry, and
with no types trusted beyond skops' defaults (scikit-learn, numpy, scipy): a file that needs more
is refused, never unpickled.
"""

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import skops.io as sio
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from feedback.features import layout

FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {"logistic_regression": {"C": 1.0, "max_iter": 1000}}
DEFAULT_CONFIG: dict[str, Any] = {"family": "logistic_regression", "params": FAMILY_DEFAULTS["logistic_regression"]}


def resolved_config(family: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"family": family, "params": {**FAMILY_DEFAULTS.get(family, {}), **params}}


class ArtifactError(Exception):
    """An artifact that fails its digest check or needs types we do not trust."""


# Beyond skops' defaults we trust exactly this: numpy's dtype objects carry no code.
TRUSTED_TYPES = ["numpy.dtype"]
TOKEN_PATTERN = r"(?u)\b\w+\b"


def _has_words(column: NDArray[Any]) -> bool:
    return any(isinstance(v, str) and v.strip() for v in column)


def preprocessor(schema: dict[str, str], X: NDArray[Any]) -> ColumnTransformer:
    """Per-kind transformers; a text column without a single word in ``X`` is left out (TF-IDF
    cannot fit an empty vocabulary)."""
    cols = layout(schema)
    parts: list[tuple[str, Any, Any]] = []
    if cols.numeric:
        numeric = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        parts.append(("numeric", numeric, cols.numeric))
    if cols.categorical:
        categorical = OneHotEncoder(handle_unknown="ignore", min_frequency=1)
        parts.append(("categorical", categorical, cols.categorical))
    for position in cols.text:
        if not _has_words(X[:, position]):
            continue
        # A scalar column selector hands TfidfVectorizer the 1-D array of strings it expects.
        text = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=50_000, token_pattern=TOKEN_PATTERN)
        parts.append((f"text_{position}", text, position))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.3)


def fit(schema: dict[str, str], config: dict[str, Any], X: NDArray[Any], y: NDArray[Any], seed: int) -> Pipeline:
    """Fit the pipeline for ``schema`` on (X, y); a single-class training set gets a prior-only
    classifier, so training works from a handful of labels."""
    if len(np.unique(y)) < 2:
        classifier: Any = DummyClassifier(strategy="prior")
    else:
        params = dict(config.get("params", {}))
        classifier = LogisticRegression(random_state=seed, **params)
    model = Pipeline([("features", preprocessor(schema, X)), ("classifier", classifier)])
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
    """Load a skops artifact after its digest check, trusting only skops' default types."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise ArtifactError("artifact digest does not match the registry")
    untrusted = [name for name in sio.get_untrusted_types(data=data) if name not in TRUSTED_TYPES]
    if untrusted:
        raise ArtifactError(f"artifact needs untrusted types: {', '.join(untrusted)[:300]}")
    model = sio.load(io.BytesIO(data), trusted=TRUSTED_TYPES)
    if not isinstance(model, Pipeline):
        raise ArtifactError("artifact is not a scikit-learn Pipeline")
    return model
