"""The loop through the API, in-process: ingest, queue, label, cut, train, predict."""

from typing import Any

from django.contrib.auth.models import User

from feedback.models import DatasetVersion, ModelVersion, RunStatus, TrainingRun
from labeling.models import Project


def test_ingest_label_train_predict(
    project: Project, manager: User, annotator: User, client_for: Any, rows: Any, run_on_commit: Any
) -> None:
    api = client_for(manager)
    with run_on_commit():
        response = api.post(f"/api/projects/{project.pk}/samples/", rows(30, labeled=True), format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 30, "duplicates": 0, "rejected": []}
    # 30 seed labels >= min_new_labels (5): a version was cut and its run trained the first champion.
    assert DatasetVersion.objects.filter(project=project).count() == 1
    run = TrainingRun.objects.get(project=project)
    assert run.status == RunStatus.SUCCEEDED
    champion = ModelVersion.objects.get(project=project)

    with run_on_commit():
        response = api.post(f"/api/projects/{project.pk}/samples/", rows(20, start=100), format="json")
    assert response.json()["created"] == 20
    queue = api.get(f"/api/projects/{project.pk}/queue/?limit=5").json()
    assert len(queue) == 5
    priorities = [item["priority"] for item in queue]
    assert priorities == sorted(priorities, reverse=True)

    worker = client_for(annotator)
    for _ in range(5):
        task = worker.post(f"/api/projects/{project.pk}/tasks/next/").json()
        with run_on_commit():
            answer = worker.post(f"/api/tasks/{task['task_id']}/annotations/", {"label": "cat"}, format="json")
        assert answer.status_code == 201, answer.content
    assert DatasetVersion.objects.filter(project=project).count() == 2
    latest = api.get(f"/api/projects/{project.pk}/datasets/").json()["results"][0]
    assert latest["version"] == 2 and latest["parent"] == 1 and latest["size"] == 35
    detail = api.get(f"/api/projects/{project.pk}/datasets/2/").json()
    assert detail["diff"] == {"added": 5, "changed": 0, "removed": 0}
    assert ModelVersion.objects.filter(project=project).count() == 2

    predicted = api.post(
        f"/api/projects/{project.pk}/predict/",
        {"items": [{"data": {"x": 0.0, "colour": "red", "note": "cat"}}]},
        format="json",
    )
    assert predicted.status_code == 200, predicted.content
    body = predicted.json()
    assert abs(sum(body["predictions"][0]["probabilities"].values()) - 1) < 1e-9
    champion.refresh_from_db()
    assert body["model_version"] in {m.version for m in ModelVersion.objects.filter(project=project)}


def test_export_columns_follow_the_declared_schema_order(
    project: Project, manager: User, client_for: Any, rows: Any, outsider: User
) -> None:
    api = client_for(manager)
    api.post(f"/api/projects/{project.pk}/samples/", rows(4, labeled=True), format="json")
    api.post(f"/api/projects/{project.pk}/datasets/")
    response = api.get(f"/api/projects/{project.pk}/datasets/1/export/?format=csv")
    assert response.status_code == 200
    header = b"".join(response.streaming_content).decode().splitlines()[0]
    assert header == "external_id,x,colour,note,label"  # jsonb alone would give x,note,colour
    assert list(api.get(f"/api/projects/{project.pk}/").json()["schema"]) == ["x", "colour", "note"]
    assert client_for(outsider).get(f"/api/projects/{project.pk}/datasets/1/export/?format=csv").status_code == 404
