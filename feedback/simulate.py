"""Backtests: replay a labeled dataset as production traffic through the real services, with an
oracle annotator, and measure each strategy's learning curve.

Per strategy and seed, in a throwaway project of its own: a 70/30 stratified split; the pool is
ingested unlabeled (``samples_ingest``), ``initial`` random pool rows are ingested with their label
(seed data: the label policy cuts a version and trains, the new model re-scores the pool); then an
oracle annotator takes tasks from the queue (``task_lease_next``) and answers the true label
(``annotation_submit``) batch after batch, each batch's labels cutting a version, training and
re-scoring through the same policy as production (Celery runs eagerly, in this process). After each
model the newest model is scored on the held-out 30%.

Each (strategy, seed) runs in one database transaction, rolled back at the end unless ``keep``:
after each service call, what its commit would set off (on_commit callbacks) runs at once, so the
loop turns as in production and nothing is left behind.

Strategies: ``margin``, ``least_confidence``, ``entropy``, ``random`` (selection.strategy, plain) and
``diverse`` (margin with selection.diverse: the default). ``budgets="pure"`` sends every slot to the
strategy; ``"project"`` uses the default budgets (some drift, diversity and random slots).

Label-issue audits (a cross-validation per cut) are skipped while simulating: they change no label.
"""

import csv
import io
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from django.contrib.auth.models import User
from django.db import connection, transaction
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from feedback import features, pipelines, registry, training
from feedback.ingest import samples_ingest
from labeling import queue
from labeling.models import Label, Project, Role
from labeling.services.people import member_set
from labeling.services.projects import project_create

DEMOS = ("digits", "breast_cancer", "wine")
STRATEGIES = ("diverse", "margin", "least_confidence", "entropy", "random")
TARGET = 0.95


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: dict[str, str]
    rows: list[dict[str, Any]]
    labels: list[str]  # one per row


@dataclass
class Curve:
    strategy: str
    seed: int
    points: list[tuple[int, float]] = field(default_factory=list)  # (labels, held-out accuracy)
    full_accuracy: float = 0.0

    def labels_to_target(self, target: float = TARGET) -> int | None:
        for labels, accuracy in self.points:
            if accuracy >= target * self.full_accuracy:
                return labels
        return None

    def aulc(self) -> float:
        if len(self.points) < 2:
            return self.points[0][1] if self.points else 0.0
        x = np.array([p[0] for p in self.points], dtype=float)
        y = np.array([p[1] for p in self.points], dtype=float)
        return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def demo_dataset(name: str) -> Dataset:
    """One of scikit-learn's bundled datasets (they ship offline), as numeric fields f00, f01, ..."""
    from sklearn import datasets as sk

    loaders: dict[str, Callable[..., Any]] = {
        "digits": sk.load_digits,
        "breast_cancer": sk.load_breast_cancer,
        "wine": sk.load_wine,
    }
    if name not in loaders:
        raise ValueError(f"unknown demo dataset {name!r}; one of {', '.join(DEMOS)}")
    X, y = loaders[name](return_X_y=True)
    names = [f"f{i:02d}" for i in range(X.shape[1])]
    rows = [{n: float(v) for n, v in zip(names, row, strict=True)} for row in X]
    return Dataset(name=name, schema=dict.fromkeys(names, "numeric"), rows=rows, labels=[str(v) for v in y])


def _kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None and v != ""]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "numeric"
    texts = [str(v) for v in present]
    if texts and np.mean([len(t.split()) for t in texts]) > 3:
        return "text"
    return "categorical"


