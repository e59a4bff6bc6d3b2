"""The audit API and pages: GET audit's shape, gold, label issues, the CSV, the sample page."""

import csv
import io
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from feedback import datasets
from feedback.models import LabelIssue
from labeling import queue
from labeling.models import Gold, LabelChange, Project, Role, Sample, Task, TaskKind, TaskStatus
from labeling.services.people import member_set
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(manager: User, client_for: Any) -> APIClient:
    return client_for(manager)


@pytest.fixture
def answered(project: Project, make_user: Any) -> Project:
    """Two annotators answered six samples (overlap 2) through the queue: they disagree on one."""
    Project.objects.filter(pk=project.pk).update(overlap=2)
    project.refresh_from_db()
    samples_add_bulk(
        project=project, items=[NewSample(external_id=f"q{i}", data={"x": float(i)}) for i in range(6)], actor=None
    )
    for name in ("ann", "bob"):
        user = make_user(name)
        member_set(project=project, user=user, role=Role.ANNOTATOR)
        while (leased := queue.task_lease_next(project=project, user=user, role="annotator")) is not None:
            label = "dog" if name == "bob" and leased.sample.external_id == "q0" else "cat"
            queue.annotation_submit(task_id=leased.task.pk, user=user, label=label, duration_ms=1500)
    return project


def test_audit_answers_the_contract_shape(answered: Project, api: APIClient) -> None:
    response = api.get(f"/api/projects/{answered.pk}/audit/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"agreement", "annotators", "label_issues"}
    assert set(body["agreement"]) >= {"krippendorff_alpha", "fleiss_kappa", "pairwise_cohen_kappa"}
    (pair,) = body["agreement"]["pairwise_cohen_kappa"]
    assert set(pair) >= {"a", "b", "kappa", "n"} and (pair["a"], pair["b"], pair["n"]) == ("ann", "bob", 6)
    rows = {row["username"]: row for row in body["annotators"]}
    assert set(rows) == {"ann", "bob"}
    for row in rows.values():
        assert set(row) >= {
            "username",
            "n_annotations",
            "gold_accuracy",
            "agreement_with_consensus",
            "estimated_accuracy",
        }
        assert row["n_annotations"] == 6 and row["median_duration_ms"] == 1500.0
    # q0 was a tie (cat against dog): in review, no final label; the other five are cat.
    assert rows["ann"]["agreement_with_consensus"] == 1.0 and rows["ann"]["n_compared"] == 5
    assert Task.objects.filter(project=answered, kind=TaskKind.REVIEW, status=TaskStatus.PENDING).count() == 1
    assert body["label_issues"] == []


def test_audit_is_for_reviewers_and_managers(answered: Project, client_for: Any, outsider: User) -> None:
    annotator = client_for(User.objects.get(username="ann"))
    assert annotator.get(f"/api/projects/{answered.pk}/audit/").status_code == 403
    assert annotator.get(f"/api/projects/{answered.pk}/gold/").status_code == 403
    assert client_for(outsider).get(f"/api/projects/{answered.pk}/audit/").status_code == 404
    reviewer = User.objects.create_user("rev")
    member_set(project=answered, user=reviewer, role=Role.REVIEWER)
    assert client_for(reviewer).get(f"/api/projects/{answered.pk}/audit/").status_code == 200
    assert client_for(reviewer).post(f"/api/projects/{answered.pk}/label-issues/review/").status_code == 403


def test_annotators_csv(answered: Project, api: APIClient) -> None:
    response = api.get(f"/api/projects/{answered.pk}/audit/annotators.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["username"] for row in rows] == ["ann", "bob"]
    assert rows[0]["n_annotations"] == "6" and rows[0]["gold_accuracy"] == ""


def test_gold_api_round_trip(answered: Project, api: APIClient, rows: Any, outsider: User, client_for: Any) -> None:
    base = f"/api/projects/{answered.pk}/gold/"
    samples_add_bulk(
        project=answered, items=[NewSample(external_id=f"g{i}", data={"x": 1.0}) for i in range(3)], actor=None
    )
    body = {"items": [{"external_id": "g0", "label": "cat"}, {"external_id": "g1", "label": "dog"}]}
    response = api.post(base, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["created"] == 2
    assert Task.objects.filter(project=answered, kind=TaskKind.GOLD, status=TaskStatus.PENDING).count() == 2
    listed = api.get(base).json()
    assert listed["count"] == 2
    assert [(r["external_id"], r["label"], r["n_answers"]) for r in listed["results"]] == [
        ("g0", "cat", 0),
        ("g1", "dog", 0),
    ]
    # All or nothing: one bad item stores nothing.
    bad = {"items": [{"external_id": "g2", "label": "cat"}, {"external_id": "nope", "label": "cat"}]}
    response = api.post(base, bad, format="json")
    assert response.status_code == 400 and "1" in response.json()["errors"]["items"]
    assert not Gold.objects.filter(sample__external_id="g2").exists()
    response = api.post(base, {"items": [{"external_id": "g2", "label": "fish"}]}, format="json")
    assert response.status_code == 400
    assert api.delete(base + "g0/").status_code == 204
    assert api.delete(base + "g0/").status_code == 204  # not gold any more: nothing to do
    assert api.delete(base + "never-stored/").status_code == 404
    assert list(Gold.objects.filter(project=answered).values_list("sample__external_id", flat=True)) == ["g1"]
    assert client_for(outsider).delete(base + "g1/").status_code == 404
    assert client_for(outsider).post(base, body, format="json").status_code == 404


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["items", "external_id", "label"]), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_fuzz_gold_body_is_never_a_500(project: Project, api: APIClient, body: Any) -> None:
    response = api.post(f"/api/projects/{project.pk}/gold/", body, format="json")
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])


