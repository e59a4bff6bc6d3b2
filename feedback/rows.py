"""Checking ingested items against a project's schema and labels. Pure: dicts in, dataclasses out.

The checks are written out by hand (not a serializer per row): ingest validates tens of thousands
of items per request and a DRF serializer costs about 100x more per item. ``check_batch`` first
tries ``_valid_row``, a straight-line check with exact type tests that only recognises valid
items; anything it does not accept goes through ``check_item``, which names every problem. The
fast check must accept nothing that ``check_item`` rejects and build the same row (tests compare
the two on generated items).
"""

import math
from collections.abc import KeysView
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isfinite
from typing import Any

MAX_ID_LENGTH = 255
MAX_LABEL_LENGTH = 200
TOP_LEVEL = frozenset({"external_id", "data", "prediction", "model_version", "observed_at", "label"})
PREDICTION_KEYS = frozenset({"label", "probabilities"})
MAX_VERSION_LENGTH = 200
# PostgreSQL cannot store NUL in text or jsonb strings; SQLite would, so both refuse it here.
NUL_MESSAGE = "must not contain NUL characters (\\u0000)"
PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ValidRow:
    index: int
    external_id: str
    data: dict[str, Any]
    observed_at: datetime | None
    label: str | None
    prediction_label: str | None
    probabilities: list[float] | None  # over the project's labels, in their order, summing to 1
    model_version: str


@dataclass(frozen=True)
class CheckedBatch:
    valid: list[ValidRow]
    rejected: list[dict[str, Any]]


def _check_value(kind: str, value: Any) -> str | None:
    if value is None:
        return None
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        return None
    if not isinstance(value, str):
        return "must be a string"
    if "\x00" in value:
        return NUL_MESSAGE
    return None


