"""The registry over the API and on its pages: model details and lineage, promotion, rollback,
the alias history, tags and pruning, the run page's progress and gate decision."""

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from feedback import datasets, registry, training
from feedback.ingest import samples_ingest
from feedback.models import AliasEvent, DatasetVersion, ModelAlias, ModelVersion, RunStatus, TrainingRun
from labeling.models import Project, Role
from labeling.services.people import member_set

pytestmark = pytest.mark.django_db


def _quiet(project: Project) -> None:
    project.settings["retrain"]["min_new_labels"] = 10**6
    project.save()


def _model(project: Project, run_on_commit: Any) -> ModelVersion:
    with run_on_commit():
        version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual").version
        run, _ = training.training_run_request(project=project, dataset_version=version, trigger="manual")
    return ModelVersion.objects.get(run=run)


@pytest.fixture
def two_models(project: Project, rows: Any, run_on_commit: Any) -> tuple[ModelVersion, ModelVersion]:
    _quiet(project)
    samples_ingest(project=project, items=rows(45, labeled=True), actor=None)
    first = _model(project, run_on_commit)
    samples_ingest(project=project, items=rows(30, start=45, labeled=True), actor=None)
    return first, _model(project, run_on_commit)


def _browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_model_detail_has_lineage_gate_and_history(
    project: Project, two_models: Any, manager: User, client_for: Any, outsider: User
) -> None:
    _, second = two_models
    api = client_for(manager)
    body = api.get(f"/api/projects/{project.pk}/models/2/").json()
    assert body["version"] == 2 and body["dataset_version"] == 2 and body["digest"] == second.digest
    assert body["dataset_hash"] == DatasetVersion.objects.get(project=project, version=2).hash
    assert body["run_id"] == second.run_id and body["gate"]["checks"][0]["check"] == "overall"
    lineage = body["lineage"]
    assert {"dataset_hash", "params", "code_version", "libraries", "seed", "started_at", "fit_seconds"} <= set(lineage)
    matrix = body["metrics"]["confusion_matrix"]
    assert matrix["labels"] == project.labels and sum(map(sum, matrix["matrix"])) == body["metrics"]["n"]
    assert [(e["alias"], e["version"], e["previous"]) for e in body["history"]][-1] == ("champion", 2, 1)
    assert api.get(f"/api/projects/{project.pk}/models/9/").status_code == 404
    assert client_for(outsider).get(f"/api/projects/{project.pk}/models/2/").status_code == 404


def test_rollback_and_promotion_answer_at_once_and_keep_the_history(
    project: Project, two_models: Any, manager: User, client_for: Any, run_on_commit: Any
) -> None:
    first, second = two_models
    api = client_for(manager)
    item = {"items": [{"data": {"x": 10.0, "colour": "green", "note": "dog"}}]}
    assert api.post(f"/api/projects/{project.pk}/predict/", item, format="json").json()["model_version"] == 2
    with run_on_commit():
        rolled = api.post(f"/api/projects/{project.pk}/models/rollback/", {"reason": "bad in prod"}, format="json")
    assert rolled.status_code == 200 and rolled.json()["version"] == 1 and rolled.json()["aliases"] == ["champion"]
    assert api.post(f"/api/projects/{project.pk}/predict/", item, format="json").json()["model_version"] == 1
    history = api.get(f"/api/projects/{project.pk}/models/history/").json()
    newest = history[0]
    assert (newest["alias"], newest["version"], newest["previous"], newest["actor"]) == ("champion", 1, 2, "manager")
    assert history[0]["reason"] == "bad in prod"
    # Another process (a second gunicorn worker) promotes: this one answers from the new champion
    # on its next request, its cache keyed by (id, digest) holding both models.
    ModelAlias.objects.filter(project=project, alias="champion").update(model_version=second)
    assert api.post(f"/api/projects/{project.pk}/predict/", item, format="json").json()["model_version"] == 2
    assert registry.load_model(model_version=first) is registry.load_model(model_version=first)


def test_rollback_without_an_earlier_champion_is_409(
    project: Project, rows: Any, run_on_commit: Any, manager: User, client_for: Any
) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(20, labeled=True), actor=None)
    _model(project, run_on_commit)
    response = client_for(manager).post(f"/api/projects/{project.pk}/models/rollback/", {}, format="json")
    assert response.status_code == 409 and "no earlier champion" in response.json()["detail"]


