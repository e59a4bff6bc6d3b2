"""The fast path of the hot calls (labeling/api/fast.py): it answers the ordinary successful next
and answer itself, exactly as Django would, and hands everything else to Django untouched."""

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from labeling.api import fast
from labeling.models import Annotation, ApiToken, Lease, LeaseStatus, Project
from labeling.services.people import token_issue
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


class Django:
    """Stands in for Django's WSGI handler: records what reached it (and the body it could read)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or "0")
        self.calls.append((environ["PATH_INFO"], environ["wsgi.input"].read(length)))
        start_response("418 I'm a teapot", [])
        return [b""]


def _call(app: Any, path: str, key: str, body: Any = None, content_type: str = "application/json") -> tuple[str, Any]:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "HTTP_AUTHORIZATION": f"Token {key}",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    seen: dict[str, str] = {}
    chunks = app(environ, lambda status, headers: seen.update(status=status))
    payload = b"".join(chunks)
    return seen["status"], (json.loads(payload) if payload else None)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Django]:
    if connection.vendor != "postgresql":
        pytest.skip("the fast path is PostgreSQL's")
    # Listeners at once, in the test's transaction (so after it: never), unless a test says otherwise.
    monkeypatch.setattr(fast, "EMIT_DELAY", 0.0)
    django = Django()
    return fast.wrap(django), django


def test_next_and_answer_are_answered_without_django(
    app: tuple[Any, Django], project: Project, annotator: User
) -> None:
    wrapped, django = app
    samples_add_bulk(project=project, items=[NewSample(external_id="f0", data={"x": 1.0}, reason="drift")], actor=None)
    key, _ = token_issue(user=annotator)
    status, body = _call(wrapped, f"/api/projects/{project.pk}/tasks/next/", key)
    assert status == "200 OK" and django.calls == []
    assert body["external_id"] == "f0" and body["reason"] == "drift" and body["suggestion"] is None
    assert body["data"] == {"x": 1.0} and body["lease_expires_at"].endswith("Z")
    assert Lease.objects.get(task_id=body["task_id"], user=annotator).status == LeaseStatus.LIVE
    status, answer = _call(
        wrapped, f"/api/tasks/{body['task_id']}/annotations/", key, {"label": "dog", "duration_ms": 5}
    )
    assert status == "201 Created" and django.calls == []
    stored = Annotation.objects.get()
    assert (answer["id"], answer["label"], answer["duration_ms"]) == (stored.pk, "dog", 5)


def test_everything_else_goes_to_django_untouched(
    app: tuple[Any, Django], project: Project, annotator: User, outsider: User
) -> None:
    wrapped, django = app
    samples_add_bulk(project=project, items=[NewSample(external_id="f0", data={"x": 1.0})], actor=None)
    key, _ = token_issue(user=annotator)
    stranger, _ = token_issue(user=outsider)
    next_url = f"/api/projects/{project.pk}/tasks/next/"
    for path, token in [(next_url, "not-a-token"), (next_url, stranger), ("/api/projects/999999/tasks/next/", key)]:
        assert _call(wrapped, path, token)[0].startswith("418")
    assert not Lease.objects.exists()
    _, body = _call(wrapped, next_url, key)
    answer_url = f"/api/tasks/{body['task_id']}/annotations/"
    bodies: list[Any] = [
        {"label": "fish"},  # not a label of the project
        {"label": " dog "},  # DRF would trim it
        {"label": 3},  # DRF would make it "3"
        {"label": "dog", "duration_ms": "5"},
        {"label": "dog", "extra": 1},
        b"{not json",
        ["dog"],
    ]
    for sent in bodies:
        assert _call(wrapped, answer_url, key, sent)[0].startswith("418")
    raw = json.dumps({"label": "dog"}).encode()
    assert _call(wrapped, answer_url, key, raw, content_type="text/plain")[0].startswith("418")
    assert _call(wrapped, answer_url, stranger, {"label": "dog"})[0].startswith("418")
    assert not Annotation.objects.exists()
    assert django.calls[-1] == (answer_url, raw)  # Django still reads the body
    assert django.calls[-2][1] == raw
    ApiToken.objects.filter(user=annotator).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _call(wrapped, answer_url, key, {"label": "dog"})[0].startswith("418")
    assert not Annotation.objects.exists()


def test_changed_labels_reach_the_listeners_once_per_burst(
    app: tuple[Any, Django], project: Project, annotator: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listeners are level-triggered: a burst of answers that each changed a label is told to
    them once, shortly after, instead of once per answer."""
    import threading

    from labeling import events

    wrapped, _ = app
    heard: list[int] = []
    done = threading.Event()

    def listener(project_id: int) -> None:
        heard.append(project_id)
        done.set()

    monkeypatch.setattr(events, "_labels_finalized", [listener])
    monkeypatch.setattr(fast, "EMIT_DELAY", 0.2)
    items = [NewSample(external_id=f"b{i}", data={"x": 1.0}) for i in range(3)]
    samples_add_bulk(project=project, items=items, actor=None)
    key, _ = token_issue(user=annotator)
    for _ in range(3):
        _, body = _call(wrapped, f"/api/projects/{project.pk}/tasks/next/", key)
        assert _call(wrapped, f"/api/tasks/{body['task_id']}/annotations/", key, {"label": "cat"})[0] == "201 Created"
    assert heard == []  # not yet: within the delay
    assert done.wait(5)
    assert heard == [project.pk] and project.pk not in fast._pending  # one call, and none still to come