def test_label_issues_find_list_and_review(project: Project, api: APIClient, manager: User, run_on_commit: Any) -> None:
    labels = ["cat", "dog", "bird"]
    items = [
        NewSample(
            external_id=f"r{i}",
            data={"x": float(i % 3) * 10 + (i % 5) * 0.1, "colour": ["red", "green", "blue"][i % 3], "note": "n"},
            label=labels[(i + 1) % 3] if i in (4, 20, 37) else labels[i % 3],
        )
        for i in range(60)
    ]
    samples_add_bulk(project=project, items=items, actor=manager)
    base = f"/api/projects/{project.pk}/label-issues/"
    assert api.post(base + "find/").status_code == 409  # no dataset version yet
    datasets.dataset_version_cut(project_id=project.pk, trigger="manual")
    with run_on_commit():
        response = api.post(base + "find/")
    assert response.status_code == 202 and response.json()["dataset_version"] == 1
    listed = api.get(base).json()
    assert listed["count"] == LabelIssue.objects.filter(project=project).count() > 0
    flagged = {r["external_id"] for r in listed["results"]}
    assert {"r4", "r20", "r37"} <= flagged
    first = listed["results"][0]
    assert set(first) >= {"external_id", "given_label", "suggested_label", "score", "status"}
    assert (
        api.get(f"/api/projects/{project.pk}/audit/").json()["label_issues"][0]["external_id"] == first["external_id"]
    )
    assert api.get(base + "?status=nonsense").status_code == 400
    assert api.post(base + "review/", {"ids": ["x"]}, format="json").status_code == 400
    assert api.post(base + "review/", [1, 2], format="json").status_code == 400
    one = api.post(base + "review/", {"ids": [first["id"]]}, format="json")
    assert one.json() == {"sent": 1}
    rest = api.post(base + "review/", format="json")
    assert rest.json() == {"sent": listed["count"] - 1}
    assert api.get(base + "?status=in_review").json()["count"] == listed["count"]
    reviews = Task.objects.filter(project=project, kind=TaskKind.REVIEW, status=TaskStatus.PENDING)
    assert reviews.count() == listed["count"]


def test_consensus_reestimate_only_for_dawid_skene(project: Project, api: APIClient, run_on_commit: Any) -> None:
    url = f"/api/projects/{project.pk}/consensus/reestimate/"
    assert api.post(url).status_code == 409
    api.patch(f"/api/projects/{project.pk}/", {"consensus": {"method": "dawid_skene"}}, format="json")
    with run_on_commit():
        assert api.post(url).status_code == 202


# --- pages ------------------------------------------------------------------------------------


