"""Pages: drift per feature over time, as a server-rendered SVG chart. Included from labelloop/urls.py.

The chart draws, per schema field, the effect size of each window (normalized Wasserstein distance
for numeric fields, debiased Jensen-Shannon distance for categorical and text fields) against the
window's position; a window where the field drifted (corrected p-value and effect size) is marked.
Computing it is the per-feature tests only (no domain classifier), on the newest windows.
Members of the project may read it; non-members get 404, like the API.
"""

import math
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET

from feedback import drift_service
from labeling import selectors
from labeling.api.access import ACTIONS
from labeling.models import Project

WIDTH, HEIGHT = 760, 300
MARGIN = {"left": 48, "right": 16, "top": 16, "bottom": 36}
COLOURS = ["#3451b2", "#c2410c", "#15803d", "#a21caf", "#0e7490", "#b45309", "#be123c", "#4d7c0f", "#6d28d9"]
THRESHOLD = 0.1
PAGE_WINDOWS = 40
LABEL_SPACING = 90


def _project(request: HttpRequest, project_id: int) -> Project:
    role = selectors.membership_role(project_id=project_id, user=request.user)
    project = Project.objects.filter(pk=project_id).first() if role is not None else None
    if role is None or project is None or (role != "staff" and role not in ACTIONS["read"]):
        raise Http404
    return project


def _effect(feature: dict[str, Any]) -> float:
    return float(feature.get("wasserstein", feature.get("jensen_shannon", 0.0)) or 0.0)


def chart(windows: list[dict[str, Any]], fields: list[str]) -> dict[str, Any]:
    """Coordinates of the per-feature lines (pure: the template only draws them)."""
    plot_w = WIDTH - MARGIN["left"] - MARGIN["right"]
    plot_h = HEIGHT - MARGIN["top"] - MARGIN["bottom"]
    top = max([THRESHOLD * 2] + [_effect(w["features"][f]) for w in windows for f in fields if f in w["features"]])
    top = float(f"{top * 1.1:.2g}")

    def x(i: int) -> float:
        return MARGIN["left"] + (plot_w * i / (len(windows) - 1) if len(windows) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return MARGIN["top"] + plot_h * (1.0 - min(value, top) / top)

    series = []
    for k, name in enumerate(fields):
        points = []
        for i, window in enumerate(windows):
            feature = window["features"].get(name)
            if feature is None:
                continue
            points.append({"x": round(x(i), 1), "y": round(y(_effect(feature)), 1), "drifted": feature["drifted"]})
        series.append(
            {
                "name": name,
                "colour": COLOURS[k % len(COLOURS)],
                "path": " ".join(f"{p['x']},{p['y']}" for p in points),
                "points": points,
            }
        )
    ticks = [{"value": f"{top * t / 4:.2g}", "y": round(y(top * t / 4), 1)} for t in range(5)]
    # Labels "MM-DD HH:MM" are about 70 px wide at the chart's font: at most one per LABEL_SPACING px.
    step = max(1, math.ceil(len(windows) * LABEL_SPACING / plot_w))
    labels = [
        {"x": round(x(i), 1), "text": str(w["start"])[5:16].replace("T", " ")}
        for i, w in enumerate(windows)
        if i % step == 0
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": MARGIN["left"],
        "right": WIDTH - MARGIN["right"],
        "bottom": HEIGHT - MARGIN["bottom"],
        "top": MARGIN["top"],
        "threshold_y": round(y(THRESHOLD), 1),
        "series": series,
        "ticks": ticks,
        "labels": labels,
        "label_y": HEIGHT - MARGIN["bottom"] + 16,
    }


@login_required
@require_GET
def drift_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    raw = request.GET.get("window", "")
    window = int(raw) if raw.isdigit() and 10 <= int(raw) <= 1_000_000 else None
    try:
        report = drift_service.project_drift(project=project, window=window, limit=PAGE_WINDOWS, domain=False)
        problem = None
    except drift_service.DriftError as exc:
        report, problem = {"reference": {"dataset_version": None}, "window": {}, "windows": []}, str(exc)
    fields = [name for name, kind in project.fields() if kind in ("numeric", "categorical", "text")]
    windows = report["windows"]
    rows = [
        {
            "index": w["index"],
            "start": w["start"],
            "end": w["end"],
            "n": w["n"],
            "drifted": w["drifted"],
            "features": [(name, w["features"].get(name)) for name in fields],
        }
        for w in reversed(windows)
    ]
    return render(
        request,
        "feedback/drift.html",
        {
            "project": project,
            "report": report,
            "problem": problem,
            "chart": chart(windows, fields) if windows else None,
            "fields": fields,
            "rows": rows,
            "threshold": THRESHOLD,
        },
    )


urlpatterns: list[URLPattern] = [path("projects/<int:project_id>/drift/", drift_page, name="drift")]