def file_dataset(path: Path, label_column: str = "label") -> Dataset:
    """A CSV (header row) or JSONL file with a label column; the other columns become fields:
    numeric when every value is a number, text when values average more than three words,
    categorical otherwise."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        records = []
        for raw in csv.DictReader(io.StringIO(text)):
            record: dict[str, Any] = {}
            for key, value in raw.items():
                try:
                    record[key] = float(value) if key != label_column and value not in ("", None) else value
                except ValueError:
                    record[key] = value
            records.append(record)
    if not records or label_column not in records[0]:
        raise ValueError(f"{path}: no rows, or no {label_column!r} column")
    names = [k for k in records[0] if k != label_column]
    schema = {name: _kind([r.get(name) for r in records]) for name in names}
    rows = []
    for r in records:
        row: dict[str, Any] = {}
        for name in names:
            value = r.get(name)
            if value in ("", None):
                continue
            row[name] = float(value) if schema[name] == "numeric" else str(value)
        rows.append(row)
    return Dataset(name=path.stem, schema=schema, rows=rows, labels=[str(r[label_column]) for r in records])


def _settings(strategy: str, batch: int, budgets: str) -> dict[str, Any]:
    selection: dict[str, Any] = {
        "strategy": "margin" if strategy == "diverse" else strategy,
        "diverse": strategy == "diverse",
        "batch_size": batch,
    }
    if budgets == "pure":
        selection["budgets"] = {"uncertainty": 1.0, "drift": 0.0, "diversity": 0.0, "random": 0.0}
    return {"selection": selection, "retrain": {"min_new_labels": batch}, "queue": {"lease_seconds": 3600}}


def _accuracy(project: Project, X_test: Any, y_test: Sequence[str]) -> float:
    newest = registry.newest(project_id=project.pk)
    if newest is None:
        return 0.0
    model = registry.load_model(model_version=newest)
    probabilities = pipelines.probabilities_over(model, X_test, project.labels)
    predicted = np.array(project.labels, dtype=object)[probabilities.argmax(axis=1)]
    return float(np.mean(predicted == np.asarray(y_test, dtype=object)))


class _Discard(Exception):
    """Raised to roll a throwaway simulation back."""


def _commit_point() -> None:
    """Run what a commit would set off (the on_commit callbacks: cuts, training, re-scores), and what
    those set off in turn, inside the simulation's one transaction. Rolling that transaction back
    at the end leaves nothing behind; deleting the projects instead would be refused by PostgreSQL,
    which keeps the trail of label changes append-only."""
    while connection.run_on_commit:
        callbacks, connection.run_on_commit = connection.run_on_commit, []
        for entry in callbacks:  # (savepoint ids, callback, robust)
            entry[1]()


def simulate_one(
    dataset: Dataset,
    *,
    strategy: str,
    seed: int,
    initial: int = 10,
    batch: int = 10,
    budget: int = 300,
    budgets: str = "pure",
    keep: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Curve:
    """One learning curve: see the module docstring. Celery must run eagerly (the command sets it)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    indices = np.arange(len(dataset.rows))
    pool_idx, test_idx = train_test_split(indices, test_size=0.3, stratify=dataset.labels, random_state=seed)
    rng = np.random.default_rng(seed)
    labels = sorted(set(dataset.labels), key=lambda v: (len(v), v))
    X_test = features.matrix([dataset.rows[i] for i in test_idx], dataset.schema)
    y_test = [dataset.labels[i] for i in test_idx]
    truth = {f"r{i}": dataset.labels[i] for i in pool_idx}
    curve = Curve(strategy=strategy, seed=seed)
    try:
        with transaction.atomic():
            tag = secrets.token_hex(3)
            oracle = User.objects.create_user(f"sim-oracle-{tag}", password=secrets.token_urlsafe(16))
            project = project_create(
                creator=oracle,
                name=f"simulate {dataset.name} {strategy} seed {seed} ({tag})",
                labels=labels,
                schema=dataset.schema,
                settings=_settings(strategy, batch, budgets),
            )
            member_set(project=project, user=oracle, role=Role.ANNOTATOR)
            X_pool = features.matrix([dataset.rows[i] for i in pool_idx], dataset.schema)
            y_pool = np.array([truth[f"r{i}"] for i in pool_idx])
            full = pipelines.fit(dataset.schema, training.training_config(project), X_pool, y_pool, seed=0)
            predicted = np.array(labels, dtype=object)[
                pipelines.probabilities_over(full, X_test, labels).argmax(axis=1)
            ]
            curve.full_accuracy = float(np.mean(predicted == y_test))
            _replay(
                project, oracle, dataset, pool_idx, truth, rng, curve, X_test, y_test, initial, batch, budget, progress
            )
            if not keep:
                raise _Discard
    except _Discard:
        pass
    return curve


def _replay(
    project: Project,
    oracle: User,
    dataset: Dataset,
    pool_idx: NDArray[np.intp],
    truth: dict[str, str],
    rng: np.random.Generator,
    curve: Curve,
    X_test: NDArray[Any],
    y_test: list[str],
    initial: int,
    batch: int,
    budget: int,
    progress: Callable[[str], None] | None,
) -> None:
    """Ingest the pool and the seed labels, then label batch after batch as the queue hands out,
    one commit point after each request (as the web process would commit it)."""
    # Seed labels: random pool rows, redrawn until they hold two classes.
    while True:
        seeds = rng.choice(pool_idx, size=min(initial, len(pool_idx)), replace=False)
        if len({dataset.labels[i] for i in seeds}) > 1 or len(set(dataset.labels)) < 2:
            break
    seeded = {int(i) for i in seeds}
    unlabeled = [{"external_id": f"r{i}", "data": dataset.rows[i]} for i in pool_idx if int(i) not in seeded]
    samples_ingest(project=project, items=unlabeled, actor=None)
    _commit_point()
    labeled = [{"external_id": f"r{i}", "data": dataset.rows[i], "label": truth[f"r{i}"]} for i in seeds]
    samples_ingest(project=project, items=labeled, actor=None)
    _commit_point()
    if registry.newest(project_id=project.pk) is None:
        from feedback import tasks

        tasks.dataset_cut_and_train.delay(project.pk, "manual")
        _commit_point()
    n_labels = Label.objects.filter(project=project).count()
    curve.points.append((n_labels, _accuracy(project, X_test, y_test)))
    while n_labels < min(budget, len(pool_idx)):
        answered = 0
        for _ in range(min(batch, budget - n_labels)):
            leased = queue.task_lease_next(project=project, user=oracle, role=Role.ANNOTATOR)
            _commit_point()
            if leased is None:
                break
            queue.annotation_submit(
                task_id=leased.task.pk, user=oracle, label=truth[leased.sample.external_id], duration_ms=0
            )
            _commit_point()
            answered += 1
        if answered == 0:
            break
        n_labels = Label.objects.filter(project=project).count()
        curve.points.append((n_labels, _accuracy(project, X_test, y_test)))
        if progress:
            progress(f"{curve.strategy} seed {curve.seed}: {n_labels} labels, accuracy {curve.points[-1][1]:.3f}")


