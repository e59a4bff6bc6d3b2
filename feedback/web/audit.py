"""Pages: the audit page (agreement, annotators, confusion, likely label errors, gold) and a
sample's page (its answers and the trail of its final label). Included from labelloop/urls.py.

Reviewers and managers may read them (they name and score annotators); the buttons (find label
errors, send them to review, gold samples) are for managers. Non-members get 404, like the API.
Every POST redirects back (no page is rendered by a POST), and no page edits the trail.
"""

import csv
import io
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from feedback import audits
from feedback.web import audit_charts
from labeling import audit as audit_selectors
from labeling import selectors
from labeling.api.access import ACTIONS
from labeling.models import Gold, Project, Sample
from labeling.services import gold

MAX_GOLD_LINES = 10_000


def _project(request: HttpRequest, project_id: int, action: str) -> tuple[Project, str]:
    role = selectors.membership_role(project_id=project_id, user=request.user)
    project = Project.objects.filter(pk=project_id).first() if role is not None else None
    if role is None or project is None:
        raise Http404
    if role != "staff" and role not in ACTIONS[action]:
        raise PermissionDenied
    return project, role


def _back(project: Project) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("audit", args=[project.pk]))


def _charts(report: dict[str, Any], chosen: str | None) -> dict[str, Any]:
    labels = report["labels"]
    buckets = report["agreement_over_time"]
    same_day = len({row["start"][:10] for row in buckets}) < len(buckets)
    over_time = [
        (row["start"][5:16].replace("T", " ") if same_day else row["start"][:10], row["krippendorff_alpha"])
        for row in buckets
    ]
    accuracy = [
        (row["username"], row["gold_accuracy"], row["estimated_accuracy"], row["flagged"])
        for row in report["annotators"]
    ]
    by_name = {row["username"]: row for row in report["annotators"]}
    if chosen in by_name:
        matrix = by_name[chosen]["confusion_matrix"]
        heat_title = f"Dawid-Skene confusion matrix of {chosen}: P(answer | true label)"
        row_title, digits = "true label", 2
    else:
        chosen = None
        counts = report["confusion"]["counts"]
        matrix = [[v / (sum(row) or 1) for v in row] for row in counts]
        heat_title = "All answers by consensus label: share of each answer"
        row_title, digits = "consensus label", 2
    return {
        "chosen": chosen,
        "agreement_chart": audit_charts.line_chart(
            over_time,
            title="Krippendorff's alpha over time (items by the time of their last answer)",
            y_label="alpha",
            y_min=0.0,
        ),
        "accuracy_chart": audit_charts.bar_chart(
            accuracy,
            title="Accuracy per annotator",
            first="on gold",
            second="estimated (Dawid-Skene)",
            threshold=report["flag_below"],
        ),
        "confusion_chart": audit_charts.heatmap(
            matrix,
            rows=labels,
            columns=labels,
            title=heat_title,
            row_title=row_title,
            column_title="answered label",
            digits=digits,
        ),
    }


@login_required
@require_GET
def audit_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project, role = _project(request, project_id, "export")
    report = audits.project_audit_report(project=project)
    context = {
        "project": project,
        "report": report,
        "is_manager": role in ("manager", "staff"),
        "per_label": [(label, report["agreement"]["per_label"][label]) for label in report["labels"]],
        "pairs": sorted(report["agreement"]["pairwise_cohen_kappa"], key=lambda p: -p["n"])[:50],
        "gold_count": Gold.objects.filter(project=project).count(),
        **_charts(report, request.GET.get("annotator")),
    }
    return render(request, "feedback/audit.html", context)


