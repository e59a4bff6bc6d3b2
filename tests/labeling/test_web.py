"""The server-rendered pages (labeling/web), through Django's test client: login, the annotator page,
and the htmx fragments its answer and skip forms swap in."""

import re
from collections.abc import Callable
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from labeling.models import Annotation, Lease, LeaseStatus, Project, Role, Task, TaskStatus
from labeling.project_settings import ProjectSettings
from labeling.services.people import member_set
from labeling.services.projects import project_create
from labeling.services.samples import NewSample, samples_add_bulk

pytestmark = pytest.mark.django_db


def _tasks(project: Project, n: int, *, prefix: str = "w") -> list[Task]:
    """``n`` pending tasks, returned in hand-out order (the first has the highest priority)."""
    items = [
        NewSample(
            external_id=f"{prefix}{i}",
            data={"x": float(i), "colour": "red", "note": f"{prefix} note {i}"},
            priority=n - i,
        )
        for i in range(n)
    ]
    samples_add_bulk(project=project, items=items, actor=None)
    return list(Task.objects.filter(project=project).order_by("-priority", "id"))


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shown_task(html: str) -> int | None:
    match = re.search(r'class="sample" data-task="(\d+)"', html)
    return int(match.group(1)) if match else None


def _counter(html: str, name: str) -> int:
    match = re.search(rf'<span id="{name}"[^>]*>(\d+)</span>', html)
    assert match, html
    return int(match.group(1))


def _answer_url(project: Project, task: Task) -> str:
    return f"/projects/{project.pk}/label/{task.pk}/answer/"


def _skip_url(project: Project, task: Task) -> str:
    return f"/projects/{project.pk}/label/{task.pk}/skip/"


