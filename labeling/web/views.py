"""Server-rendered pages (Django templates + htmx): the project list and the annotator page."""

from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from labeling import queue, selectors
from labeling.api.access import ACTIONS
from labeling.models import Project, Sample, Task
from labeling.project_settings import ProjectSettings
from labeling.services.people import Conflict


def _project(request: HttpRequest, project_id: int) -> tuple[Project, str]:
    role = selectors.membership_role(project_id=project_id, user=request.user)
    project = Project.objects.filter(pk=project_id).first()
    if role is None or project is None or (role != "staff" and role not in ACTIONS["label"]):
        raise Http404
    return project, role


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _fields(project: Project, sample: Sample) -> list[dict[str, Any]]:
    """The sample's fields in schema order, each with its kind, for the template to lay out."""
    data = sample.data or {}
    out = []
    for name, kind in project.schema.items():
        value = data.get(name)
        if kind == "image" and not (
            isinstance(value, str) and value.startswith(("data:image/", "https://", "http://"))
        ):
            value = None
        out.append({"name": name, "kind": kind, "value": value})
    return out


def _task_context(request: HttpRequest, project: Project, role: str, message: str = "") -> dict[str, Any]:
    user = _user(request)
    held = selectors.task_held_by(project=project, user=user)
    task: Task | None
    sample: Sample | None
    expires_at: datetime | None
    if held is not None:
        task, sample, expires_at = held.task, held.task.sample, held.expires_at
    else:
        leased = queue.task_lease_next(project=project, user=user, role=role)
        task, sample, expires_at = (leased.task, leased.sample, leased.expires_at) if leased else (None, None, None)
    show = ProjectSettings.of(project.settings).queue["show_suggestion"]
    return {
        "project": project,
        "task": task,
        "sample": sample,
        "fields": _fields(project, sample) if sample else [],
        "expires_at": expires_at,
        "suggestion": sample.suggestion if (sample and show) else None,
        "labels": list(enumerate(project.labels, start=1)),
        "message": message,
        "done_today": selectors.answered_today(user=user, project=project),
        "left": selectors.project_counts(project=project)["queued"],
    }


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = selectors.projects_for_user(user=request.user).order_by("id")
    return render(request, "labeling/home.html", {"projects": projects})


@login_required
@require_GET
def label_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project(request, project_id)
    return render(request, "labeling/label.html", _task_context(request, project, role))


@login_required
@require_POST
def label_answer(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    project, role = _project(request, project_id)
    label = request.POST.get("label", "")
    message = ""
    if label not in project.labels:
        message = "That is not a label of this project."
    else:
        duration = request.POST.get("duration_ms", "")
        try:
            queue.annotation_submit(
                task_id=_task_id(project, task_id),
                user=_user(request),
                label=label,
                duration_ms=int(duration) if duration.isdigit() and int(duration) < 86_400_000 else None,
            )
        except Conflict as exc:
            message = f"Not saved: {exc}. Here is the next task."
    return render(request, "labeling/_task.html", _task_context(request, project, role, message))


@login_required
@require_POST
def label_skip(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    project, role = _project(request, project_id)
    message = ""
    try:
        queue.task_skip(task_id=_task_id(project, task_id), user=_user(request))
    except Conflict as exc:
        message = f"Not skipped: {exc}."
    return render(request, "labeling/_task.html", _task_context(request, project, role, message))


def _task_id(project: Project, task_id: int) -> int:
    if not Task.objects.filter(pk=task_id, project=project).exists():
        raise Http404
    return task_id