@login_required
@require_GET
def audit_annotators_csv(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _ = _project(request, project_id, "export")
    response = HttpResponse(
        audits.annotators_csv(audit_selectors.audit_report(project=project)), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="project-{project.pk}-annotators.csv"'
    return response


@login_required
@require_POST
def audit_find_issues(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _ = _project(request, project_id, "manage")
    version = audits.label_issues_request(project_id=project.pk)
    if version is None:
        messages.error(request, "This project has no dataset version yet: cut one first.")
    else:
        messages.info(request, f"Looking for likely label errors in dataset version {version.version}.")
    return _back(project)


@login_required
@require_POST
def audit_refresh(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _ = _project(request, project_id, "manage")
    audits.audit_refresh_request(project_id=project.pk)
    messages.info(request, "Recomputing the audit figures in the background.")
    return _back(project)


@login_required
@require_POST
def audit_review_issues(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _ = _project(request, project_id, "manage")
    sent = audits.label_issues_send_to_review(project_id=project.pk)
    messages.info(request, f"Sent {sent} likely label error{'s' if sent != 1 else ''} to review.")
    return _back(project)


def _parse_gold(project: Project, text: str) -> tuple[list[tuple[int, str]], list[str]]:
    """Lines of ``external_id,label`` (CSV, so ids may be quoted)."""
    errors: list[str] = []
    wanted: list[tuple[int, str, str]] = []
    lines = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if len(lines) > MAX_GOLD_LINES:
        return [], [f"at most {MAX_GOLD_LINES} lines at a time"]
    for number, row in enumerate(lines, start=1):
        if len(row) != 2:
            errors.append(f"line {number}: expected external_id,label")
            continue
        external_id, label = row[0].strip(), row[1].strip()
        if label not in project.labels:
            errors.append(f"line {number}: {label!r} is not a label of this project")
            continue
        wanted.append((number, external_id, label))
    known = dict(
        Sample.objects.filter(project=project, external_id__in=[e for _, e, _ in wanted if "\x00" not in e])
        .values_list("external_id", "pk")
        .iterator()
    )
    out = []
    for number, external_id, label in wanted:
        if external_id not in known:
            errors.append(f"line {number}: no sample {external_id!r} in this project")
        else:
            out.append((known[external_id], label))
    return out, errors


@login_required
@require_POST
def audit_gold(request: HttpRequest, project_id: int) -> HttpResponse:
    project, _ = _project(request, project_id, "manage")
    items, errors = _parse_gold(project, request.POST.get("gold", ""))
    if errors:
        for problem in errors[:10]:
            messages.error(request, problem)
        messages.error(request, "No gold sample was stored: fix the lines above and send them again.")
    elif not items:
        messages.error(request, "Nothing to store: one external_id,label per line.")
    else:
        actor = request.user if isinstance(request.user, User) else None
        result = gold.gold_set(project_id=project.pk, items=items, actor=actor)
        messages.info(request, f"Gold samples: {result.created} new, {result.updated} changed.")
    return _back(project)


@login_required
@require_GET
def sample_page(request: HttpRequest, project_id: int, external_id: str) -> HttpResponse:
    project, role = _project(request, project_id, "export")
    sample = (
        None if "\x00" in external_id else selectors.sample_by_external_id(project=project, external_id=external_id)
    )
    if sample is None:
        raise Http404
    history = selectors.sample_history(sample=sample)
    is_manager = role in ("manager", "staff")
    kinds = {task["id"]: task["kind"] for task in history["tasks"]}
    answers = [
        {**answer, "kind": kinds.get(answer["task_id"], "") if is_manager else ""} for answer in history["annotations"]
    ]
    issues = audits.label_issues_list(project_id=project.pk).filter(sample=sample)
    data = sample.data or {}
    return render(
        request,
        "feedback/sample.html",
        {
            "project": project,
            "sample": sample,
            "fields": [(name, kind, data.get(name)) for name, kind in project.fields()],
            "label": history["label"],
            "answers": answers,
            "trail": history["label_changes"],
            "tasks": history["tasks"] if is_manager else [],
            "gold": Gold.objects.filter(sample=sample).first() if is_manager else None,
            "issues": [audits.issue_out(issue) for issue in issues],
            "is_manager": is_manager,
        },
    )


urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/audit/", audit_page, name="audit"),
    path("projects/<int:project_id>/audit/annotators.csv", audit_annotators_csv, name="audit-annotators-csv"),
    path("projects/<int:project_id>/audit/refresh/", audit_refresh, name="audit-refresh"),
    path("projects/<int:project_id>/audit/label-issues/find/", audit_find_issues, name="audit-find-issues"),
    path("projects/<int:project_id>/audit/label-issues/review/", audit_review_issues, name="audit-review-issues"),
    path("projects/<int:project_id>/audit/gold/", audit_gold, name="audit-gold"),
    path("projects/<int:project_id>/samples/<path:external_id>/", sample_page, name="sample"),
]
