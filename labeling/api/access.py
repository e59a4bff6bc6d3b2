"""Who may do what in a project. Non-members get 404 (the project is invisible), members without
the role get 403."""

from django.http import Http404
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from labeling.models import Project, Role, Task
from labeling.selectors import membership_role

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


def project_for(request: Request, project_id: int, action: str) -> tuple[Project, str]:
    """The project and the caller's role, if the caller may do ``action`` in it."""
    if not 0 < project_id <= MAX_ID:
        raise Http404
    role = membership_role(project_id=project_id, user=request.user)
    if role is None:
        raise Http404
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise Http404
    if role != "staff" and role not in ACTIONS[action]:
        raise PermissionDenied(f"your role ({role}) may not {action} in this project")
    return project, role


def task_for(request: Request, task_id: int, action: str) -> tuple[Task, str]:
    task = Task.objects.select_related("project").filter(pk=task_id).first()
    if task is None:
        raise Http404
    _, role = project_for(request, task.project_id, action)
    return task, role
