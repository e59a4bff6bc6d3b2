"""The selection endpoints over HTTP: GET drift (API.md's shape), POST queue/manual, their bad input
(4xx, never 500) and who may call them."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from labeling.models import Project, Role
from labeling.services.people import member_set
from tests.feedback.test_drift_service import WINDOW, drifting, items  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def test_drift_endpoint_answers_the_contract(drifting: Project, client_for: Any, make_user: Any) -> None:  # noqa: F811
    reader = make_user("reader")
    member_set(project=drifting, user=reader, role=Role.ANNOTATOR)
    api = client_for(reader)
    response = api.get(f"/api/projects/{drifting.pk}/drift/?window={WINDOW}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"reference", "windows"} and set(body["reference"]) >= {"dataset_version"}
    assert [w["drifted"] for w in body["windows"]] == [False, False, False, True, True]
    first = body["windows"][0]
    assert set(first) >= {"start", "end", "n", "drifted", "score", "features"}
    assert isinstance(first["score"], float) and first["start"].startswith("2026-11-01T")
    assert set(first["features"]["x"]) >= {"test", "statistic", "p_value", "drifted"}
    # The project's default window (drift.window) when none is given; and windows by time.
    assert [w["n"] for w in api.get(f"/api/projects/{drifting.pk}/drift/?domain=0").json()["windows"]] == [100] * 5
    timed = api.get(f"/api/projects/{drifting.pk}/drift/?seconds=6000&domain=false").json()
    assert timed["window"] == {"seconds": 6000} and len(timed["windows"]) == 5


@pytest.mark.parametrize(
    "query",
    [
        "window=abc",
        "window=5",
        "window=99999999999",
        "limit=0",
        "limit=1000",
        "domain=maybe",
        "seconds=1",
        "window=100&seconds=600",
    ],
)
def test_drift_bad_parameters_are_400(project: Project, client_for: Any, manager: User, query: str) -> None:
    response = client_for(manager).get(f"/api/projects/{project.pk}/drift/?{query}")
    assert response.status_code == 400, (query, response.content)
    assert "detail" in response.json()


def test_drift_with_a_missing_pinned_reference_is_409(project: Project, client_for: Any, manager: User) -> None:
    api = client_for(manager)
    assert (
        api.patch(f"/api/projects/{project.pk}/", {"drift": {"reference_version": 9}}, format="json").status_code == 200
    )
    response = api.get(f"/api/projects/{project.pk}/drift/")
    assert response.status_code == 409 and "reference_version" in response.json()["detail"]


def test_manual_push_over_http(
    project: Project, client_for: Any, manager: User, rows: Any, make_user: Any, outsider: User
) -> None:
    api = client_for(manager)
    assert api.post(f"/api/projects/{project.pk}/samples/", rows(10, start=100), format="json").status_code == 200
    url = f"/api/projects/{project.pk}/queue/manual/"
    response = api.post(url, {"external_ids": ["s105", "s101", "unknown-1"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"pushed": 2, "external_ids": ["s105", "s101"], "labeled": [], "unknown": ["unknown-1"]}
    queue = api.get(f"/api/projects/{project.pk}/queue/?limit=3").json()
    assert [(q["external_id"], q["reason"]) for q in queue[:2]] == [("s105", "manual"), ("s101", "manual")]
    assert queue[0]["priority"] > queue[1]["priority"] > queue[2]["priority"]
    by_filter = api.post(url, {"filter": {"data": {"colour": "red"}}, "limit": 2}, format="json")
    assert by_filter.status_code == 200 and by_filter.json()["pushed"] == 2
    annotator = make_user("ann")
    member_set(project=project, user=annotator, role=Role.ANNOTATOR)
    assert client_for(annotator).post(url, {"external_ids": ["s102"]}, format="json").status_code == 403
    assert client_for(outsider).post(url, {"external_ids": ["s102"]}, format="json").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"external_ids": ["a"], "filter": {}},
        {"external_ids": "s1"},
        {"external_ids": [""]},
        {"external_ids": [1, {"a": 2}]},
        {"filter": []},
        {"filter": {"data": {"nope": 1}}},
        {"filter": {"data": {"x": {"gte": "ten"}}}},
        {"filter": {"status": "labeled"}},
        {"filter": {}, "limit": 0},
        [1, 2],
    ],
)
def test_manual_push_bad_bodies_are_400(project: Project, client_for: Any, manager: User, body: Any) -> None:
    response = client_for(manager).post(f"/api/projects/{project.pk}/queue/manual/", body, format="json")
    assert response.status_code == 400, (body, response.content)
    assert "detail" in response.json()
