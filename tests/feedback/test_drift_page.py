"""The drift page: drift per feature over time as a server-rendered SVG chart, for members only."""

import itertools
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from feedback.web.drift import chart
from labeling.models import Project, Role
from labeling.services.people import member_set
from tests.feedback.test_drift_service import drifting, items  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def test_page_draws_one_line_per_feature_and_marks_drifted_windows(
    drifting: Project,  # noqa: F811
    make_user: Any,
    outsider: User,
) -> None:
    reader = make_user("reader")
    member_set(project=drifting, user=reader, role=Role.ANNOTATOR)
    browser = Client()
    browser.force_login(reader)
    page = browser.get(f"/projects/{drifting.pk}/drift/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<nav class="project-nav"' in html and 'id="drift-chart"' in html
    assert set(re.findall(r'data-field="(\w+)"', html)) == {"x", "y", "colour"}
    assert len(re.findall(r"<polyline ", html)) == 3
    # x and colour drift in the two newest windows; y never does.
    assert len(re.findall(r'class="drifted-point"', html)) == 4
    assert html.count('<span class="drifted">drifted</span>') == 2
    assert "https://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert browser.get(f"/projects/{drifting.pk}/drift/?window=250").status_code == 200
    stranger = Client()
    stranger.force_login(outsider)
    assert stranger.get(f"/projects/{drifting.pk}/drift/").status_code == 404
    assert Client().get(f"/projects/{drifting.pk}/drift/").status_code == 302


def test_chart_scales_effects_into_the_plot() -> None:
    windows = [
        {"start": "2026-01-01T00:00", "features": {"a": {"wasserstein": 0.0, "drifted": False}}},
        {"start": "2026-01-02T00:00", "features": {"a": {"wasserstein": 0.4, "drifted": True}}},
    ]
    drawn = chart(windows, ["a"])
    points = drawn["series"][0]["points"]
    assert points[0]["y"] == drawn["bottom"] and points[1]["y"] > drawn["top"]
    assert points[0]["x"] == drawn["left"] and points[1]["x"] == drawn["right"]
    assert [p["drifted"] for p in points] == [False, True]
    assert drawn["top"] < drawn["threshold_y"] < drawn["bottom"]


def test_time_labels_do_not_overlap() -> None:
    windows = [
        {
            "start": f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00",
            "features": {"a": {"wasserstein": 0.1, "drifted": False}},
        }
        for i in range(40)
    ]
    labels = chart(windows, ["a"])["labels"]
    assert 2 <= len(labels) <= 9 and labels[0]["text"] == "01-01 00:00"
    assert all(b["x"] - a["x"] >= 90 for a, b in itertools.pairwise(labels))
