"""Training runs: requesting one per (dataset version, config), and executing it in a worker.

A run trains the project's model family on its dataset version's rows except the held-out ones,
evaluates it and the champion on the held-out rows (overall, per slice, and on the held-out
production failures), registers a model version (always, promoted or not), and lets the gate
decide whether it becomes champion. Executing is idempotent: a redelivered run that already
registered its model finishes without training again; a run killed mid-way trains again, and a
run whose worker died MAX_ATTEMPTS times fails with that reason.
"""

import hashlib
import json
import logging
import os
import platform
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache, partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from feedback import datasets, features, gate, metrics, pipelines, registry, sethash
from feedback.models import DatasetVersion, ModelArtifact, ModelVersion, RunStatus, SampleScore, TrainingRun
from feedback.split import is_holdout
from labeling.models import Project, Task
from labeling.project_settings import ProjectSettings

logger = logging.getLogger(__name__)
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.REJECTED, RunStatus.FAILED)
SEED = 0
MAX_ATTEMPTS = 3
CHUNK = 5000
IMPORTED = "import"  # the "reason" slice of labels that came with the sample (no labeling task)


class TrainingError(Exception):
    """A run that cannot train, for a reason its page should show as is."""


def training_config(project: Project) -> dict[str, Any]:
    """The project's model family and parameters, with the family's defaults filled in, so that
    the config (and its hash, one run per version and config) records what was really used."""
    chosen = ProjectSettings.of(project.settings).training
    return pipelines.resolved_config(chosen["family"], chosen["params"])


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def training_run_request(
    *,
    project: Project,
    dataset_version: DatasetVersion,
    trigger: str,
    actor: User | None = None,
    retry_failed: bool = False,
) -> tuple[TrainingRun, bool]:
    """The run for (dataset_version, the project's training config): found if it exists, created
    and enqueued (on commit) if not. A config that check_config refuses gives a run that failed
    at once with the reasons (nothing is enqueued). With ``retry_failed`` (a manager's explicit
    request) a failed run of the same pair is queued again; other triggers just find it."""
    from feedback import tasks

    config = training_config(project)
    problems = pipelines.check_config(config)
    with transaction.atomic():
        run, created = TrainingRun.objects.get_or_create(
            dataset_version=dataset_version,
            config_hash=config_hash(config),
            defaults={"project": project, "config": config, "trigger": trigger, "created_by": actor},
        )
        if created and problems:
            run.status = RunStatus.FAILED
            run.error = "; ".join(problems)
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "error", "finished_at"])
            return run, created
        if not created and retry_failed and run.status == RunStatus.FAILED and not problems:
            TrainingRun.objects.filter(pk=run.pk).update(
                status=RunStatus.QUEUED, error="", progress=0.0, attempts=0, finished_at=None
            )
            run.refresh_from_db()
            created = True
        if created:
            transaction.on_commit(partial(tasks.train_run.delay, run.pk))
    return run, created


def _claim(run_id: int) -> TrainingRun | None:
    """Mark the run running, or None when there is nothing to do (missing or finished)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status in TERMINAL:
            return None
        if ModelVersion.objects.filter(run=run).exists():
            # Registered before a crash: finish without training again.
            run.status = RunStatus.SUCCEEDED if run.gate and run.gate.get("passed") else RunStatus.REJECTED
            run.progress = 1.0
            run.finished_at = run.finished_at or timezone.now()
            run.save()
            return None
        if run.attempts >= MAX_ATTEMPTS:
            run.status = RunStatus.FAILED
            run.error = f"gave up after {run.attempts} attempts: the worker died or hit the time limit each time"
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "error", "finished_at"])
            return None
        run.status = RunStatus.RUNNING
        run.attempts += 1
        run.progress = 0.05
        run.started_at = timezone.now()
        run.save(update_fields=["status", "attempts", "progress", "started_at"])
        return run


def _progress(run: TrainingRun, value: float) -> None:
    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(progress=round(value, 3))
    # Test-only (off by default): stretch a run between its steps so that a test can kill its worker mid-run.
    pause = float(getattr(settings, "TRAINING_TEST_STEP_SLEEP", 0.0) or 0.0)
    if pause > 0:
        time.sleep(pause)


def training_run_fail(*, run_id: int, error: str) -> None:
    """Mark an unfinished run failed with ``error`` (a finished one is left as it is)."""
    TrainingRun.objects.filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.FAILED, error=error[:4000], finished_at=timezone.now()
    )


def training_run_execute(*, run_id: int) -> None:
    """Execute a run (called by the training task). Safe to call again for the same run.

    Expected failures (a bad config, a pruned or empty version) fail the run with their message;
    anything else fails it too and is re-raised for the worker's log."""
    run = _claim(run_id)
    if run is None:
        return
    try:
        _train(run, lambda value: _progress(run, value))
    except (TrainingError, pipelines.ConfigError, datasets.VersionPruned) as exc:
        training_run_fail(run_id=run.pk, error=str(exc))
    except Exception as exc:
        logger.exception("training run %s failed", run_id)
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            message = f"the run exceeded the soft time limit of {settings.TRAINING_SOFT_TIME_LIMIT} s"
        else:
            message = f"{type(exc).__name__}: {exc}"
        training_run_fail(run_id=run.pk, error=message)
        raise


