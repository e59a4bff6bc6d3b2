"""Training runs: requesting one per (dataset version, config), and executing it in a worker.

A run trains a pipeline on its dataset version's rows except the held-out ones, evaluates it and
the champion on the held-out rows, registers a model version (always, promoted or not), and lets
the gate decide whether it becomes champion. Executing is idempotent: a redelivered run that
already registered its model finishes without training again; a run killed mid-way trains again.
"""

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import sklearn
import skops
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from feedback import datasets, features, gate, metrics, pipelines, registry
from feedback.models import DatasetVersion, ModelArtifact, ModelVersion, RunStatus, TrainingRun
from feedback.split import is_holdout
from labeling.models import Project
from labeling.project_settings import ProjectSettings

logger = logging.getLogger(__name__)
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.REJECTED, RunStatus.FAILED)
SEED = 0


def training_config(project: Project) -> dict[str, Any]:
    """The project's model family and parameters, with the family's defaults filled in, so that
    the config (and its hash, one run per version and config) records what was really used."""
    chosen = ProjectSettings.of(project.settings).training
    return pipelines.resolved_config(chosen["family"], chosen["params"])


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def training_run_request(
    *, project: Project, dataset_version: DatasetVersion, trigger: str, actor: User | None = None
) -> tuple[TrainingRun, bool]:
    """The run for (dataset_version, the project's training config): found if it exists, created
    and enqueued (on commit) if not."""
    from feedback import tasks

    config = training_config(project)
    with transaction.atomic():
        run, created = TrainingRun.objects.get_or_create(
            dataset_version=dataset_version,
            config_hash=config_hash(config),
            defaults={"project": project, "config": config, "trigger": trigger, "created_by": actor},
        )
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
        run.status = RunStatus.RUNNING
        run.attempts += 1
        run.progress = 0.05
        run.started_at = timezone.now()
        run.save(update_fields=["status", "attempts", "progress", "started_at"])
        return run


def _progress(run: TrainingRun, value: float) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(progress=value)


def training_run_execute(*, run_id: int) -> None:
    """Execute a run (called by the training task). Safe to call again for the same run."""
    run = _claim(run_id)
    if run is None:
        return
    try:
        _train(run, lambda value: _progress(run, value))
    except Exception as exc:
        logger.exception("training run %s failed", run_id)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000], finished_at=timezone.now()
        )
        raise


def _train(run: TrainingRun, progress: Callable[[float], None]) -> None:
    project = Project.objects.get(pk=run.project_id)
    version = DatasetVersion.objects.get(pk=run.dataset_version_id)
    rows = list(datasets.rows_at(version=version))
    if not rows:
        raise ValueError(f"dataset version {version.version} has no labeled rows")
    holdout = np.array([is_holdout(row["external_id"]) for row in rows], dtype=bool)
    evaluated_on = "holdout"
    if holdout.all() or not holdout.any():
        holdout = np.zeros(len(rows), dtype=bool)
        evaluated_on = "training"  # too few rows for a held-out split: figures are in-sample
    X = features.matrix([row["data"] for row in rows], project.schema)
    y = np.array([row["label"] for row in rows], dtype=object)
    progress(0.2)
    started = time.monotonic()
    model = pipelines.fit(project.schema, run.config, X[~holdout], y[~holdout], seed=SEED)
    fit_seconds = time.monotonic() - started
    progress(0.7)
    X_eval, y_eval = (X[holdout], y[holdout]) if evaluated_on == "holdout" else (X, y)
    challenger = metrics.evaluate(y_eval, pipelines.probabilities_over(model, X_eval, project.labels), project.labels)
    champion = registry.champion(project_id=project.pk)
    champion_figures = None
    if champion is not None:
        champion_model = registry.load_model(model_version=champion)
        champion_figures = metrics.evaluate(
            y_eval, pipelines.probabilities_over(champion_model, X_eval, project.labels), project.labels
        )
    progress(0.85)
    metric = ProjectSettings.of(project.settings).retrain["metric"]
    decision = gate.decide(
        metric=metric,
        challenger=challenger,
        champion=champion_figures,
        champion_version=champion.version if champion else None,
    )
    artifact = pipelines.dump(model)
    figures = {
        **{k: v for k, v in challenger.items() if k != "confusion_matrix"},
        "metric": metric,
        "evaluated_on": evaluated_on,
        "n_train": int((~holdout).sum()),
        "confusion_matrix": challenger["confusion_matrix"],
        "champion": {k: v for k, v in champion_figures.items() if k != "confusion_matrix"}
        if champion_figures
        else None,
    }
    lineage = {
        "dataset_version": version.version,
        "dataset_hash": version.hash,
        "config": run.config,
        "seed": SEED,
        "fit_seconds": round(fit_seconds, 3),
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
    from feedback import tasks

    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
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
        if decision.passed:
            registry.alias_set(
                project_id=project.pk, alias="champion", model_version=model_version, reason="; ".join(decision.reasons)
            )
        else:
            registry.alias_set(
                project_id=project.pk,
                alias="challenger",
                model_version=model_version,
                reason="; ".join(decision.reasons),
            )
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED if decision.passed else RunStatus.REJECTED,
            progress=1.0,
            metrics={k: v for k, v in figures.items() if k != "confusion_matrix"},
            gate=decision.as_dict(),
            finished_at=timezone.now(),
        )
        # Active learning follows the newest model, champion or not.
        transaction.on_commit(partial(tasks.rescore_project.delay, project.pk, model_version.pk))
