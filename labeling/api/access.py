"""Who may do what in a project. Non-members get 404 (the project is invisible), members without
the role get 403. Each check is one query: the project (or task) with the caller's role."""

from django.db.models import OuterRef, Subquery
from django.http import Http404
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from labeling.models import Membership, Project, Role, Task

READ = frozenset({Role.ANNOTATOR, Role.REVIEWER, Role.MANAGER})
ACTIONS: dict[str, frozenset[str]] = {
    "read": READ,
    "label": READ,
    "predict": READ,
    "ingest": frozenset({Role.INGEST, Role.MANAGER}),
    "export": frozenset({Role.REVIEWER, Role.MANAGER}),
    "manage": frozenset({Role.MANAGER}),
}
# Ids are 64-bit; a larger number in a URL names nothing (and SQLite cannot even bind it).
MAX_ID = 2**63 - 1


def _role_of(request: Request, project_ref: str) -> Subquery:
    user_id = request.user.pk if request.user.is_authenticated else -1
    return Subquery(Membership.objects.filter(project_id=OuterRef(project_ref), user_id=user_id).values("role")[:1])


def _check(request: Request, role: str | None, action: str) -> str:
    if getattr(request.user, "is_staff", False):
        return "staff"
    if role is None:
        raise Http404
    if role not in ACTIONS[action]:
        raise PermissionDenied(f"your role ({role}) may not {action} in this project")
    return role


def project_for(request: Request, project_id: int, action: str) -> tuple[Project, str]:
    """The project and the caller's role, if the caller may do ``action`` in it."""
    if not 0 < project_id <= MAX_ID:
        raise Http404
    project = Project.objects.filter(pk=project_id).annotate(caller_role=_role_of(request, "pk")).first()
    if project is None:
        raise Http404
    return project, _check(request, project.caller_role, action)


def task_for(request: Request, task_id: int, action: str) -> tuple[Task, str]:
    """The task (with its project) and the caller's role in that project."""
    if not 0 < task_id <= MAX_ID:
        raise Http404
    task = (
        Task.objects.select_related("project")
        .filter(pk=task_id)
        .annotate(caller_role=_role_of(request, "project_id"))
        .first()
    )
    if task is None:
        raise Http404
    return task, _check(request, task.caller_role, action)