def test_tag_and_prune_api(project: Project, rows: Any, manager: User, client_for: Any, annotator: User) -> None:
    _quiet(project)
    api = client_for(manager)
    for start in (0, 10, 20):
        samples_ingest(project=project, items=rows(10, start=start, labeled=True), actor=None)
        assert api.post(f"/api/projects/{project.pk}/datasets/").status_code == 201
    tags = f"/api/projects/{project.pk}/datasets/1/tags/"
    created = api.post(tags, {"name": "audited-2026-q4"}, format="json")
    assert created.status_code == 201 and created.json()["version"] == 1 and created.json()["created_by"] == "manager"
    assert api.post(tags, {"name": "audited-2026-q4"}, format="json").status_code == 200
    other = api.post(f"/api/projects/{project.pk}/datasets/2/tags/", {"name": "audited-2026-q4"}, format="json")
    assert other.status_code == 409
    assert api.post(tags, {"name": "no spaces please"}, format="json").status_code == 400
    assert api.get(f"/api/projects/{project.pk}/datasets/").json()["results"][-1]["tags"] == ["audited-2026-q4"]
    assert client_for(annotator).post(tags, {"name": "x"}, format="json").status_code == 403
    prune = f"/api/projects/{project.pk}/datasets/prune/"
    assert api.post(prune, {}, format="json").status_code == 400  # the project keeps every version
    DatasetVersion.objects.filter(project=project).update(created_at="2026-01-01T00:00:00Z")
    dry = api.post(prune, {"retention_days": 30, "dry_run": True}, format="json").json()
    assert dry == {
        "pruned": [2],
        "members_deleted": 0,
        "kept": {"1": "tagged 'audited-2026-q4'", "3": "latest version"},
        "retention_days": 30,
        "dry_run": True,
    }
    done = api.post(prune, {"retention_days": 30}, format="json").json()
    assert done["pruned"] == [2] and done["dry_run"] is False
    detail = api.get(f"/api/projects/{project.pk}/datasets/2/").json()
    assert detail["pruned_at"] and detail["hash"] and detail["size"] == 20
    assert api.post(f"/api/projects/{project.pk}/runs/", {"dataset_version": 2}, format="json").status_code == 410
    assert api.delete(tags + "?name=audited-2026-q4").status_code == 204
    assert api.delete(tags + "?name=audited-2026-q4").status_code == 404
    assert api.delete(tags).status_code == 400


# ---------------------------------------------------------------- pages