def test_login_page_renders_and_logs_in(make_user: Callable[..., User]) -> None:
    make_user("ann", password="correct-horse")
    client = Client()
    page = client.get("/accounts/login/?next=/projects/1/label/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="username"' in html and 'name="password"' in html and 'name="csrfmiddlewaretoken"' in html
    assert 'name="next" value="/projects/1/label/"' in html

    wrong = client.post("/accounts/login/", {"username": "ann", "password": "nope", "next": "/projects/1/label/"})
    html = wrong.content.decode()
    assert wrong.status_code == 200 and "wrong password" in html
    assert 'name="username" value="ann"' in html  # kept: only the password is typed again
    assert 'name="next" value="/projects/1/label/"' in html
    right = client.post("/accounts/login/", {"username": "ann", "password": "correct-horse", "next": "/"})
    assert right.status_code == 302 and right["Location"] == "/"


def test_annotator_page_needs_login(project: Project) -> None:
    url = f"/projects/{project.pk}/label/"
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"
    task = _tasks(project, 1)[0]
    post = Client().post(_answer_url(project, task), {"label": "cat"})
    assert post.status_code == 302 and post["Location"].startswith("/accounts/login/")
    assert not Annotation.objects.exists()


def test_signed_out_htmx_request_is_sent_to_the_login_page(project: Project, annotator: User) -> None:
    """A key press after the session expired: htmx is told to load the login page, coming back to
    the annotator page, instead of swapping the login page into the task card."""
    task = _tasks(project, 1)[0]
    for url in [_answer_url(project, task), _skip_url(project, task)]:
        response = Client().post(url, {"label": "cat"}, headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert response["HX-Redirect"] == f"/accounts/login/?next=/projects/{project.pk}/label/"
    assert not Annotation.objects.exists() and not Lease.objects.exists()


def test_home_lists_only_my_projects(project: Project, annotator: User, outsider: User) -> None:
    # An annotator of one project lands on its desk; with a second project, they choose.
    landing = _client(annotator).get("/")
    assert landing.status_code == 302 and landing["Location"] == f"/projects/{project.pk}/label/"
    second = project_create(creator=outsider, name="Second", labels=["a"], schema={"x": "numeric"})
    member_set(project=second, user=annotator, role=Role.ANNOTATOR)
    html = _client(annotator).get("/").content.decode()
    assert f'href="/projects/{project.pk}/label/"' in html and f'href="/projects/{second.pk}/label/"' in html
    assert "Other" not in html and "/review/" not in html and "/dashboard/" not in html


def test_annotator_page_shows_the_first_task(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 3)
    response = _client(annotator).get(f"/projects/{project.pk}/label/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html and 'id="desk"' in html
    assert _shown_task(html) == tasks[0].pk
    assert "w note 0" in html
    assert '<th scope="row">x</th><td>0.0</td>' in html
    assert '<th scope="row">colour</th><td>red</td>' in html
    for number, label in enumerate(project.labels, start=1):
        assert f'value="{label}" class="answer" data-key="{number}"' in html
    assert _counter(html, "done-today") == 0
    assert _counter(html, "left") == 3


def test_reloading_the_page_resumes_the_held_task(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 3)
    client = _client(annotator)
    first = _shown_task(client.get(f"/projects/{project.pk}/label/").content.decode())
    again = _shown_task(client.get(f"/projects/{project.pk}/label/").content.decode())
    assert first == again == tasks[0].pk
    # The task on screen and the one fetched ahead, no more however often the page is loaded.
    assert set(Lease.objects.filter(user=annotator).values_list("task_id", flat=True)) == {tasks[0].pk, tasks[1].pk}


def test_non_member_gets_404_everywhere(project: Project, annotator: User, outsider: User) -> None:
    tasks = _tasks(project, 2)
    _client(annotator).get(f"/projects/{project.pk}/label/")  # the annotator holds tasks[0]
    client = _client(outsider)
    assert client.get(f"/projects/{project.pk}/label/").status_code == 404
    for task in tasks:
        assert client.post(_answer_url(project, task), {"label": "cat"}).status_code == 404
        assert client.post(_skip_url(project, task)).status_code == 404
    assert not Annotation.objects.exists()
    assert not Lease.objects.filter(user=outsider).exists()
    assert Lease.objects.get(task=tasks[0]).status == LeaseStatus.LIVE


def test_ingest_only_member_gets_404(project: Project, make_user: Callable[..., User]) -> None:
    feeder = make_user("feeder")
    member_set(project=project, user=feeder, role=Role.INGEST)
    assert _client(feeder).get(f"/projects/{project.pk}/label/").status_code == 404
    assert not Lease.objects.exists()


def test_task_of_another_project_gets_404(project: Project, annotator: User, outsider: User) -> None:
    other = Project.objects.get(name="Other")
    foreign = _tasks(other, 1, prefix="o")[0]
    _tasks(project, 1)
    client = _client(annotator)
    assert client.post(_answer_url(project, foreign), {"label": "cat"}).status_code == 404
    assert client.post(_skip_url(project, foreign)).status_code == 404
    assert not Annotation.objects.exists()


def test_answer_stores_the_label_and_brings_the_task_after_the_next(project: Project, annotator: User) -> None:
    """The page holds the next task already (hidden); an answer's response is the one after it."""
    tasks = _tasks(project, 3)
    client = _client(annotator)
    page = client.get(f"/projects/{project.pk}/label/").content.decode()
    ahead = page.split('<div id="next" hidden>', 1)[1]
    assert _shown_task(ahead) == tasks[1].pk and "w note 1" in ahead
    response = client.post(
        _answer_url(project, tasks[0]), {"label": "dog", "duration_ms": "1234", "showing": tasks[1].pk}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div class="sample" data-task=')
    assert _shown_task(html) == tasks[2].pk
    assert "w note 2" in html
    assert _counter(html, "done-today") == 1
    assert _counter(html, "left") == 2
    assert f'class="undo" data-task="{tasks[0].pk}"' in html
    annotation = Annotation.objects.get()
    assert (annotation.task_id, annotation.user_id, annotation.label, annotation.duration_ms) == (
        tasks[0].pk,
        annotator.pk,
        "dog",
        1234,
    )
    tasks[0].refresh_from_db()
    assert tasks[0].status == TaskStatus.DONE


@pytest.mark.parametrize("duration", ["", "abc", "-5", "999999999999", "²", "1" * 40])
def test_answer_without_a_usable_duration_stores_none(project: Project, annotator: User, duration: str) -> None:
    tasks = _tasks(project, 1)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    assert client.post(_answer_url(project, tasks[0]), {"label": "cat", "duration_ms": duration}).status_code == 200
    assert Annotation.objects.get().duration_ms is None


def test_unknown_label_shows_a_message_and_stores_nothing(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 2)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    for label in ["fish", ""]:
        response = client.post(_answer_url(project, tasks[0]), {"label": label, "duration_ms": "10"})
        assert response.status_code == 200
        html = response.content.decode()
        assert "not a label of this project" in html
        assert _shown_task(html) == tasks[0].pk  # still the same task, still held
    assert not Annotation.objects.exists()
    assert Lease.objects.get(task=tasks[0]).status == LeaseStatus.LIVE


def test_answer_after_the_lease_expired_shows_why_and_stores_nothing(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 2)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    lease_seconds = ProjectSettings.of(project.settings).queue["lease_seconds"]
    later = timezone.now() + timedelta(seconds=lease_seconds + 1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = client.post(_answer_url(project, tasks[0]), {"label": "cat", "duration_ms": "10"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not saved" in html and "lease" in html and "expired" in html
    assert not Annotation.objects.exists()


def test_answer_after_the_expired_lease_was_released_says_it_expired(
    project: Project, annotator: User, make_user: Callable[..., User]
) -> None:
    tasks = _tasks(project, 1)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    colleague = make_user("colleague")
    member_set(project=project, user=colleague, role=Role.ANNOTATOR)
    lease_seconds = ProjectSettings.of(project.settings).queue["lease_seconds"]
    later = timezone.now() + timedelta(seconds=lease_seconds + 1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        # The colleague's hand-out releases the expired lease and takes the task over.
        assert _shown_task(_client(colleague).get(f"/projects/{project.pk}/label/").content.decode()) == tasks[0].pk
        html = client.post(_answer_url(project, tasks[0]), {"label": "cat"}).content.decode()
    assert not Annotation.objects.exists()
    assert "expired" in html


def test_answering_twice_says_so_and_stores_one(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 2)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    client.post(_answer_url(project, tasks[0]), {"label": "cat"})
    html = client.post(_answer_url(project, tasks[0]), {"label": "dog"}).content.decode()
    assert "already answered" in html
    assert list(Annotation.objects.values_list("label", flat=True)) == ["cat"]
    assert _shown_task(html) == tasks[1].pk


def test_skip_moves_on_and_the_task_stays_for_others(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 2)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    html = client.post(_skip_url(project, tasks[0])).content.decode()
    assert _shown_task(html) == tasks[1].pk
    assert _counter(html, "done-today") == 0
    assert _counter(html, "left") == 1  # the skipped task is no longer in this annotator's queue
    assert Lease.objects.get(task=tasks[0]).status == LeaseStatus.SKIPPED
    tasks[0].refresh_from_db()
    assert tasks[0].status == TaskStatus.PENDING
    assert not Annotation.objects.exists()


def test_empty_queue_message(project: Project, annotator: User) -> None:
    client = _client(annotator)
    html = client.get(f"/projects/{project.pk}/label/").content.decode()
    assert "Nothing left to label" in html and _shown_task(html) is None
    assert 'class="answers"' not in html

    tasks = _tasks(project, 2)
    client.get(f"/projects/{project.pk}/label/")  # shows tasks[0], holds tasks[1]
    html = client.post(_skip_url(project, tasks[0]), {"showing": tasks[1].pk}).content.decode()
    assert "Nothing left to label" in html and _shown_task(html) is None  # nothing after tasks[1]
    html = client.post(_answer_url(project, tasks[1]), {"label": "bird"}).content.decode()
    assert "Nothing left to label" in html and _shown_task(html) is None
    assert _counter(html, "done-today") == 1
    assert _counter(html, "left") == 0


def test_left_counts_only_what_the_annotator_may_still_get(project: Project, annotator: User) -> None:
    """With overlap 2 an answered task stays pending for a second annotator, but not for this one."""
    project.overlap = 2
    project.save(update_fields=["overlap"])
    tasks = _tasks(project, 2)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    html = client.post(_answer_url(project, tasks[0]), {"label": "cat"}).content.decode()
    assert _counter(html, "left") == 1
    tasks[0].refresh_from_db()
    assert tasks[0].status == TaskStatus.PENDING


def test_left_is_the_projects_queue_above_the_cap(
    project: Project, annotator: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above LEFT_CAP the count is the project's queue, from its counters (no per-user count)."""
    from labeling.web import views

    monkeypatch.setattr(views, "LEFT_CAP", 2)
    tasks = _tasks(project, 4)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    html = client.post(_skip_url(project, tasks[0]), {"showing": tasks[1].pk}).content.decode()
    assert _counter(html, "left") == 4  # the skipped task is still in the project's queue
    html = client.post(_answer_url(project, tasks[1]), {"label": "cat", "showing": tasks[2].pk}).content.decode()
    assert _counter(html, "left") == 3  # the project's queue still: tasks 0, 2 and 3
    client.post(_answer_url(project, tasks[2]), {"label": "cat", "showing": tasks[3].pk})
    html = client.post(_answer_url(project, tasks[3]), {"label": "cat"}).content.decode()
    assert _counter(html, "left") == 0  # at the cap again: this annotator's own count (the skip is not theirs)


def test_without_app_js_the_forms_swap_in_the_next_card(project: Project, annotator: User) -> None:
    """The answer and skip buttons are plain htmx forms: without app.js (or its ``showing``) the
    response is the card to show now, which is the task the page had fetched ahead."""
    tasks = _tasks(project, 3)
    client = _client(annotator)
    page = client.get(f"/projects/{project.pk}/label/").content.decode()
    assert f'<form class="answers" hx-post="{_answer_url(project, tasks[0])}"' in page
    html = client.post(_answer_url(project, tasks[0]), {"label": "cat"}).content.decode()
    assert html.lstrip().startswith('<section class="task card" id="task"')
    assert _shown_task(html) == tasks[1].pk and f'hx-post="{_answer_url(project, tasks[1])}"' in html
    assert _counter(html, "done-today") == 1
    html = client.post(_skip_url(project, tasks[1])).content.decode()
    assert _shown_task(html) == tasks[2].pk


def test_a_strange_showing_value_is_ignored(project: Project, annotator: User) -> None:
    tasks = _tasks(project, 3)
    client = _client(annotator)
    client.get(f"/projects/{project.pk}/label/")
    for showing in ["²", "-1", "9" * 30, "x"]:
        response = client.post(_skip_url(project, tasks[0]), {"showing": showing})
        assert response.status_code == 200
