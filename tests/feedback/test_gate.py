from feedback.gate import decide


def test_first_model_passes() -> None:
    assert decide(metric="accuracy", challenger={"accuracy": 0.1, "n": 5}, champion=None, champion_version=None).passed


def test_not_worse_passes_worse_is_refused_with_reason() -> None:
    same = decide(
        metric="accuracy", challenger={"accuracy": 0.8, "n": 10}, champion={"accuracy": 0.8}, champion_version=2
    )
    assert same.passed and "champion v2" in same.reasons[0]
    worse = decide(
        metric="f1_macro", challenger={"f1_macro": 0.5, "n": 10}, champion={"f1_macro": 0.7}, champion_version=3
    )
    assert not worse.passed and "0.5000 < champion v3's 0.7000" in worse.reasons[0]


def test_no_figures_to_compare_keeps_the_champion() -> None:
    decision = decide(
        metric="accuracy", challenger={"accuracy": None, "n": 0}, champion={"accuracy": 0.9}, champion_version=1
    )
    assert not decision.passed


def _slice(name: str, n: int, new: float, old: float) -> dict[str, object]:
    return {"slice": name, "n": n, "challenger": new, "champion": old}


def test_a_slice_worse_beyond_tolerance_refuses_with_its_reason() -> None:
    overall = {"accuracy": 0.9, "n": 200}
    slices = [_slice("colour=red", 40, 0.70, 0.80), _slice("colour=blue", 40, 0.77, 0.80)]
    decision = decide(
        metric="accuracy",
        challenger=overall,
        champion={"accuracy": 0.85},
        champion_version=1,
        slices=slices,
        slice_tolerance=0.05,
        min_slice_size=30,
    )
    assert not decision.passed
    assert decision.reasons[0].startswith("held-out accuracy 0.9000 >= champion v1's")  # overall first, passed
    assert any("slice colour=red" in r and "worse than" in r for r in decision.reasons)
    assert not any("colour=blue" in r for r in decision.reasons)  # within the tolerance
    by_slice = {c.get("slice"): c for c in decision.checks}
    assert by_slice["colour=red"]["passed"] is False and by_slice["colour=blue"]["passed"] is True


def test_small_slices_are_not_compared_and_the_rest_passes() -> None:
    decision = decide(
        metric="f1_macro",
        challenger={"f1_macro": 0.8, "n": 100},
        champion={"f1_macro": 0.8},
        champion_version=4,
        slices=[_slice("reason=drift", 5, 0.0, 1.0)],
        failures={"n": 12, "challenger": 0.5, "champion": 0.5},
        min_slice_size=30,
    )
    assert decision.passed
    small = next(c for c in decision.checks if c.get("slice") == "reason=drift")
    assert small["skipped"] and "below min_slice_size 30" in small["reason"]
    assert decision.reasons[-1] == "1 other checks passed, 1 skipped"
    assert decision.as_dict()["checks"] == decision.checks


def test_worse_on_production_failures_refuses() -> None:
    decision = decide(
        metric="accuracy",
        challenger={"accuracy": 0.9, "n": 100},
        champion={"accuracy": 0.9},
        champion_version=2,
        failures={"n": 10, "challenger": 0.4, "champion": 0.6},
    )
    assert not decision.passed
    assert "production failures: accuracy 0.4000 < champion v2's 0.6000 (n=10)" in decision.reasons
