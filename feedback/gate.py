"""Whether a challenger may replace the champion. Pure.

Three checks, all on rows neither model trained on (the held-out split):
- overall: not worse on the project's metric;
- slices: on every slice (a value of a categorical field, a selection reason) with at least
  ``min_slice_size`` rows, not worse by more than ``slice_tolerance``;
- production failures: on the held-out samples where production's prediction disagreed with the
  humans' final label (a validation set that grows by itself), not worse.
Every check is recorded with its figures and a reason, passed or not.
"""

from dataclasses import dataclass, field
from typing import Any

# Metrics are compared with this slack so that float noise on equal predictions is "not worse".
EPSILON = 1e-9


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": list(self.checks)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def decide(
    *,
    metric: str,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    champion_version: int | None,
    slices: list[dict[str, Any]] | None = None,
    failures: dict[str, Any] | None = None,
    slice_tolerance: float = 0.05,
    min_slice_size: int = 30,
) -> GateDecision:
    """``challenger`` and ``champion`` are metrics.evaluate() results on the same held-out rows;
    ``slices`` are metrics.slices() rows; ``failures`` is ``{"n", "challenger", "champion"}`` on
    the production-failures set. The overall check's reason comes first."""
    if champion is None or champion_version is None:
        reason = "first model of the project: becomes champion"
        return GateDecision(True, [reason], [{"check": "overall", "passed": True, "reason": reason}])
    v = f"champion v{champion_version}"
    new, old = challenger.get(metric), champion.get(metric)
    n = challenger.get("n", 0)
    checks: list[dict[str, Any]] = []
    if new is None or old is None:
        reason = f"no held-out {metric} to compare on (n={n}); {v} stays"
        checks.append({"check": "overall", "metric": metric, "n": n, "passed": False, "reason": reason})
        return GateDecision(False, [reason], checks)
    ok = new + EPSILON >= old
    sign = ">=" if ok else "<"
    reason = f"held-out {metric} {new:.4f} {sign} {v}'s {old:.4f} (n={n})"
    checks.append(
        {
            "check": "overall",
            "metric": metric,
            "n": n,
            "challenger": new,
            "champion": old,
            "passed": ok,
            "reason": reason,
        }
    )
    checks.extend(_slice_checks(metric, slices or [], v, slice_tolerance, min_slice_size))
    checks.extend(_failure_checks(metric, failures, v))
    passed = all(check["passed"] for check in checks if not check.get("skipped"))
    failed = [check["reason"] for check in checks if not check["passed"] and not check.get("skipped")]
    reasons = [checks[0]["reason"]] + [r for r in failed if r != checks[0]["reason"]]
    if passed:
        compared = [c for c in checks[1:] if not c.get("skipped")]
        skipped = [c for c in checks[1:] if c.get("skipped")]
        reasons.append(f"{len(compared)} other checks passed" + (f", {len(skipped)} skipped" if skipped else ""))
    return GateDecision(passed, reasons, checks)


def _slice_checks(
    metric: str, slices: list[dict[str, Any]], v: str, tolerance: float, min_size: int
) -> list[dict[str, Any]]:
    out = []
    for row in slices:
        new, old, n = row.get("challenger"), row.get("champion"), int(row.get("n", 0))
        base = {"check": "slice", "slice": row["slice"], "metric": metric, "n": n, "challenger": new, "champion": old}
        if n < min_size or new is None or old is None:
            reason = f"slice {row['slice']}: n={n} below min_slice_size {min_size}, not compared"
            out.append({**base, "passed": True, "skipped": True, "reason": reason})
            continue
        ok = new + tolerance + EPSILON >= old
        word = "within" if ok else "worse than"
        reason = f"slice {row['slice']}: {metric} {new:.4f} {word} {v}'s {old:.4f} - {tolerance:g} (n={n})"
        out.append({**base, "passed": ok, "reason": reason})
    return out


def _failure_checks(metric: str, failures: dict[str, Any] | None, v: str) -> list[dict[str, Any]]:
    if not failures or not failures.get("n"):
        return [
            {
                "check": "production_failures",
                "n": 0,
                "passed": True,
                "skipped": True,
                "reason": "no held-out production failures yet, not compared",
            }
        ]
    new, old, n = failures.get("challenger"), failures.get("champion"), int(failures["n"])
    ok = new is not None and old is not None and new + EPSILON >= old
    sign = ">=" if ok else "<"
    reason = f"production failures: {metric} {_fmt(new)} {sign} {v}'s {_fmt(old)} (n={n})"
    return [
        {
            "check": "production_failures",
            "metric": metric,
            "n": n,
            "challenger": new,
            "champion": old,
            "passed": ok,
            "reason": reason,
        }
    ]
