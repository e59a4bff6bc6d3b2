"""Training runs, the gate, the registry and re-scoring, with scikit-learn fitted on tiny real data."""

from typing import Any

from django.contrib.auth.models import User

from feedback import datasets, registry, training
from feedback.ingest import samples_ingest
from feedback.models import AliasEvent, ModelAlias, ModelVersion, RunStatus, SampleScore, TrainingRun
from feedback.split import is_holdout
from labeling.models import LabelMethod, Project, Sample, Task
from labeling.services.labels import LabelDecision, labels_set
from labeling.services.projects import project_create


def _train(project: Project, run_on_commit: Any) -> TrainingRun:
    with run_on_commit():
        version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
        run, _ = training.training_run_request(project=project, dataset_version=version, trigger="manual")
    run.refresh_from_db()
    return run


def _quiet(project: Project) -> None:
    """No automatic cut-and-train in these tests: they drive training by hand."""
    project.settings["retrain"]["min_new_labels"] = 10**6
    project.save()


def test_run_registers_a_model_with_lineage(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(60, labeled=True), actor=None)
    run = _train(project, run_on_commit)
    assert run.status == RunStatus.SUCCEEDED and run.progress == 1.0
    model = ModelVersion.objects.get(run=run)
    assert model.version == 1 and model.metrics["accuracy"] >= 0.9 and model.metrics["evaluated_on"] == "holdout"
    assert model.metrics["n"] + model.metrics["n_train"] == 60
    assert model.lineage["dataset_version"] == 1 and model.lineage["dataset_hash"] == run.dataset_version.hash
    assert set(model.lineage["libraries"]) >= {"scikit-learn", "numpy", "skops", "python"}
    assert run.gate is not None
    assert (run.gate["passed"], run.gate["reasons"]) == (True, ["first model of the project: becomes champion"])
    assert registry.champion(project_id=project.pk) == model


def test_same_version_and_config_train_once(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(30, labeled=True), actor=None)
    run = _train(project, run_on_commit)
    with run_on_commit():
        again, created = training.training_run_request(
            project=project, dataset_version=run.dataset_version, trigger="manual"
        )
    assert not created and again.pk == run.pk
    training.training_run_execute(run_id=run.pk)  # a redelivered message
    assert ModelVersion.objects.filter(project=project).count() == 1


def test_run_killed_after_claim_trains_once_on_redelivery(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(30, labeled=True), actor=None)
    version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    run, _ = training.training_run_request(project=project, dataset_version=version, trigger="manual")
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempts=1)  # the worker died mid-run
    with run_on_commit():
        training.training_run_execute(run_id=run.pk)
        training.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 2
    assert ModelVersion.objects.filter(run=run).count() == 1


def test_worse_challenger_is_refused_with_its_reason(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(90, labeled=True), actor=None)
    champion_run = _train(project, run_on_commit)
    champion = ModelVersion.objects.get(run=champion_run)
    # Corrupt the training rows only (the held-out rows keep their true labels).
    shift = {"cat": "dog", "dog": "bird", "bird": "cat"}
    decisions = [
        LabelDecision(
            sample_id=s.pk, label=shift[s.final_label.label], confidence=1.0, method=LabelMethod.REVIEW, n_annotations=1
        )
        for s in Sample.objects.filter(project=project).select_related("final_label")
        if not is_holdout(s.external_id)
    ]
    labels_set(project_id=project.pk, decisions=decisions, actor=None)
    run = _train(project, run_on_commit)
    assert run.status == RunStatus.REJECTED
    assert run.gate is not None and not run.gate["passed"] and "< champion v1" in run.gate["reasons"][0]
    challenger = ModelVersion.objects.get(run=run)  # registered all the same
    assert registry.champion(project_id=project.pk) == champion
    assert ModelAlias.objects.get(project=project, alias="challenger").model_version == challenger


def test_a_handful_of_labels_with_missing_classes(manager: User, run_on_commit: Any) -> None:
    project = project_create(creator=manager, name="tiny", labels=["a", "b", "c"], schema={"t": "text"})
    _quiet(project)
    items = [{"external_id": f"t{i}", "data": {"t": "hello"}, "label": "a"} for i in range(2)]
    samples_ingest(project=project, items=items, actor=None)
    run = _train(project, run_on_commit)
    assert run.status == RunStatus.SUCCEEDED
    model = registry.load_model(model_version=registry.champion(project_id=project.pk))  # type: ignore[arg-type]
    from feedback.selection import score_matrix

    probabilities = score_matrix(project, model, [{"t": "anything"}])
    assert probabilities.tolist() == [[1.0, 0.0, 0.0]]


