"""``manage.py simulate`` and feedback/simulate.py: a backtest through the real services."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from feedback import simulate
from feedback.models import ModelVersion
from labeling.models import Annotation, LabelChange, Project, Reason, Task

pytestmark = pytest.mark.django_db(transaction=True)


def _csv(path: Path, n: int = 90) -> None:
    rng = np.random.default_rng(3)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["size", "shade", "kind"])
        for i in range(n):
            kind = ["small", "large", "odd"][i % 3]
            size = {"small": 1.0, "large": 5.0, "odd": 3.0}[kind] + rng.normal(0, 0.8)
            shade = {"small": "light", "large": "dark", "odd": "mid"}[kind] if rng.random() < 0.8 else "mid"
            writer.writerow([f"{size:.3f}", shade, kind])


def test_simulate_replays_a_file_through_the_services(tmp_path: Path) -> None:
    data = tmp_path / "history.csv"
    _csv(data)
    plot = tmp_path / "curves.svg"
    out = io.StringIO()
    call_command(
        "simulate",
        str(data),
        "--label-column=kind",
        "--strategies=diverse,random",
        "--seeds=1",
        "--budget=30",
        "--batch=10",
        f"--plot={plot}",
        "--keep",
        stdout=out,
    )
    text = out.getvalue()
    assert "history: 90 rows, 2 fields, 3 labels" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("diverse", "random"))}
    assert set(lines) == {"diverse", "random"}
    svg = plot.read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "95% of full" in svg
    # It went through the real services: an oracle's answers, versions, models, a re-ranked queue.
    projects = Project.objects.filter(name__startswith="simulate history")
    assert projects.count() == 2
    for project in projects:
        assert project.schema == {"size": "numeric", "shade": "categorical"}
        assert Annotation.objects.filter(project=project).count() == 20
        assert ModelVersion.objects.filter(project=project).count() == 3
    diverse = projects.get(name__contains=" diverse ")
    assert Task.objects.filter(project=diverse, reason=Reason.UNCERTAINTY).exists()


def test_simulate_leaves_nothing_behind_without_keep(tmp_path: Path) -> None:
    # On PostgreSQL the trail of label changes refuses DELETE: the backtest rolls back instead.
    data = tmp_path / "history.jsonl"
    rng = np.random.default_rng(5)
    rows = [{"size": float(i % 2 * 4 + rng.normal()), "kind": ["small", "large"][i % 2]} for i in range(40)]
    data.write_text("\n".join(json.dumps(row) for row in rows))
    out = io.StringIO()
    before = (Project.objects.count(), User.objects.count())
    call_command(
        "simulate",
        str(data),
        "--label-column=kind",
        "--strategies=margin",
        "--seeds=1",
        "--budget=20",
        f"--plot={tmp_path / 'c.svg'}",
        stdout=out,
    )
    assert "history: 40 rows, 1 fields, 2 labels" in out.getvalue()
    line = next(line for line in out.getvalue().splitlines() if line.startswith("margin"))
    assert float(line.split()[-1]) > 0.9  # full-data accuracy of a separable set
    assert (Project.objects.count(), User.objects.count()) == before
    assert not LabelChange.objects.exists() and not ModelVersion.objects.exists()


def test_curves_summaries_and_bad_input(tmp_path: Path) -> None:
    curve = simulate.Curve(strategy="s", seed=0, points=[(10, 0.5), (20, 0.9), (30, 0.95)], full_accuracy=1.0)
    assert curve.labels_to_target() == 30 and curve.labels_to_target(0.9) == 20
    assert curve.aulc() == pytest.approx(((0.5 + 0.9) / 2 * 10 + (0.9 + 0.95) / 2 * 10) / 20)
    never = simulate.Curve(strategy="s", seed=1, points=[(10, 0.5)], full_accuracy=1.0)
    summary = simulate.summarize([curve, never])[0]
    assert summary.labels_to_target is None and summary.reached == 1 and summary.seeds == 2
    assert simulate.demo_dataset("wine").schema["f00"] == "numeric"
    with pytest.raises(CommandError):
        call_command("simulate", "no-such-dataset", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("simulate", "wine", "--strategies=nope", stdout=io.StringIO())