def test_models_page_lists_models_history_runs_and_versions(
    project: Project, two_models: Any, manager: User, annotator: User, outsider: User
) -> None:
    page = _browser(manager).get(f"/projects/{project.pk}/models/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="project-nav"' in html and f"/projects/{project.pk}/label/" in html
    assert re.search(r'href="/projects/\d+/models/2/">v2</a>', html)
    assert 'id="alias-history"' in html and 'id="runs"' in html and 'id="datasets"' in html
    assert 'id="train-now"' in html and f"/projects/{project.pk}/models/1/promote/" in html
    for_annotator = _browser(annotator).get(f"/projects/{project.pk}/models/").content.decode()
    assert 'id="models"' in for_annotator and 'id="train-now"' not in for_annotator and "promote/" not in for_annotator
    assert _browser(outsider).get(f"/projects/{project.pk}/models/").status_code == 404
    assert Client().get(f"/projects/{project.pk}/models/").status_code == 302
    model = _browser(manager).get(f"/projects/{project.pk}/models/2/")
    assert model.status_code == 200 and 'id="confusion"' in model.content.decode()
    assert _browser(manager).get(f"/projects/{project.pk}/models/7/").status_code == 404


def test_promote_and_rollback_buttons(
    project: Project, two_models: Any, manager: User, annotator: User, run_on_commit: Any
) -> None:
    first, _ = two_models
    assert _browser(annotator).post(f"/projects/{project.pk}/models/1/promote/").status_code == 403
    assert registry.champion(project_id=project.pk).version == 2  # type: ignore[union-attr]
    with run_on_commit():
        response = _browser(manager).post(f"/projects/{project.pk}/models/1/promote/", {"reason": "from the page"})
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/models/"
    assert registry.champion(project_id=project.pk) == first
    event = AliasEvent.objects.filter(project=project).latest("id")
    assert (event.model_version_id, event.actor, event.reason) == (first.pk, manager, "from the page")
    with run_on_commit():
        _browser(manager).post(f"/projects/{project.pk}/models/rollback/")
    assert registry.champion(project_id=project.pk).version == 2  # type: ignore[union-attr]
    assert _browser(manager).get(f"/projects/{project.pk}/models/1/promote/").status_code == 405


def test_train_now_button_and_the_run_page(
    project: Project, rows: Any, manager: User, make_user: Any, run_on_commit: Any
) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(45, labeled=True), actor=None)
    browser = _browser(manager)
    with run_on_commit():
        response = browser.post(f"/projects/{project.pk}/runs/")
    run = TrainingRun.objects.get(project=project)
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/runs/{run.pk}/"
    assert run.trigger == "manual" and run.created_by == manager
    html = browser.get(response["Location"]).content.decode()
    assert '<progress id="run-bar" max="100" value="100"' in html and "hx-trigger" not in html  # finished: no polling
    assert 'id="checks"' in html and "first model of the project: becomes champion" in html
    # An unfinished run polls its progress partial, which asks the page to reload once finished.
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, progress=0.42)
    html = browser.get(f"/projects/{project.pk}/runs/{run.pk}/").content.decode()
    assert 'value="42"' in html and f'hx-get="/projects/{project.pk}/runs/{run.pk}/progress/"' in html
    partial = browser.get(f"/projects/{project.pk}/runs/{run.pk}/progress/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and "HX-Refresh" not in partial
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, progress=1.0)
    done = browser.get(f"/projects/{project.pk}/runs/{run.pk}/progress/", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"
    reviewer = make_user("rev")
    member_set(project=project, user=reviewer, role=Role.REVIEWER)
    assert _browser(reviewer).get(f"/projects/{project.pk}/runs/{run.pk}/").status_code == 200
    assert _browser(reviewer).post(f"/projects/{project.pk}/runs/").status_code == 403
    assert browser.get(f"/projects/{project.pk}/runs/{run.pk + 100}/").status_code == 404


BAD_INPUTS = [
    ("post", "runs/", {"dataset_version": "one"}),
    ("post", "runs/", {"dataset_version": -1}),
    ("post", "runs/", {"dataset_version": 10**12}),
    ("post", "runs/", ["not", "an", "object"]),
    ("get", "datasets/1/export/?format=xml", None),
    ("get", "datasets/999/export/?format=csv", None),
    ("get", "datasets/1/diff/?against=abc", None),
    ("get", "datasets/1/diff/?against=999", None),
    ("post", "datasets/1/tags/", {"name": "x" * 500}),
    ("post", "datasets/1/tags/", {"name": "\x00"}),
    ("post", "datasets/1/tags/", {}),
    ("post", "datasets/prune/", {"retention_days": -5}),
    ("post", "datasets/prune/", {"retention_days": "soon"}),
    ("post", "models/99/promote/", {}),
    ("post", "models/1/promote/", {"reason": ["not", "text"]}),
    ("get", "models/99/", None),
    ("post", "predict/", {"items": "none"}),
    ("post", "predict/", {"items": [{"data": {"x": "not a number"}}]}),
    ("post", "predict/", {"items": [{"data": None}]}),
]


def test_bad_input_is_a_clear_4xx(
    project: Project, rows: Any, manager: User, client_for: Any, run_on_commit: Any
) -> None:
    _quiet(project)
    samples_ingest(project=project, items=rows(20, labeled=True), actor=None)
    _model(project, run_on_commit)
    api = client_for(manager)
    answers = {}
    for method, path, body in BAD_INPUTS:
        url = f"/api/projects/{project.pk}/{path}"
        response = api.get(url) if method == "get" else api.post(url, body, format="json")
        answers[(method, path, repr(body)[:40])] = (response.status_code, "detail" in response.json())
    wrong = {key: answer for key, answer in answers.items() if not 400 <= answer[0] < 500}
    assert wrong == {}
    # Every refusal says why: a "detail", or (400) the fields at fault.
    assert all(has_detail or status == 400 for status, has_detail in answers.values())