def test_queue_is_rescored_by_the_newest_model(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(60, labeled=True), actor=None)
    samples_ingest(project=project, items=rows(20, start=500, probabilities=False), actor=None)
    assert set(Task.objects.filter(project=project).values_list("reason", flat=True)) == {"random"}
    run = _train(project, run_on_commit)
    model = ModelVersion.objects.get(run=run)
    scores = SampleScore.objects.filter(sample__status=1, project_id=project.pk)
    assert scores.count() == 20 and all(s.scored_by_id == model.pk for s in scores)
    # Re-ranked by the model: the project's budgets give most of the queue to uncertainty.
    assert "uncertainty" in set(Task.objects.filter(project=project).values_list("reason", flat=True))
    assert all(s.suggestion and s.suggestion["label"] in project.labels for s in Sample.objects.filter(status=1))
    # Samples sent later without probabilities are scored by that model too.
    with run_on_commit():
        samples_ingest(project=project, items=rows(5, start=900, probabilities=False), actor=None)
    late = SampleScore.objects.filter(sample__external_id__in=[f"s{i}" for i in range(900, 905)])
    assert late.count() == 5 and all(s.scored_by_id == model.pk and s.uncertainty is not None for s in late)


def test_promote_and_roll_back_keep_history(project: Project, rows: Any, run_on_commit: Any, manager: User) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(40, labeled=True), actor=None)
    first = ModelVersion.objects.get(run=_train(project, run_on_commit))
    samples_ingest(project=project, items=rows(40, start=40, labeled=True), actor=None)
    second = ModelVersion.objects.get(run=_train(project, run_on_commit))
    assert registry.champion(project_id=project.pk) == second
    with run_on_commit():
        registry.model_promote(project_id=project.pk, version=first.version, actor=manager, reason="rollback")
    assert registry.champion(project_id=project.pk) == first
    moves = list(
        AliasEvent.objects.filter(project=project, alias="champion")
        .order_by("id")
        .values_list("model_version__version", "previous__version")
    )
    assert moves == [(1, None), (2, 1), (1, 2)]
    # The queue was re-scored by the champion it rolled back to; later samples are scored by it too.
    with run_on_commit():
        samples_ingest(project=project, items=rows(3, start=700, probabilities=False), actor=None)
    late = SampleScore.objects.filter(sample__external_id__in=["s700", "s701", "s702"])
    assert [s.scored_by_id for s in late] == [first.pk] * 3
    # A re-score by the newer model delivered after the rollback (its training's own re-score,
    # late) leaves the queue to the champion the manager chose.
    pending = SampleScore.objects.filter(project_id=project.pk, sample__status=1)
    assert pending.exists() and all(s.scored_by_id == first.pk for s in pending)
    tasks.rescore_project(project.pk, second.pk)
    assert all(s.scored_by_id == first.pk for s in pending.all())
    assert registry.ranker(project_id=project.pk) == first


# ---------------------------------------------------------------- families, progress, validation sets

from unittest import mock  # noqa: E402

from celery.exceptions import TimeLimitExceeded  # noqa: E402

from feedback import pipelines, tasks  # noqa: E402
from feedback.models import SampleScore as Score  # noqa: E402


def test_progress_is_reported_from_0_to_1(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(30, labeled=True), actor=None)
    seen: list[float] = []
    real = training._progress

    def record(run: TrainingRun, value: float) -> None:
        real(run, value)
        seen.append(TrainingRun.objects.get(pk=run.pk).progress)

    with mock.patch("feedback.training._progress", side_effect=record):
        run = _train(project, run_on_commit)
    assert seen == sorted(seen) and len(seen) >= 4 and 0 < seen[0] < seen[-1] < 1
    assert run.progress == 1.0


def test_family_and_parameters_are_recorded(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    project.settings["training"] = {"family": "hist_gradient_boosting", "params": {"max_iter": 15}}
    project.save()
    samples_ingest(project=project, items=rows(45, labeled=True), actor=None)
    run = _train(project, run_on_commit)
    assert run.status == RunStatus.SUCCEEDED, run.error
    model = ModelVersion.objects.get(run=run)
    assert run.config == {"family": "hist_gradient_boosting", "params": {"learning_rate": 0.1, "max_iter": 15}}
    assert model.lineage["family"] == "hist_gradient_boosting" and model.params["max_iter"] == 15
    assert model.lineage["seed"] == training.SEED and model.lineage["code_version"]
    loaded = registry.load_model(model_version=model)
    assert type(loaded.named_steps["classifier"]).__name__ == "HistGradientBoostingClassifier"


def test_unknown_parameters_are_a_400_on_request_and_a_clear_failure_when_automatic(
    project: Project, rows: Any, run_on_commit: Any, manager: User, client_for: Any
) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(12, labeled=True), actor=None)
    api = client_for(manager)
    patched = api.patch(
        f"/api/projects/{project.pk}/",
        {"training": {"family": "random_forest", "params": {"n_trees": 5}}},
        format="json",
    )
    assert patched.status_code == 200  # the settings spec only checks that params is an object
    response = api.post(f"/api/projects/{project.pk}/runs/", {}, format="json")
    assert response.status_code == 400
    assert "'n_trees' not a parameter of RandomForestClassifier" in response.json()["errors"]["training"][0]
    assert not TrainingRun.objects.filter(project=project).exists()
    with run_on_commit():
        tasks.dataset_cut_and_train(project.pk, "labels")
    run = TrainingRun.objects.get(project=project)
    assert run.status == RunStatus.FAILED and "n_trees" in run.error and not ModelVersion.objects.exists()
    # Fixed config: another (version, config) pair, so a new run.
    project.refresh_from_db()
    project.settings["training"]["params"] = {"n_estimators": 5}
    project.save()
    with run_on_commit():
        assert api.post(f"/api/projects/{project.pk}/runs/", {}, format="json").status_code == 202
    assert TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED).count() == 1