def test_audit_refresh_stores_the_figures_in_the_worker(answered: Project, api: APIClient, run_on_commit: Any) -> None:
    from labeling import audit, project_settings
    from labeling.models import DerivedState

    with run_on_commit():
        assert api.post(f"/api/projects/{answered.pk}/audit/refresh/").status_code == 202
    # Stored even though GET audits this small project live; beside the settings, never in them.
    assert DerivedState.read(project_id=answered.pk, key=audit.REPORT_KEY)
    answered.refresh_from_db()
    assert set(answered.settings) <= set(project_settings.DEFAULTS)  # the settings hold what people set
    body = api.get(f"/api/projects/{answered.pk}/audit/").json()
    assert body["source"] == "live" and body["annotators"]
    assert "report" not in str(api.get(f"/api/projects/{answered.pk}/").json())


def test_audit_page_shows_charts_without_anything_remote(answered: Project, manager: User, outsider: User) -> None:
    browser = Client()
    browser.force_login(manager)
    page = browser.get(f"/projects/{answered.pk}/audit/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg") == 3
    assert 'class="project-nav"' in html and f"/projects/{answered.pk}/dashboard/" in html
    assert re.findall(r"""(?:src|href)\s*=\s*["']https?://""", html) == []
    assert "Krippendorff" in html and "ann" in html and "Find likely label errors" in html
    chosen = browser.get(f"/projects/{answered.pk}/audit/?annotator=bob")
    assert "confusion matrix of bob" in chosen.content.decode()
    csv_page = browser.get(f"/projects/{answered.pk}/audit/annotators.csv")
    assert csv_page.status_code == 200 and csv_page.content.decode().startswith("username,")

    stranger = Client()
    stranger.force_login(outsider)
    assert stranger.get(f"/projects/{answered.pk}/audit/").status_code == 404
    annotator = Client()
    annotator.force_login(User.objects.get(username="ann"))
    assert annotator.get(f"/projects/{answered.pk}/audit/").status_code == 403
    assert annotator.post(f"/projects/{answered.pk}/audit/label-issues/review/").status_code == 403
    assert Client().get(f"/projects/{answered.pk}/audit/").status_code == 302


def test_a_large_projects_page_waits_for_then_shows_the_stored_figures(
    answered: Project, manager: User, monkeypatch: pytest.MonkeyPatch, run_on_commit: Any
) -> None:
    from labeling import audit

    monkeypatch.setattr(audit, "LIVE_LIMIT", 5)  # 12 answers: "large"
    browser = Client()
    browser.force_login(manager)
    pending = browser.get(f"/projects/{answered.pk}/audit/").content.decode()
    assert "being computed in the background" in pending and "Recompute now" in pending
    with run_on_commit():  # the worker's task runs once the request's transaction commits
        response = browser.post(f"/projects/{answered.pk}/audit/refresh/")
    assert response.status_code == 302 and response["Location"] == f"/projects/{answered.pk}/audit/"
    html = browser.get(response["Location"]).content.decode()
    assert "Computed in the background at" in html and html.count("<svg") == 3 and "bob" in html


def test_gold_form_on_the_page(answered: Project, manager: User) -> None:
    browser = Client()
    browser.force_login(manager)
    url = f"/projects/{answered.pk}/audit/gold/"
    response = browser.post(url, {"gold": "q1,cat\nq2,fish\n"}, follow=True)
    assert "not a label of this project" in response.content.decode()
    assert not Gold.objects.exists()
    response = browser.post(url, {"gold": 'q1,cat\n"q2",dog\n'}, follow=True)
    assert response.redirect_chain[-1][0] == f"/projects/{answered.pk}/audit/"
    assert sorted(Gold.objects.values_list("sample__external_id", "label")) == [("q1", "cat"), ("q2", "dog")]


def test_sample_page_shows_the_trail_and_the_answers_and_edits_nothing(answered: Project, manager: User) -> None:
    browser = Client()
    browser.force_login(manager)
    sample = Sample.objects.get(project=answered, external_id="q1")
    change = LabelChange.objects.get(sample=sample)
    url = f"/projects/{answered.pk}/samples/q1/"
    page = browser.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "History of the final label" in html and change.method in html
    assert html.count("<td>cat</td>") >= 2  # the two answers
    assert "<form" not in html.split("</header>", 1)[1]  # nothing on the page posts anywhere
    for method in ("post", "put", "patch", "delete"):
        assert getattr(browser, method)(url).status_code == 405
    assert browser.get(f"/projects/{answered.pk}/samples/never-stored/").status_code == 404
    assert LabelChange.objects.filter(sample=sample).count() == 1