@cache
def code_version() -> str:
    """The code that trains: LABELLOOP_CODE_VERSION, else the git commit of the checkout, else
    the package's version."""
    given = os.environ.get("LABELLOOP_CODE_VERSION", "").strip()
    if given:
        return given[:100]
    commit = _git_commit(Path(settings.BASE_DIR))
    if commit:
        return f"git:{commit}"
    try:
        return f"labelloop=={metadata.version('labelloop')}"
    except metadata.PackageNotFoundError:
        pass
    try:
        with (Path(settings.BASE_DIR) / "pyproject.toml").open("rb") as handle:
            return f"labelloop=={tomllib.load(handle)['project']['version']}"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _git_commit(root: Path) -> str | None:
    """HEAD's commit read from .git (no git binary needed); None outside a checkout."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:40] or None
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:40] or None
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0][:40]
    except OSError:
        return None
    return None


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _production_labels(sample_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for ids in _chunks(sample_ids):
        scores = SampleScore.objects.filter(sample_id__in=ids, production_label__isnull=False)
        out.update((sample_id, str(label)) for sample_id, label in scores.values_list("sample_id", "production_label"))
    return out


def _selection_reasons(sample_ids: list[int]) -> dict[int, str]:
    """Why each sample was put in front of a human: the reason of its newest task."""
    out: dict[int, str] = {}
    for ids in _chunks(sample_ids):
        tasks = Task.objects.filter(sample_id__in=ids).order_by("sample_id", "id")
        out.update(tasks.values_list("sample_id", "reason"))
    return out


def _slice_groups(project: Project, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, kind in project.fields():
        if kind == "categorical":
            groups[name] = ["(missing)" if (v := row["data"].get(name)) is None else str(v) for row in rows]
    reasons = _selection_reasons([row["sample_id"] for row in rows])
    groups["reason"] = [reasons.get(row["sample_id"], IMPORTED) for row in rows]
    return groups


def _train(run: TrainingRun, progress: Callable[[float], None]) -> None:
    started_at = datetime.now(UTC)
    started = time.monotonic()
    project = Project.objects.get(pk=run.project_id)
    version = DatasetVersion.objects.get(pk=run.dataset_version_id)
    rows = list(datasets.rows_at(version=version))
    if not rows:
        raise TrainingError(f"dataset version {version.version} has no labeled rows")
    rows_hash = sethash.to_hex(sethash.of_pairs((row["external_id"], row["label"]) for row in rows))
    if rows_hash != version.hash:
        raise TrainingError(f"the rows read for dataset version {version.version} do not match its hash")
    progress(0.15)
    holdout = np.array([is_holdout(row["external_id"]) for row in rows], dtype=bool)
    evaluated_on = "holdout"
    if holdout.all() or not holdout.any():
        holdout = np.zeros(len(rows), dtype=bool)
        evaluated_on = "training"  # too few rows for a held-out split: figures are in-sample
    X = features.matrix([row["data"] for row in rows], project.schema)
    y = np.array([row["label"] for row in rows], dtype=object)
    progress(0.3)
    fit_started = time.monotonic()
    model = pipelines.fit(project.schema, run.config, X[~holdout], y[~holdout], seed=SEED)
    fit_seconds = time.monotonic() - fit_started
    progress(0.6)
    eval_mask = holdout if evaluated_on == "holdout" else np.ones(len(rows), dtype=bool)
    eval_rows = [row for row, keep in zip(rows, eval_mask, strict=True) if keep]
    X_eval, y_eval = X[eval_mask], y[eval_mask]
    labels = project.labels
    challenger_p = pipelines.probabilities_over(model, X_eval, labels)
    challenger = metrics.evaluate(y_eval, challenger_p, labels)
    champion = registry.champion(project_id=project.pk)
    champion_figures, champion_pred = None, None
    if champion is not None:
        champion_p = pipelines.probabilities_over(registry.load_model(model_version=champion), X_eval, labels)
        champion_figures = metrics.evaluate(y_eval, champion_p, labels)
        champion_pred = metrics.predicted_labels(champion_p, labels)
    progress(0.8)
    retrain = ProjectSettings.of(project.settings).retrain
    metric = retrain["metric"]
    challenger_pred = metrics.predicted_labels(challenger_p, labels)
    slices = metrics.slices(
        metric=metric,
        y_true=y_eval,
        challenger=challenger_pred,
        champion=champion_pred,
        groups=_slice_groups(project, eval_rows),
        labels=labels,
    )
    production = _production_labels([row["sample_id"] for row in eval_rows])
    failed = np.array([production.get(row["sample_id"], row["label"]) != row["label"] for row in eval_rows], dtype=bool)
    failures = {
        "n": int(failed.sum()),
        "challenger": metrics.score(metric, y_eval[failed], challenger_pred[failed], labels),
        "champion": metrics.score(metric, y_eval[failed], champion_pred[failed], labels)
        if champion_pred is not None
        else None,
    }
    decision = gate.decide(
        metric=metric,
        challenger=challenger,
        champion=champion_figures,
        champion_version=champion.version if champion else None,
        slices=slices,
        failures=failures,
        slice_tolerance=float(retrain["slice_tolerance"]),
        min_slice_size=int(retrain["min_slice_size"]),
    )
    progress(0.9)
    artifact = pipelines.dump(model)
    figures = {
        **{k: v for k, v in challenger.items() if k != "confusion_matrix"},
        "metric": metric,
        "evaluated_on": evaluated_on,
        "n_train": int((~holdout).sum()),
        "confusion_matrix": challenger["confusion_matrix"],
        "slices": slices,
        "production_failures": failures,
        "champion": {k: v for k, v in champion_figures.items() if k != "confusion_matrix"}
        if champion_figures
        else None,
        "champion_version": champion.version if champion else None,
    }
    lineage = {
        "dataset_version": version.version,
        "dataset_hash": version.hash,
        "rows_hash": rows_hash,
        "n_rows": len(rows),
        "holdout": "blake2b(external_id) % 5 == 0",
        "config": run.config,
        "family": run.config.get("family"),
        "params": run.config.get("params", {}),
        "seed": SEED,
        "code_version": code_version(),
        "started_at": started_at.isoformat(),
        "fit_seconds": round(fit_seconds, 3),
        "train_seconds": round(time.monotonic() - started, 3),
        "libraries": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
        },
    }
    _register(run, project, version, model.classes_.tolist(), figures, lineage, artifact, decision)


def _register(
    run: TrainingRun,
    project: Project,
    version: DatasetVersion,
    classes: list[str],
    figures: dict[str, Any],
    lineage: dict[str, Any],
    artifact: pipelines.Artifact,
    decision: gate.GateDecision,
) -> None:
    """Register the model version and apply the gate's decision, once per run: a second
    execution that gets here (a redelivery racing the first) finds the model and stops."""
    from feedback import tasks

    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
        if ModelVersion.objects.filter(run=run).exists():
            return
        number = (ModelVersion.objects.filter(project=project).aggregate(top=Max("version"))["top"] or 0) + 1
        model_version = ModelVersion.objects.create(
            project=project,
            version=number,
            run=run,
            dataset_version=version,
            metrics=figures,
            params=run.config.get("params", {}),
            lineage=lineage,
            classes=[str(c) for c in classes],
            digest=artifact.digest,
        )
        ModelArtifact.objects.create(model_version=model_version, data=artifact.data)
        registry.alias_set(
            project_id=project.pk,
            alias=registry.CHAMPION if decision.passed else registry.CHALLENGER,
            model_version=model_version,
            reason="; ".join(decision.reasons)[:500],
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED if decision.passed else RunStatus.REJECTED,
            progress=1.0,
            metrics={k: v for k, v in figures.items() if k not in ("confusion_matrix", "slices")},
            gate=decision.as_dict(),
            error="",
            finished_at=timezone.now(),
        )
        # Active learning follows the newest model, champion or not.
        transaction.on_commit(partial(tasks.rescore_project.delay, project.pk, model_version.pk))