def test_a_failed_run_is_queued_again_only_on_request(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(12, labeled=True), actor=None)
    version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    with mock.patch("feedback.pipelines.fit", side_effect=RuntimeError("out of memory")), run_on_commit():
        run, _ = training.training_run_request(project=project, dataset_version=version, trigger="labels")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error == "RuntimeError: out of memory"
    with run_on_commit():
        found, created = training.training_run_request(project=project, dataset_version=version, trigger="drift")
    assert (found.pk, created, TrainingRun.objects.get(pk=run.pk).status) == (run.pk, False, RunStatus.FAILED)
    with run_on_commit():
        _, created = training.training_run_request(
            project=project, dataset_version=version, trigger="manual", retry_failed=True
        )
    run.refresh_from_db()
    assert created and run.status == RunStatus.SUCCEEDED and run.error == ""


def test_lost_workers_and_time_limits_end_in_a_clear_state(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(12, labeled=True), actor=None)
    version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
    run, _ = training.training_run_request(project=project, dataset_version=version, trigger="manual")
    # The hard limit killed the pool process: the worker's main process records why.
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempts=1)
    tasks.train_run.on_failure(TimeLimitExceeded(1920), "task-id", (run.pk,), {}, None)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "hard time limit" in run.error
    # A run whose worker died MAX_ATTEMPTS times is given up, not trained a fourth time.
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempts=training.MAX_ATTEMPTS, error="")
    training.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "gave up after 3 attempts" in run.error
    assert not ModelVersion.objects.filter(run=run).exists()


def test_slices_and_production_failures_are_measured(project: Project, rows: Any, run_on_commit: Any) -> None:
    _quiet(project)
    items = rows(90, labeled=True)
    for item in items[::2]:  # production got every other one wrong
        other = {"cat": "dog", "dog": "bird", "bird": "cat"}[item["label"]]
        item["prediction"] = {"label": other, "probabilities": {other: 0.9, item["label"]: 0.1}}
    samples_ingest(project=project, items=items, actor=None)
    first = ModelVersion.objects.get(run=_train(project, run_on_commit))
    samples_ingest(project=project, items=rows(30, start=90, labeled=True), actor=None)
    second_run = _train(project, run_on_commit)
    second = ModelVersion.objects.get(run=second_run)
    held_out = [item for item in items if is_holdout(item["external_id"])]
    wrong = [item for item in held_out if item["prediction"]["label"] != item["label"]]
    assert first.metrics["production_failures"]["n"] == len(wrong) > 0
    failures = second.metrics["production_failures"]
    assert failures["n"] >= len(wrong) and failures["champion"] is not None
    names = {row["slice"] for row in second.metrics["slices"]}
    assert {"colour=red", "colour=green", "colour=blue", "reason=import"} <= names
    red = next(row for row in second.metrics["slices"] if row["slice"] == "colour=red")
    assert red["n"] == sum(1 for i in range(120) if i % 3 == 0 and is_holdout(f"s{i}"))
    kinds = [check["check"] for check in second_run.gate["checks"]]  # type: ignore[index]
    assert kinds[0] == "overall" and "slice" in kinds and kinds[-1] == "production_failures"
    assert Score.objects.filter(project_id=project.pk, production_label__isnull=False).count() == 120


def test_code_version_is_the_checkout_commit(settings: Any) -> None:
    training.code_version.cache_clear()
    try:
        head = training._git_commit(settings.BASE_DIR)
        expected = f"git:{head}" if head else "labelloop==0.1.0"
        assert training.code_version() == expected
        with mock.patch.dict("os.environ", {"LABELLOOP_CODE_VERSION": "release-42"}):
            training.code_version.cache_clear()
            assert training.code_version() == "release-42"
    finally:
        training.code_version.cache_clear()
    assert pipelines.DEFAULT_CONFIG["family"] == "logistic_regression"
