"""The reviewer's page: samples whose annotators disagreed or that were sent to review, each with
every answer and its history, decided with a label and a reason (kept in the sample's history)."""

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labeling import selectors
from labeling.models import Project
from labeling.services import review
from labeling.services.people import Conflict
from labeling.web.views import member_project, sample_fields, signed_out_htmx_to_login

PAGE = 25
SHOWS = ("pending", "disagreements")


def _items(project: Project, show: str) -> list[selectors.ReviewItem]:
    if show == "disagreements":
        return selectors.disagreements(project=project, limit=PAGE)
    return selectors.reviews_pending(project=project, limit=PAGE)


def _entry(project: Project, item: selectors.ReviewItem) -> dict[str, object]:
    return {"item": item, "fields": sample_fields(project, item.sample)}


@login_required
@require_GET
def review_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Reviewers, managers and staff: the first PAGE items of either list (bounded reads)."""
    project, _ = member_project(request, project_id, "export")
    show = request.GET.get("show", "pending")
    if show not in SHOWS:
        show = "pending"
    entries = [_entry(project, item) for item in _items(project, show)]
    context = {"project": project, "show": show, "entries": entries, "labels": project.labels}
    return render(request, "labeling/review.html", context)


@signed_out_htmx_to_login
@login_required
@require_POST
def review_decide(request: HttpRequest, project_id: int, task_id: int) -> HttpResponse:
    """Decide one item; answers with the item as it is now (htmx) or back to the list."""
    project, _ = member_project(request, project_id, "export")
    if not 0 < task_id < 2**63:
        raise Http404
    item = selectors.review_item(project=project, task_id=task_id)
    if item is None or item.task is None:
        raise Http404
    label = request.POST.get("label", "")
    why = request.POST.get("why", "").strip()
    message, status = "", 200
    if label not in project.labels:
        message, status = "Choose one of the project's labels.", 400
    elif not why or "\x00" in why:
        message, status = "Say why (in plain text): the reason is kept in the sample's history.", 400
    else:
        assert isinstance(request.user, User)
        try:
            review.review_decide(task_id=task_id, reviewer=request.user, label=label, why=why)
            message = f"Decided: {label}."
        except Conflict as exc:
            message, status = f"Not decided: {exc}.", 409
        item = selectors.review_item(project=project, task_id=task_id) or item
    if request.headers.get("HX-Request") != "true":
        return redirect("review", project_id=project.pk)
    context = {"project": project, "entry": _entry(project, item), "labels": project.labels, "message": message}
    # htmx swaps only 2xx answers: a refusal is shown in the item, with its status in a header.
    response = render(request, "labeling/_review_item.html", context)
    response["X-Review-Status"] = str(status)
    return response
