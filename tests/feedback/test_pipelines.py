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


# Small settings per family, so that each fits in a fraction of a second on tiny data.
FAST = {"hist_gradient_boosting": {"max_iter": 10, "min_samples_leaf": 2}, "random_forest": {"n_estimators": 5}}


@pytest.mark.parametrize("family", list(pipelines.ESTIMATORS))
def test_every_family_round_trips_through_skops(family: str) -> None:
    rows = _rows(40)
    X = features.matrix(rows, SCHEMA)
    y = np.array(["sun", "rain"] * 19 + ["snow", "sun"], dtype=object)  # "snow": a class seen once
    config = pipelines.resolved_config(family, FAST.get(family, {}))
    assert pipelines.check_config(config) == []
    model = pipelines.fit(SCHEMA, config, X, y, seed=0)
    artifact = pipelines.dump(model)
    loaded = pipelines.load(artifact.data, artifact.digest)  # skops' defaults + the allow-list only
    labels = ["rain", "snow", "sun", "hail"]
    before = pipelines.probabilities_over(model, X, labels)
    after = pipelines.probabilities_over(loaded, X, labels)
    assert np.allclose(before, after)
    assert np.allclose(after.sum(axis=1), 1.0) and (after[:, 3] == 0).all()
    predicted = np.array(labels, dtype=object)[after.argmax(axis=1)]
    assert (predicted == y).mean() >= 0.8, family
    assert type(loaded.named_steps["classifier"]).__name__ != "DummyClassifier"


def test_family_parameters_are_checked_with_clear_messages() -> None:
    unknown = pipelines.check_config({"family": "random_forest", "params": {"n_trees": 10}})
    assert len(unknown) == 1 and "'n_trees' not a parameter of RandomForestClassifier" in unknown[0]
    assert "n_estimators" in unknown[0]  # the known ones are listed
    bad_value = pipelines.check_config({"family": "hist_gradient_boosting", "params": {"learning_rate": -1}})
    assert len(bad_value) == 1 and "learning_rate" in bad_value[0]
    assert pipelines.check_config({"family": "sgd", "params": {"loss": "hinge"}}) != []
    assert pipelines.check_config({"family": "xgboost", "params": {}})[0].startswith("training.family")
    with pytest.raises(pipelines.ConfigError, match="n_trees"):
        pipelines.fit(
            SCHEMA,
            {"family": "random_forest", "params": {"n_trees": 3}},
            features.matrix(_rows(4), SCHEMA),
            np.array(["a", "b"] * 2, dtype=object),
            seed=0,
        )
