"""A project's settings with their defaults, validated in one place (no ORM here)."""

from dataclasses import dataclass
from typing import Any

STRATEGIES = ("margin", "least_confidence", "entropy", "random")
METRICS = ("accuracy", "f1_macro")

DEFAULTS: dict[str, dict[str, Any]] = {
    "selection": {"strategy": "margin", "drift_weight": 0.0},
    "retrain": {"min_new_labels": 50, "on_drift": False, "metric": "accuracy"},
    "queue": {"lease_seconds": 600, "show_suggestion": False},
}


class SettingsError(ValueError):
    """Raised with a dict of field -> message when settings are invalid."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def _check_number(errors: dict[str, str], key: str, value: Any, lo: float, hi: float, integer: bool) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        errors[key] = "must be an integer" if integer else "must be a number"
    elif not lo <= value <= hi:
        errors[key] = f"must be between {lo:g} and {hi:g}"


def normalize(group: str, given: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``given`` over ``current`` (or the defaults) for one settings group, validating it."""
    base = dict(DEFAULTS[group])
    base.update(current or {})
    if given is None:
        return base
    if not isinstance(given, dict):
        raise SettingsError({group: "must be an object"})
    errors: dict[str, str] = {}
    for key, value in given.items():
        name = f"{group}.{key}"
        if key not in DEFAULTS[group]:
            errors[name] = f"unknown setting; known: {', '.join(sorted(DEFAULTS[group]))}"
        elif key == "strategy" and value not in STRATEGIES:
            errors[name] = f"must be one of {', '.join(STRATEGIES)}"
        elif key == "metric" and value not in METRICS:
            errors[name] = f"must be one of {', '.join(METRICS)}"
        elif key in ("on_drift", "show_suggestion") and not isinstance(value, bool):
            errors[name] = "must be true or false"
        elif key == "drift_weight":
            _check_number(errors, name, value, 0, 1, integer=False)
        elif key == "min_new_labels":
            _check_number(errors, name, value, 1, 10_000_000, integer=True)
        elif key == "lease_seconds":
            _check_number(errors, name, value, 10, 7 * 24 * 3600, integer=True)
        if name not in errors:
            base[key] = value
    if errors:
        raise SettingsError(errors)
    return base


@dataclass(frozen=True)
class ProjectSettings:
    selection: dict[str, Any]
    retrain: dict[str, Any]
    queue: dict[str, Any]

    @classmethod
    def of(cls, stored: dict[str, Any]) -> "ProjectSettings":
        return cls(**{group: {**DEFAULTS[group], **stored.get(group, {})} for group in DEFAULTS})
