"""Server-rendered pages (Django templates + htmx): the project list and the annotator's desk.

The desk shows one task and holds the next one, already leased and rendered, in a hidden element:
an answer or a skip swaps it in at once (static/labelloop/app.js), while the request that stores the
answer comes back with the task after it. So the page never waits for the server between tasks.
The reviewer's page and the manager's dashboard are in ``labeling.web.review`` and
``labeling.web.dashboard``.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling import queue, selectors
from labeling.api.access import ACTIONS
from labeling.models import Project, Role, Sample, Task, TaskKind
from labeling.project_settings import ProjectSettings
from labeling.services.people import Conflict

# The "left in the queue" counter stops counting exactly here ("999+"): a per-keypress count must
# not grow with the size of the project's queue.
LEFT_CAP = 999
MAX_DURATION_MS = 86_400_000


def signed_out_htmx_to_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the views the pages call through htmx: when the session is gone (expired, or logged out
    in another tab) the XHR would follow login_required's redirect and swap the login page into the
    task card. htmx is told to load the login page instead, coming back to the page it came from."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, project_id: int, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated and request.headers.get("HX-Request") == "true":
            back = request.headers.get("HX-Current-URL", "")
            path = back.split("://", 1)[-1].partition("/")[2]
            target = "/" + path if path.startswith("projects/") else reverse("label", args=[project_id])
            response = HttpResponse(status=401)
            response["HX-Redirect"] = redirect_to_login(target)["Location"]
            return response
        return view(request, project_id, **kwargs)

    return wrapped


def member_project(request: HttpRequest, project_id: int, action: str) -> tuple[Project, str]:
    """The project and the caller's role when they may do ``action`` in it; 404 otherwise (a page
    never tells a stranger that a project exists)."""
    role = selectors.membership_role(project_id=project_id, user=request.user)
    project = Project.objects.filter(pk=project_id).first() if role is not None else None
    if role is None or project is None or (role != "staff" and role not in ACTIONS[action]):
        raise Http404
    return project, role


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def sample_fields(project: Project, sample: Sample) -> list[dict[str, Any]]:
    """The sample's fields in schema order, each with its kind, for the templates to lay out.
    Images only from data: URLs or http(s) (never javascript: and the like)."""
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


@dataclass(frozen=True)
class Card:
    """One task as the desk shows it."""

    task_id: int
    external_id: str
    fields: list[dict[str, Any]]
    suggestion: dict[str, Any] | None
    expires_at: datetime


def _card(project: Project, task: Task, sample: Sample, expires_at: datetime, show: bool) -> Card:
    suggestion = sample.suggestion if show and isinstance(sample.suggestion, dict) else None
    return Card(task.pk, sample.external_id, sample_fields(project, sample), suggestion, expires_at)


def _take(project: Project, user: User, role: str, exclude: set[int]) -> Card | None:
    """A task for the desk: one the user already holds (a reload, or the task fetched ahead of one
    they undid) other than ``exclude``, oldest first, or else a new lease. Review tasks are decided
    on the reviewer's page, never here."""
    show = bool(ProjectSettings.of(project.settings).queue["show_suggestion"])
    for lease in selectors.leases_held(project=project, user=user):
        if lease.task_id not in exclude and lease.task.kind != TaskKind.REVIEW:
            return _card(project, lease.task, lease.task.sample, lease.expires_at, show)
    leased = queue.task_lease_next(project=project, user=user, role=role, reviews=False)
    if leased is None:
        return None
    return _card(project, leased.task, leased.sample, leased.expires_at, show)


def _showing(request: HttpRequest) -> set[int]:
    """The task the page shows now (sent by app.js), which must not come back as the next one."""
    value = request.POST.get("showing", "")
    return {int(value)} if value.isascii() and value.isdigit() and len(value) < 19 else set()


def _progress(project: Project, user: User) -> dict[str, Any]:
    """Labeled today (the user's own rows, by index) and left in the queue: what this user may
    still be handed while that is under LEFT_CAP, else the project's queue from its counters."""
    left, project_wide = selectors.left_for(project=project, user=user, reviews=False, cap=LEFT_CAP)
    return {
        "done_today": selectors.answered_today(user=user, project=project),
        "left": left,
        "left_is_project": project_wide,
    }


def _context(request: HttpRequest, project: Project, role: str, **extra: Any) -> dict[str, Any]:
    user = _user(request)
    queue_settings = ProjectSettings.of(project.settings).queue
    return {
        "project": project,
        "labels": list(enumerate(project.labels, start=1)),
        "undo_seconds": queue_settings["undo_seconds"],
        "lease_seconds": queue_settings["lease_seconds"],
        "message": "",
        "undo": None,
        **_progress(project, user),
        **extra,
    }


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The caller's projects; an annotator of a single project lands on its desk straight away."""
    projects = list(selectors.projects_for_user(user=request.user).order_by("id")[:200])
    # One indexed read each, for the links a role may follow: a person is in few projects.
    roles = {p.pk: selectors.membership_role(project_id=p.pk, user=request.user) for p in projects}
    if len(projects) == 1 and roles[projects[0].pk] == Role.ANNOTATOR:
        return redirect("label", project_id=projects[0].pk)
    items = [
        {
            "project": p,
            "reviews": roles.get(p.pk) in {"staff", *ACTIONS["export"]},
            "manages": roles.get(p.pk) in {"staff", *ACTIONS["manage"]},
        }
        for p in projects
    ]
    return render(request, "labeling/home.html", {"items": items})


