"""Pipelines from a schema, and skops artifacts loaded only after their digest check."""

import hashlib
import io
import os

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from feedback import features, pipelines
from feedback.demo import digit_png

SCHEMA = {"x": "numeric", "colour": "categorical", "note": "text", "picture": "image"}


def _rows(n: int) -> list[dict[str, object]]:
    pixels = np.zeros(64)
    pixels[::3] = 16
    return [
        {
            "x": float(i % 2) * 5 if i % 5 else None,
            "colour": ["red", "blue"][i % 2] if i % 4 else None,
            "note": ["sunny day", "rainy night"][i % 2],
            "picture": digit_png(pixels) if i % 2 else "https://example.invalid/not-fetched.png",
        }
        for i in range(n)
    ]


def test_fit_predict_over_all_labels_and_round_trip() -> None:
    X = features.matrix(_rows(40), SCHEMA)
    y = np.array(["sun", "rain"] * 20, dtype=object)
    model = pipelines.fit(SCHEMA, pipelines.DEFAULT_CONFIG, X, y, seed=0)
    artifact = pipelines.dump(model)
    loaded = pipelines.load(artifact.data, artifact.digest)
    probabilities = pipelines.probabilities_over(loaded, X, ["rain", "snow", "sun"])
    assert probabilities.shape == (40, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[:, 1] == 0).all()  # never seen: probability 0
    predicted = np.array(["rain", "snow", "sun"])[probabilities.argmax(axis=1)]
    assert (predicted == y).mean() == 1.0


def test_single_class_and_empty_text_still_train() -> None:
    rows = [{"x": 1.0, "colour": "red", "note": "", "picture": None} for _ in range(3)]
    X = features.matrix(rows, SCHEMA)
    model = pipelines.fit(SCHEMA, pipelines.DEFAULT_CONFIG, X, np.array(["only"] * 3, dtype=object), seed=0)
    assert pipelines.probabilities_over(model, X, ["only", "other"]).tolist() == [[1.0, 0.0]] * 3


def test_tampered_artifact_is_refused() -> None:
    X = features.matrix(_rows(10), SCHEMA)
    artifact = pipelines.dump(
        pipelines.fit(SCHEMA, pipelines.DEFAULT_CONFIG, X, np.array(["a", "b"] * 5, dtype=object), seed=0)
    )
    with pytest.raises(pipelines.ArtifactError, match="digest"):
        pipelines.load(artifact.data + b"\0", artifact.digest)


def test_artifact_needing_untrusted_types_is_refused() -> None:
    model = Pipeline([("f", FunctionTransformer(os.getcwd))])  # a reference to code outside the allow-list
    data = sio.dumps(model)
    with pytest.raises(pipelines.ArtifactError, match="untrusted"):
        pipelines.load(data, hashlib.sha256(data).hexdigest())
    assert io.BytesIO(data).read(2) == b"PK"  # a skops zip, never a pickle


def test_image_pixels() -> None:
    pixels = np.arange(64) % 17
    decoded = features.image_pixels(digit_png(pixels.astype(float)))
    assert decoded.shape == (64,)
    assert np.allclose(decoded, 1 - pixels / 16, atol=0.01)
    assert np.isnan(features.image_pixels("data:image/png;base64,!!notbase64")).all()
    assert np.isnan(features.image_pixels(42)).all()
