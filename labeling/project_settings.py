"""A project's settings with their defaults, validated in one place (no ORM here).

Settings come in groups (``selection``, ``retrain``, ...), each a flat object of known keys. A
request may send any subset of a group's keys; unknown keys are refused with the list of known
ones, so a typo never passes silently.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("margin", "least_confidence", "entropy", "random")
METRICS = ("accuracy", "f1_macro")
CONSENSUS_METHODS = ("majority", "dawid_skene")
REASON_BUDGETS = ("uncertainty", "drift", "diversity", "random")
MODEL_FAMILIES = (
    "logistic_regression",
    "hist_gradient_boosting",
    "random_forest",
    "linear_svc",
    "sgd",
    "multinomial_nb",
)

Check = Callable[[Any], str | None]  # None when valid, else the message


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def number(lo: float, hi: float, *, integer: bool = False, nullable: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if v is None and nullable:
            return None
        ok_type = isinstance(v, int) if integer else isinstance(v, int | float)
        if isinstance(v, bool) or not ok_type:
            return ("must be an integer" if integer else "must be a number") + (" or null" if nullable else "")
        if not lo <= v <= hi:
            return f"must be between {lo:g} and {hi:g}"
        return None

    return check


def shares(keys: tuple[str, ...]) -> Check:
    """An object of key -> share in [0, 1] over known keys, summing to at most 1."""

    def check(v: Any) -> str | None:
        if not isinstance(v, dict):
            return "must be an object of reason: share"
        unknown = set(v) - set(keys)
        if unknown:
            return f"unknown keys {sorted(map(str, unknown))[:5]}; known: {', '.join(keys)}"
        for key, share in v.items():
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
                return f"{key} must be a number between 0 and 1"
        if sum(v.values()) > 1 + 1e-9:
            return "shares must sum to at most 1"
        return None

    return check


def json_object(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be an object"


# group -> key -> (default, check)
SPEC: dict[str, dict[str, tuple[Any, Check]]] = {
    "selection": {
        "strategy": ("margin", one_of(*STRATEGIES)),
        # Batch-aware selection: each batch is drawn from the most uncertain candidates so that it
        # stays diverse (bench/active_learning.py chose this default over plain margin).
        "diverse": (True, boolean),
        "drift_weight": (0.0, number(0, 1)),
        # Share of each batch the queue fills by reason; the rest goes to uncertainty.
        "budgets": ({"uncertainty": 0.7, "drift": 0.1, "diversity": 0.1, "random": 0.1}, shares(REASON_BUDGETS)),
        "batch_size": (50, number(1, 10_000, integer=True)),
        # Samples below this priority are left out of the queue (null: every unlabeled sample is queued).
        "floor": (None, number(0, 1, nullable=True)),
    },
    "retrain": {
        "min_new_labels": (50, number(1, 10_000_000, integer=True)),
        "on_drift": (False, boolean),
        "metric": ("accuracy", one_of(*METRICS)),
        "every_hours": (None, number(1, 24 * 365, integer=True, nullable=True)),
        "slice_tolerance": (0.05, number(0, 1)),
        "min_slice_size": (30, number(1, 1_000_000, integer=True)),
    },
    "training": {
        "family": ("logistic_regression", one_of(*MODEL_FAMILIES)),
        "params": ({}, json_object),
    },
    "queue": {
        "lease_seconds": (600, number(10, 7 * 24 * 3600, integer=True)),
        "show_suggestion": (False, boolean),
        "undo_seconds": (30, number(0, 3600, integer=True)),
    },
    "consensus": {
        "method": ("majority", one_of(*CONSENSUS_METHODS)),
        # Final labels less confident than this go to review instead (0: only ties do).
        "review_below": (0.0, number(0, 1)),
    },
    "audit": {
        # Annotators whose accuracy (gold, or else estimated) is below this are flagged.
        "flag_below": (0.7, number(0, 1)),
    },
    "drift": {
        "window": (1000, number(10, 10_000_000, integer=True)),
        "window_seconds": (None, number(60, 365 * 24 * 3600, integer=True, nullable=True)),
        # A dataset version to compare against instead of the latest one.
        "reference_version": (None, number(1, 2**31, integer=True, nullable=True)),
    },
    "datasets": {
        # Untagged versions older than this many days, and no model's training set, may be pruned.
        "retention_days": (None, number(1, 100_000, integer=True, nullable=True)),
    },
}
DEFAULTS: dict[str, dict[str, Any]] = {group: {k: d for k, (d, _) in keys.items()} for group, keys in SPEC.items()}


class SettingsError(ValueError):
    """Raised with a dict of field -> message when settings are invalid."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def normalize(group: str, given: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``given`` over ``current`` (or the defaults) for one settings group, validating it."""
    base = dict(DEFAULTS[group])
    base.update(current or {})
    if given is None:
        return base
    if not isinstance(given, dict):
        raise SettingsError({group: "must be an object"})
    errors: dict[str, str] = {}
    spec = SPEC[group]
    for key, value in given.items():
        name = f"{group}.{key}"
        if key not in spec:
            errors[name] = f"unknown setting; known: {', '.join(sorted(spec))}"
            continue
        problem = spec[key][1](value)
        if problem:
            errors[name] = problem
        else:
            base[key] = value
    if errors:
        raise SettingsError(errors)
    return base


@dataclass(frozen=True)
class ProjectSettings:
    selection: dict[str, Any]
    retrain: dict[str, Any]
    training: dict[str, Any]
    queue: dict[str, Any]
    consensus: dict[str, Any]
    audit: dict[str, Any]
    drift: dict[str, Any]
    datasets: dict[str, Any]

    @classmethod
    def of(cls, stored: dict[str, Any]) -> "ProjectSettings":
        return cls(**{group: {**DEFAULTS[group], **stored.get(group, {})} for group in DEFAULTS})