@login_required
@require_GET
def label_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The desk: the task on screen and the one after it, both leased (held ones first, so a reload
    shows the same task again)."""
    project, role = member_project(request, project_id, "label")
    user = _user(request)
    current = _take(project, user, role, set())
    following = _take(project, user, role, {current.task_id}) if current else None
    context = _context(request, project, role, current=current, following=following)
    return render(request, "labeling/label.html", context)


def _next_fragment(request: HttpRequest, project: Project, role: str, **extra: Any) -> HttpResponse:
    """After an answer or a skip. From app.js (which sends ``showing``): the task to hold after the
    one it now shows, with the progress, notice and undo bar. From the plain htmx form (the page
    without app.js, or a client of its own): the task card to show now, in place of the old one."""
    if "showing" not in request.POST:
        current = _take(project, _user(request), role, set())
        return render(request, "labeling/_task.html", _context(request, project, role, current=current, **extra))
    following = _take(project, _user(request), role, _showing(request))
    return render(request, "labeling/_next.html", _context(request, project, role, following=following, **extra))


def _duration(value: str) -> int | None:
    """The time the page says the annotator took, if it is a plausible number of milliseconds."""
    if not (value.isascii() and value.isdigit() and len(value) < 12):
        return None
    return int(value) if int(value) < MAX_DURATION_MS else None


def _why_not(exc: Conflict, doing: str) -> str:
    text = str(exc)
    if "expired" in text:
        return f"Not {doing}: your lease on that task expired, so it went back to the queue for others."
    return f"Not {doing}: {text}."


def _task_of(project: Project, task_id: int) -> int:
    if not 0 < task_id < 2**63 or not Task.objects.filter(pk=task_id, project=project).exists():
        raise Http404
    return task_id


@signed_out_htmx_to_login
@login_required
@require_POST
def label_answer(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    project, role = member_project(request, project_id, "label")
    label = request.POST.get("label", "")
    message, undo = "", None
    if label not in project.labels:
        message = "Not saved: that is not a label of this project."
    else:
        duration = request.POST.get("duration_ms", "")
        try:
            queue.annotation_submit(
                task_id=_task_of(project, task_id),
                user=_user(request),
                label=label,
                duration_ms=_duration(duration),
            )
            undo = {"task_id": task_id, "label": label}
        except Conflict as exc:
            message = _why_not(exc, "saved")
    return _next_fragment(request, project, role, message=message, undo=undo)


@signed_out_htmx_to_login
@login_required
@require_POST
def label_skip(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    project, role = member_project(request, project_id, "label")
    message = ""
    try:
        queue.task_skip(task_id=_task_of(project, task_id), user=_user(request))
    except Conflict as exc:
        message = _why_not(exc, "skipped")
    return _next_fragment(request, project, role, message=message)


@signed_out_htmx_to_login
@login_required
@require_POST
def label_next(request: HttpRequest, project_id: int) -> HttpResponse:
    """Fetch ahead: the task to hold after the one on screen (after an empty queue filled up)."""
    project, role = member_project(request, project_id, "label")
    return _next_fragment(request, project, role)


@signed_out_htmx_to_login
@login_required
@require_POST
def label_undo(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    """Take back the answer on ``task_id`` (within queue.undo_seconds): it is on screen again, and
    the task that was on screen becomes the next one. Re-renders the whole desk."""
    project, role = member_project(request, project_id, "label")
    user = _user(request)
    message = ""
    current: Card | None = None
    show = bool(ProjectSettings.of(project.settings).queue["show_suggestion"])
    try:
        leased = queue.annotation_undo(task_id=_task_of(project, task_id), user=user)
        current = _card(project, leased.task, leased.sample, leased.expires_at, show)
        message = "Answer taken back: label this task again."
    except Conflict as exc:
        message = f"Not undone: {exc}."
    if current is None:
        current = _take(project, user, role, set())
    showing = _showing(request)
    held = {lease.task_id: lease for lease in selectors.leases_held(project=project, user=user)}
    following: Card | None = None
    for task_id_shown in showing:
        lease = held.get(task_id_shown)
        if lease is not None and (current is None or lease.task_id != current.task_id):
            following = _card(project, lease.task, lease.task.sample, lease.expires_at, show)
    if following is None and current is not None:
        following = _take(project, user, role, {current.task_id})
    context = _context(request, project, role, current=current, following=following, message=message)
    return render(request, "labeling/_desk.html", context)