def check_data(data: Any, schema: dict[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Validate one ``data`` object. Fields missing from it are stored as null."""
    if not isinstance(data, dict):
        return None, {"data": "must be an object of field: value"}
    errors: dict[str, str] = {}
    for field, value in data.items():
        kind = schema.get(field)
        if kind is None:
            errors[f"data.{field}"] = "not a field of the project's schema"
            continue
        problem = _check_value(kind, value)
        if problem:
            errors[f"data.{field}"] = f"{kind} field {problem}"
    if errors:
        return None, errors
    return {field: data.get(field) for field in schema}, {}


def _check_probabilities(raw: Any, label_index: dict[str, int], errors: dict[str, str]) -> list[float] | None:
    if not isinstance(raw, dict) or not raw:
        errors["prediction.probabilities"] = "must be a non-empty object of label: probability"
        return None
    vector = [0.0] * len(label_index)
    total = 0.0
    for label, p in raw.items():
        position = label_index.get(label)
        if position is None:
            errors["prediction.probabilities"] = f"unknown label {str(label)[:50]!r}"
            return None
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            errors["prediction.probabilities"] = f"probability of {label!r} must be a number in [0, 1]"
            return None
        vector[position] = float(p)
        total += p
    if total <= 0.0 or total > 1.0 + PROBABILITY_TOLERANCE:
        errors["prediction.probabilities"] = f"probabilities must sum to at most 1 (and more than 0), got {total:.6g}"
        return None
    missing = [i for i, name in enumerate(label_index) if name not in raw]
    if total < 1.0 - PROBABILITY_TOLERANCE and missing:
        # Production often sends only its top classes: spread the rest over the unlisted ones.
        share = (1.0 - total) / len(missing)
        for i in missing:
            vector[i] = share
        return vector
    return [p / total for p in vector]


def _check_prediction(
    raw: Any, label_index: dict[str, int], errors: dict[str, str]
) -> tuple[str | None, list[float] | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        errors["prediction"] = "must be an object with label and/or probabilities"
        return None, None
    unknown = set(raw) - {"label", "probabilities"}
    if unknown:
        errors["prediction"] = f"unknown keys: {', '.join(sorted(map(str, unknown)))[:200]}"
        return None, None
    label = raw.get("label")
    if label is not None and (not isinstance(label, str) or label not in label_index):
        errors["prediction.label"] = "must be one of the project's labels"
        label = None
    probabilities = None
    if raw.get("probabilities") is not None:
        probabilities = _check_probabilities(raw["probabilities"], label_index, errors)
        if probabilities is not None and label is None and "prediction.label" not in errors:
            label = list(label_index)[max(range(len(probabilities)), key=probabilities.__getitem__)]
    return label, probabilities


def _utc_representable(parsed: datetime) -> bool:
    """Year 1 at +01:00 or year 9999 at -01:00 parse, but fall outside datetime's range in UTC."""
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _check_observed_at(raw: Any, errors: dict[str, str]) -> datetime | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        errors["observed_at"] = "must be an ISO 8601 string with an offset"
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        errors["observed_at"] = "must be an ISO 8601 string with an offset"
        return None
    if parsed.tzinfo is None:
        errors["observed_at"] = "must include a UTC offset (e.g. +00:00 or Z)"
        return None
    if not _utc_representable(parsed):
        errors["observed_at"] = "out of range once converted to UTC (years 1 to 9999)"
        return None
    return parsed


def check_item(index: int, item: Any, schema: dict[str, str], label_index: dict[str, int]) -> ValidRow | dict[str, Any]:
    """A ValidRow, or a rejection ``{"index", "external_id", "errors"}``."""
    if not isinstance(item, dict):
        return {"index": index, "external_id": None, "errors": {"item": "must be an object"}}
    errors: dict[str, str] = {}
    external_id = item.get("external_id")
    if not isinstance(external_id, str) or not external_id or len(external_id) > MAX_ID_LENGTH:
        errors["external_id"] = f"required: a non-empty string of at most {MAX_ID_LENGTH} characters"
        external_id = None
    elif "\x00" in external_id:
        errors["external_id"] = NUL_MESSAGE
        external_id = None
    unknown = set(item) - TOP_LEVEL
    if unknown:
        errors["item"] = f"unknown keys: {', '.join(sorted(map(str, unknown)))[:200]}"
    data, data_errors = check_data(item.get("data"), schema) if "data" in item else (None, {"data": "required"})
    errors.update(data_errors)
    prediction_label, probabilities = _check_prediction(item.get("prediction"), label_index, errors)
    observed_at = _check_observed_at(item.get("observed_at"), errors)
    model_version = item.get("model_version")
    if model_version is not None and (not isinstance(model_version, str) or len(model_version) > MAX_VERSION_LENGTH):
        errors["model_version"] = f"must be a string of at most {MAX_VERSION_LENGTH} characters"
    elif isinstance(model_version, str) and "\x00" in model_version:
        errors["model_version"] = NUL_MESSAGE
    label = item.get("label")
    if label is not None and (not isinstance(label, str) or label not in label_index):
        errors["label"] = "must be one of the project's labels"
    if errors or external_id is None or data is None:
        return {
            "index": index,
            "external_id": item.get("external_id") if isinstance(item.get("external_id"), str | int) else None,
            "errors": errors,
        }
    return ValidRow(
        index=index,
        external_id=external_id,
        data=data,
        observed_at=observed_at,
        label=label,
        prediction_label=prediction_label,
        probabilities=probabilities,
        model_version=model_version or "",
    )


def _valid_probabilities(raw: Any, label_index: dict[str, int], names: list[str]) -> list[float] | None:
    """_check_probabilities for a valid object (same arithmetic, same order), else None."""
    if type(raw) is not dict or not raw:
        return None
    vector = [0.0] * len(label_index)
    total = 0.0
    for label, p in raw.items():
        position = label_index.get(label)
        kind = type(p)
        if position is None or (kind is not float and kind is not int) or not 0.0 <= p <= 1.0:
            return None
        vector[position] = float(p)
        total += p
    if total <= 0.0 or total > 1.0 + PROBABILITY_TOLERANCE:
        return None
    n_missing = len(names) - len(raw)  # raw's keys are distinct labels, all known
    if total < 1.0 - PROBABILITY_TOLERANCE and n_missing:
        share = (1.0 - total) / n_missing
        for i, name in enumerate(names):
            if name not in raw:
                vector[i] = share
        return vector
    return [p / total for p in vector]


def _valid_row(
    index: int,
    item: dict[str, Any],
    fields: tuple[tuple[str, bool], ...],
    field_names: KeysView[str],
    label_index: dict[str, int],
    names: list[str],
) -> ValidRow | None:
    """The row of a valid item, as check_item would build it; None when anything is off.

    ``fields`` are (name, is_numeric) in schema order and ``field_names`` the schema's key view.
    Exact ``type()`` tests instead of isinstance: orjson makes exact types, and anything unusual
    (a bool, a subclass, a NaN) falls through to check_item, which decides and explains.
    """
    external_id = item.get("external_id")
    if type(external_id) is not str or not external_id or len(external_id) > MAX_ID_LENGTH or "\x00" in external_id:
        return None
    raw_data = item.get("data")
    if type(raw_data) is not dict or not raw_data.keys() <= field_names:
        return None
    data = {}
    for field, numeric in fields:
        value = raw_data.get(field)
        if value is not None:
            kind = type(value)
            if numeric:
                if kind is float:
                    if not isfinite(value):
                        return None
                elif kind is not int:
                    return None
            elif kind is not str or "\x00" in value:
                return None
        data[field] = value
    prediction_label = probabilities = None
    prediction = item.get("prediction")
    if prediction is not None:
        if type(prediction) is not dict or not prediction.keys() <= PREDICTION_KEYS:
            return None
        prediction_label = prediction.get("label")
        if prediction_label is not None and (type(prediction_label) is not str or prediction_label not in label_index):
            return None
        raw_probabilities = prediction.get("probabilities")
        if raw_probabilities is not None:
            probabilities = _valid_probabilities(raw_probabilities, label_index, names)
            if probabilities is None:
                return None
            if prediction_label is None:
                prediction_label = names[probabilities.index(max(probabilities))]  # the first of equals
    observed_at = item.get("observed_at")
    if observed_at is not None:
        if type(observed_at) is not str:
            return None
        try:
            observed_at = datetime.fromisoformat(observed_at)
        except ValueError:
            return None
        if observed_at.tzinfo is None or not _utc_representable(observed_at):
            return None
    model_version = item.get("model_version")
    if model_version is not None and (
        type(model_version) is not str or len(model_version) > MAX_VERSION_LENGTH or "\x00" in model_version
    ):
        return None
    label = item.get("label")
    if label is not None and (type(label) is not str or label not in label_index):
        return None
    return ValidRow(
        index=index,
        external_id=external_id,
        data=data,
        observed_at=observed_at,
        label=label,
        prediction_label=prediction_label,
        probabilities=probabilities,
        model_version=model_version or "",
    )


def check_batch(items: list[Any], schema: dict[str, str], labels: list[str]) -> CheckedBatch:
    """Valid rows and rejections (by index) of ``items``, in their order."""
    label_index = {label: i for i, label in enumerate(labels)}
    names = list(label_index)
    fields = tuple((field, kind == "numeric") for field, kind in schema.items())
    field_names = schema.keys()
    valid: list[ValidRow] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        row = None
        if type(item) is dict and item.keys() <= TOP_LEVEL:
            row = _valid_row(index, item, fields, field_names, label_index, names)
        result = row if row is not None else check_item(index, item, schema, label_index)
        if isinstance(result, ValidRow):
            valid.append(result)
        else:
            rejected.append(result)
    return CheckedBatch(valid=valid, rejected=rejected)
