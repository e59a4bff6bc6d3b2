"""Pages: the model registry and training runs. URL patterns are included from labelloop/urls.py.

``/projects/<id>/models/`` lists the model versions with their aliases and figures, the alias
history, the runs and the dataset versions, with a manager's buttons (train now, promote, roll
back); ``/projects/<id>/runs/<run>/`` shows a run's progress bar (htmx polls it while the run is
unfinished), its gate decision check by check, its slices and lineage. Views are thin: they call
the same services as the API.
"""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from feedback import datasets, pipelines, registry, training
from feedback.models import DatasetVersion, ModelVersion, RunStatus, TrainingRun
from labeling import selectors
from labeling.api.access import ACTIONS
from labeling.models import Project

TERMINAL = {RunStatus.SUCCEEDED, RunStatus.REJECTED, RunStatus.FAILED}
RUNS_SHOWN = 30
VERSIONS_SHOWN = 30


def _project(request: HttpRequest, project_id: int, action: str = "read") -> tuple[Project, str]:
    """The project if the caller may ``action`` in it: 404 for non-members, 403 for a member
    whose role may not."""
    role = selectors.membership_role(project_id=project_id, user=request.user)
    project = Project.objects.filter(pk=project_id).first()
    if role is None or project is None:
        raise Http404
    if role != "staff" and role not in ACTIONS[action]:
        if role not in ACTIONS["read"]:
            raise Http404
        raise PermissionDenied(f"your role ({role}) may not {action} in this project")
    return project, role


def _may_manage(role: str) -> bool:
    return role == "staff" or role in ACTIONS["manage"]


def _actor(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


@login_required
@require_GET
def models_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project(request, project_id)
    aliases = registry.aliases_of(project_id=project.pk)
    models = list(
        ModelVersion.objects.filter(project=project).select_related("dataset_version", "run").order_by("-version")
    )
    rows = [{"model": m, "aliases": sorted(aliases.get(m.pk, []))} for m in models]
    runs = (
        TrainingRun.objects.filter(project=project)
        .select_related("dataset_version", "model_version")
        .order_by("-id")[:RUNS_SHOWN]
    )
    versions = (
        DatasetVersion.objects.filter(project=project).prefetch_related("tags").order_by("-version")[:VERSIONS_SHOWN]
    )
    context: dict[str, Any] = {
        "project": project,
        "rows": rows,
        "history": registry.alias_history(project_id=project.pk, limit=50),
        "runs": runs,
        "versions": versions,
        "may_manage": _may_manage(role),
        "config": training.training_config(project),
        "config_problems": pipelines.check_config(training.training_config(project)),
    }
    return render(request, "feedback/models.html", context)


@login_required
@require_GET
def model_page(request: HttpRequest, project_id: int, version: int) -> HttpResponse:
    project, role = _project(request, project_id)
    model = ModelVersion.objects.filter(project=project, version=version).select_related("dataset_version", "run")
    found = model.first()
    if found is None:
        raise Http404
    matrix = (found.metrics or {}).get("confusion_matrix") or {}
    labels = matrix.get("labels") or []
    context = {
        "project": project,
        "model": found,
        "aliases": sorted(registry.aliases_of(project_id=project.pk).get(found.pk, [])),
        "matrix_rows": list(zip(labels, matrix.get("matrix") or [], strict=False)),
        "matrix_labels": labels,
        "history": [
            e for e in registry.alias_history(project_id=project.pk) if version in (e["version"], e["previous"])
        ],
        "may_manage": _may_manage(role),
    }
    return render(request, "feedback/model_detail.html", context)


@login_required
@require_POST
def model_promote(request: HttpRequest, project_id: int, version: int) -> HttpResponse:
    project, _ = _project(request, project_id, "manage")
    reason = (request.POST.get("reason") or "").strip()[:500]
    try:
        registry.model_promote(project_id=project.pk, version=version, actor=_actor(request), reason=reason)
    except ModelVersion.DoesNotExist:
        raise Http404 from None
    messages.success(request, f"Model v{version} is the champion.")
    return HttpResponseRedirect(reverse("registry-models", args=[project.pk]))


@login_required
@require_POST
def model_rollback(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _ = _project(request, project_id, "manage")
    try:
        model = registry.model_rollback(project_id=project.pk, actor=_actor(request))
    except registry.NoRollback as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolled back: model v{model.version} is the champion.")
    return HttpResponseRedirect(reverse("registry-models", args=[project.pk]))


@login_required
@require_POST
def run_start(request: HttpRequest, project_id: int) -> HttpResponse:
    """The manager's "Train now": cut a version from the current labels and train it (the run of
    that version and config when one exists; a failed one is queued again)."""
    project, _ = _project(request, project_id, "manage")
    problems = pipelines.check_config(training.training_config(project))
    if problems:
        messages.error(request, "Cannot train: " + "; ".join(problems))
        return HttpResponseRedirect(reverse("registry-models", args=[project.pk]))
    version = datasets.dataset_version_cut(project_id=project.pk, trigger="manual", actor=_actor(request)).version
    if version.size == 0:
        messages.error(request, "Nothing to train on: the project has no labels yet.")
        return HttpResponseRedirect(reverse("registry-models", args=[project.pk]))
    run, _ = training.training_run_request(
        project=project, dataset_version=version, trigger="manual", actor=_actor(request), retry_failed=True
    )
    return HttpResponseRedirect(reverse("registry-run", args=[project.pk, run.pk]))


def _run(project: Project, run_id: int) -> TrainingRun:
    run = TrainingRun.objects.filter(project=project, pk=run_id).select_related("dataset_version", "created_by").first()
    if run is None:
        raise Http404
    return run


def _run_context(project: Project, run: TrainingRun) -> dict[str, Any]:
    model = ModelVersion.objects.filter(run=run).first()
    figures = model.metrics if model else {}
    slices = figures.get("slices") or []
    return {
        "project": project,
        "run": run,
        "model": model,
        "finished": run.status in TERMINAL,
        "percent": round(100 * (run.progress or 0.0)),
        "checks": (run.gate or {}).get("checks") or [],
        "compared_slices": [row for row in slices if row.get("champion") is not None or row.get("n")],
        "failures": figures.get("production_failures"),
        "figures": figures,
    }


@login_required
@require_GET
def run_page(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    project, role = _project(request, project_id)
    context = _run_context(project, _run(project, run_id))
    context["may_manage"] = _may_manage(role)
    return render(request, "feedback/run.html", context)


@login_required
@require_GET
def run_progress(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    """The run's status and progress bar (htmx polls it every second until the run is finished;
    then the page reloads itself to show the decision)."""
    project, _ = _project(request, project_id)
    context = _run_context(project, _run(project, run_id))
    response = render(request, "feedback/run_progress.html", context)
    if context["finished"] and request.headers.get("HX-Request") == "true":
        response["HX-Refresh"] = "true"
    return response


urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/models/", models_page, name="registry-models"),
    path("projects/<int:project_id>/models/rollback/", model_rollback, name="registry-rollback"),
    path("projects/<int:project_id>/models/<int:version>/", model_page, name="registry-model"),
    path("projects/<int:project_id>/models/<int:version>/promote/", model_promote, name="registry-promote"),
    path("projects/<int:project_id>/runs/", run_start, name="registry-run-start"),
    path("projects/<int:project_id>/runs/<int:run_id>/", run_page, name="registry-run"),
    path("projects/<int:project_id>/runs/<int:run_id>/progress/", run_progress, name="registry-run-progress"),
]
