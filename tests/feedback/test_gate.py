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
