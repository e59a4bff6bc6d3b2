"""The manager's dashboard: what the queue holds (by reason), labels per hour per annotator, and the
time each label takes, as server-rendered SVG charts (labeling.web.charts) with their figures."""

import statistics
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labeling import selectors
from labeling.web import charts
from labeling.web.views import member_project

HOURS = 24


@dataclass(frozen=True)
class Timing:
    username: str
    total: int  # answers in the window
    n: int  # of them timed
    median_s: float | None
    p90_s: float | None


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


@login_required
@require_GET
def dashboard_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Managers and staff only. Reads the pending tasks grouped by kind and reason (the partial
    indexes) and the last HOURS hours of answers (by the project/time index): never the whole
    history."""
    project, _ = member_project(request, project_id, "manage")
    composition = selectors.queue_composition(project=project)
    by_reason: dict[str, int] = {}
    for kind, reason, n in composition:
        name = "gold" if kind == "gold" else reason
        by_reason[name] = by_reason.get(name, 0) + n
    queue_rows = sorted(by_reason.items(), key=lambda kv: -kv[1])
    starts, people = selectors.activity(project=project, hours=HOURS)
    hour_labels = [f"{s:%H}:00" for s in starts]
    timing = [
        Timing(
            username=p.username,
            total=p.total,
            n=len(p.durations_ms),
            median_s=statistics.median(p.durations_ms) / 1000 if p.durations_ms else None,
            p90_s=_percentile(p.durations_ms, 0.9) / 1000 if p.durations_ms else None,
        )
        for p in people
    ]
    timed = [(t.username, t.median_s) for t in timing if t.median_s is not None]
    context = {
        "project": project,
        "hours": HOURS,
        "queue_rows": queue_rows,
        "queued_total": sum(by_reason.values()),
        "people": people,
        "timing": timing,
        "queue_chart": charts.hbars("Pending tasks by reason", queue_rows),
        "hourly_chart": charts.lines(
            f"Labels per hour per annotator, last {HOURS} hours",
            hour_labels,
            [(p.username, p.per_hour) for p in people],
        ),
        "time_chart": charts.hbars(
            "Median seconds per label, per annotator",
            timed,
            unit=" s",
        ),
    }
    return render(request, "labeling/dashboard.html", context)
