"""Whether a challenger may replace the champion. Pure."""

from dataclasses import dataclass, field
from typing import Any

# Metrics are compared with this slack so that float noise on equal predictions is "not worse".
EPSILON = 1e-9


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def decide(
    *, metric: str, challenger: dict[str, Any], champion: dict[str, Any] | None, champion_version: int | None
) -> GateDecision:
    """``challenger`` and ``champion`` are evaluate() results on the same held-out rows."""
    if champion is None or champion_version is None:
        return GateDecision(True, ["first model of the project: becomes champion"])
    new, old = challenger.get(metric), champion.get(metric)
    n = challenger.get("n", 0)
    if new is None or old is None:
        return GateDecision(False, [f"no held-out {metric} to compare on (n={n}); champion v{champion_version} stays"])
    if new + EPSILON >= old:
        return GateDecision(True, [f"held-out {metric} {new:.4f} >= champion v{champion_version}'s {old:.4f} (n={n})"])
    return GateDecision(False, [f"held-out {metric} {new:.4f} < champion v{champion_version}'s {old:.4f} (n={n})"])
