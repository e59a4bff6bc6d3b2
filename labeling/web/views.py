"""Server-rendered pages (Django templates + htmx): the project list and the annotator page."""

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling import queue, selectors
from labeling.api.access import ACTIONS
from labeling.models import Lease, LeaseStatus, Project, Role, Sample, Task, TaskKind, TaskStatus
from labeling.project_settings import ProjectSettings
from labeling.services.people import Conflict

# The "left in the queue" counter stops counting here ("999+"): a per-keypress count must not grow
# with the size of the project's queue.
LEFT_CAP = 999


def _signed_out_htmx_to_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the views the annotator page calls through htmx: when the session is gone (expired, or
    logged out in another tab) the XHR would follow login_required's redirect and swap the login page
    into the task card. htmx is told to load the login page instead, coming back to the annotator page."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, project_id: int, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated and request.headers.get("HX-Request") == "true":
            response = HttpResponse(status=401)
            response["HX-Redirect"] = redirect_to_login(reverse("label", args=[project_id]))["Location"]
            return response
        return view(request, project_id, **kwargs)

    return wrapped


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
    for name, kind in project.fields():
        value = data.get(name)
        if kind == "image" and not (
            isinstance(value, str) and value.startswith(("data:image/", "https://", "http://"))
        ):
            value = None
        out.append({"name": name, "kind": kind, "value": value})
    return out


def _left_for(project: Project, user: User, role: str) -> tuple[int, bool]:
    """How many pending tasks ``user`` may still be handed, the one on screen included, up to
    LEFT_CAP (and whether there are more): the kinds task_lease_next gives this role, without the
    tasks the user answered or skipped (an answered task stays pending while overlap wants more)."""
    kinds = [TaskKind.LABEL, TaskKind.GOLD]
    if role in (Role.REVIEWER, Role.MANAGER):
        kinds.append(TaskKind.REVIEW)
    done = Lease.objects.filter(task=OuterRef("pk"), user=user, status__in=[LeaseStatus.ANSWERED, LeaseStatus.SKIPPED])
    pending = Task.objects.filter(project=project, status=TaskStatus.PENDING, kind__in=kinds).filter(~Exists(done))
    n = pending.order_by()[: LEFT_CAP + 1].count()
    return min(n, LEFT_CAP), n > LEFT_CAP


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
    left, more_left = _left_for(project, user, role)
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
        "left": left,
        "more_left": more_left,
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


@_signed_out_htmx_to_login
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


@_signed_out_htmx_to_login
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