@contextmanager
def _quieter(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


def simulate(
    dataset: Dataset,
    *,
    strategies: Sequence[str],
    seeds: Sequence[int],
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> list[Curve]:
    """Every (strategy, seed) curve, with Celery eager and label-issue audits skipped meanwhile."""
    from feedback import audit_tasks
    from labelloop.celery import app

    eager, propagates = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    try:
        with ExitStack() as stack:
            # The audit task arrives with issue 6; until then there is nothing to skip.
            audit = getattr(audit_tasks, "find_label_issues", None)
            if audit is not None:
                stack.enter_context(mock.patch.object(audit, "delay", lambda *a, **k: None))
            # Hundreds of eager tasks and re-scores would each log a line between the results.
            for name in ("celery.app.trace", "feedback"):
                stack.enter_context(_quieter(logging.getLogger(name)))
            return [
                simulate_one(dataset, strategy=strategy, seed=seed, progress=progress, **options)
                for strategy in strategies
                for seed in seeds
            ]
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = eager, propagates


@dataclass(frozen=True)
class Summary:
    strategy: str
    labels_to_target: float | None  # mean over seeds (None when a seed never reached it)
    reached: int
    seeds: int
    aulc: float
    final_accuracy: float
    full_accuracy: float


def summarize(curves: Sequence[Curve]) -> list[Summary]:
    out = []
    for strategy in dict.fromkeys(c.strategy for c in curves):
        mine = [c for c in curves if c.strategy == strategy]
        needed = [c.labels_to_target() for c in mine]
        reached = [n for n in needed if n is not None]
        out.append(
            Summary(
                strategy=strategy,
                labels_to_target=float(np.mean(reached)) if len(reached) == len(mine) else None,
                reached=len(reached),
                seeds=len(mine),
                aulc=float(np.mean([c.aulc() for c in mine])),
                final_accuracy=float(np.mean([c.points[-1][1] for c in mine if c.points])),
                full_accuracy=float(np.mean([c.full_accuracy for c in mine])),
            )
        )
    return out


COLOURS = ["#3451b2", "#c2410c", "#15803d", "#a21caf", "#0e7490", "#b45309"]


def learning_curves_svg(curves: Sequence[Curve], title: str) -> str:
    """An SVG line chart of mean held-out accuracy against labels, one line per strategy, with the
    95%-of-full-data line."""
    from xml.sax.saxutils import escape

    width, height, left, right, top, bottom = 760, 420, 56, 160, 36, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    strategies = list(dict.fromkeys(c.strategy for c in curves))
    series = {}
    for strategy in strategies:
        by_labels: dict[int, list[float]] = {}
        for c in curves:
            if c.strategy == strategy:
                for labels, accuracy in c.points:
                    by_labels.setdefault(labels, []).append(accuracy)
        series[strategy] = sorted((k, float(np.mean(v))) for k, v in by_labels.items())
    xs = [x for s in series.values() for x, _ in s] or [0, 1]
    ys = [y for s in series.values() for _, y in s] or [0.0, 1.0]
    full = float(np.mean([c.full_accuracy for c in curves])) if curves else 1.0
    x_lo, x_hi = min(xs), max(max(xs), min(xs) + 1)
    y_lo, y_hi = max(0.0, min(ys) - 0.05), min(1.0, max(max(ys), full) + 0.02)

    def px(x: float) -> float:
        return left + plot_w * (x - x_lo) / (x_hi - x_lo)

    def py(y: float) -> float:
        return top + plot_h * (1 - (y - y_lo) / ((y_hi - y_lo) or 1))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="20" font-size="14">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
    ]
    for i in range(6):
        y = y_lo + (y_hi - y_lo) * i / 5
        x = x_lo + (x_hi - x_lo) * i / 5
        parts.append(
            f'<text x="{left - 6}" y="{py(y):.1f}" text-anchor="end" dominant-baseline="middle">{y:.2f}</text>'
        )
        parts.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{x:.0f}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">labels</text>')
    target = TARGET * full
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{py(target):.1f}" y2="{py(target):.1f}" stroke="#b00020"'
        f' stroke-dasharray="4 3"/><text x="{left + plot_w + 4}" y="{py(target):.1f}" fill="#b00020"'
        f' dominant-baseline="middle">95% of full ({target:.3f})</text>'
    )
    for k, strategy in enumerate(strategies):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in series[strategy])
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 4}" y="{top + 14 + 16 * k}" fill="{colour}">{escape(strategy)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
