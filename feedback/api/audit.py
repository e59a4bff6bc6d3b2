"""API views: label-quality audits, gold samples, likely label errors and consensus.

URL patterns are included from feedback/api/urls.py under /api/. Audit figures and the annotator
table are for reviewers and managers (the "export" action: they name annotators and score them);
gold samples, finding label errors, sending them to review and re-estimating consensus are for
managers. An annotator never learns which samples are gold from here.
"""

from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, F, Q
from django.http import HttpResponse
from django.urls import URLPattern, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import audits
from feedback.models import LabelIssueStatus
from labeling import audit as audit_selectors
from labeling.api.access import MAX_ID, project_for
from labeling.api.pagination import Pagination
from labeling.models import Gold, Project, Sample
from labeling.project_settings import ProjectSettings
from labeling.services import consensus, gold

MAX_GOLD_ITEMS = 10_000
MAX_ISSUE_IDS = 10_000
ISSUE_STATUSES = [s.value for s in LabelIssueStatus]


def csv_response(project: Project, report: dict[str, Any]) -> HttpResponse:
    response = HttpResponse(audits.annotators_csv(report), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="project-{project.pk}-annotators.csv"'
    return response


class AuditView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "export")
        return Response(audits.project_audit_report(project=project))


class AnnotatorsCsvView(APIView):
    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, project_id: int) -> HttpResponse:
        project, _ = project_for(request, project_id, "export")
        return csv_response(project, audit_selectors.audit_report(project=project))


class AuditRefreshView(APIView):
    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        """Recompute the stored audit figures now (in the worker). A project with few answers is
        audited live by every GET anyway."""
        project, _ = project_for(request, project_id, "manage")
        audits.audit_refresh_request(project_id=project.pk)
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)


def _gold_items(project: Project, data: Any) -> list[tuple[int, str]]:
    """(sample_id, label) of a valid body; raises ValidationError naming each bad item by index."""
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValidationError({"items": 'expected a non-empty list of {"external_id", "label"}'})
    if len(items) > MAX_GOLD_ITEMS:
        raise ValidationError({"items": f"at most {MAX_GOLD_ITEMS} items per request"})
    errors: dict[str, Any] = {}
    wanted: list[tuple[int, str, str]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors[str(i)] = {"item": 'expected {"external_id", "label"}'}
            continue
        external_id, label = item.get("external_id"), item.get("label")
        problems = {}
        if not isinstance(external_id, str) or not external_id or "\x00" in external_id or len(external_id) > 255:
            problems["external_id"] = "must be the external_id of a sample of this project"
        if not isinstance(label, str) or label not in project.labels:
            problems["label"] = f"must be one of {', '.join(project.labels)}"
        if problems:
            errors[str(i)] = problems
        else:
            wanted.append((i, str(external_id), str(label)))
    known: dict[str, int] = {}
    names = sorted({ext for _, ext, _ in wanted})
    for start in range(0, len(names), 2000):
        known.update(
            Sample.objects.filter(project=project, external_id__in=names[start : start + 2000]).values_list(
                "external_id", "pk"
            )
        )
    for i, ext, _ in wanted:
        if ext not in known:
            errors[str(i)] = {"external_id": "no sample with this external_id in this project"}
    if errors:
        raise ValidationError({"items": errors})
    return [(known[ext], label) for _, ext, label in wanted]


class GoldView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "manage")
        rows = (
            Gold.objects.filter(project=project)
            .annotate(
                n_answers=Count("sample__annotations"),
                n_correct=Count("sample__annotations", filter=Q(sample__annotations__label=F("label"))),
            )
            .values("sample__external_id", "label", "created_at", "n_answers", "n_correct")
            .order_by("sample_id")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        out = [
            {
                "external_id": row["sample__external_id"],
                "label": row["label"],
                "created_at": row["created_at"],
                "n_answers": row["n_answers"],
                "accuracy": round(row["n_correct"] / row["n_answers"], 4) if row["n_answers"] else None,
            }
            for row in page or []
        ]
        return paginator.get_paginated_response(out)

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "manage")
        items = _gold_items(project, request.data)
        actor = request.user if isinstance(request.user, User) else None
        result = gold.gold_set(project_id=project.pk, items=items, actor=actor)
        return Response(
            {
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "cancelled_tasks": result.cancelled_tasks,
            }
        )


class GoldDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int, external_id: str) -> Response:
        """Stop treating the sample as gold (204 also when it was not gold)."""
        project, _ = project_for(request, project_id, "manage")
        sample = (
            None if "\x00" in external_id else Sample.objects.filter(project=project, external_id=external_id).first()
        )
        if sample is None:
            raise NotFound(f"no sample {external_id!r} in this project")
        gold.gold_remove(project=project, sample_ids=[sample.pk])
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelIssuesView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=ISSUE_STATUSES, required=False)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "export")
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in ISSUE_STATUSES:
            raise ValidationError({"status": f"must be one of {', '.join(ISSUE_STATUSES)}"})
        paginator = Pagination()
        page = paginator.paginate_queryset(
            audits.label_issues_list(project_id=project.pk, status=wanted), request, view=self
        )
        return paginator.get_paginated_response([audits.issue_out(issue) for issue in page or []])


class LabelIssuesFindView(APIView):
    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "manage")
        version = audits.label_issues_request(project_id=project.pk)
        if version is None:
            return Response(
                {"detail": "this project has no dataset version yet: cut one first"}, status=status.HTTP_409_CONFLICT
            )
        return Response({"dataset_version": version.version, "status": "queued"}, status=status.HTTP_202_ACCEPTED)


class LabelIssuesReviewView(APIView):
    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, project_id: int) -> Response:
        """Send open label issues to review: those of ``ids``, or all of them without a body."""
        project, _ = project_for(request, project_id, "manage")
        data = request.data
        if data in (None, "") or (isinstance(data, dict) and not data):
            ids = None
        elif isinstance(data, dict) and "ids" in data:
            ids = data["ids"]
            if (
                not isinstance(ids, list)
                or len(ids) > MAX_ISSUE_IDS
                or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids)
            ):
                raise ValidationError({"ids": f"must be a list of at most {MAX_ISSUE_IDS} issue ids"})
        else:
            raise ValidationError({"body": 'expected {"ids": [...]} or no body (every open issue)'})
        sent = audits.label_issues_send_to_review(project_id=project.pk, issue_ids=ids)
        return Response({"sent": sent})


class ConsensusReestimateView(APIView):
    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        """Re-estimate Dawid-Skene over the project now (in the worker); only for dawid_skene projects."""
        project, _ = project_for(request, project_id, "manage")
        if ProjectSettings.of(project.settings).consensus["method"] != "dawid_skene":
            return Response(
                {"detail": "this project decides by majority vote: set consensus.method to dawid_skene first"},
                status=status.HTTP_409_CONFLICT,
            )
        consensus.consensus_reestimate_now(project_id=project.pk)
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)


P = "projects/<int:project_id>/"
urlpatterns: list[URLPattern] = [
    path(P + "audit/", AuditView.as_view(), name="api-audit"),
    path(P + "audit/annotators.csv", AnnotatorsCsvView.as_view(), name="api-audit-annotators-csv"),
    path(P + "audit/refresh/", AuditRefreshView.as_view(), name="api-audit-refresh"),
    path(P + "gold/", GoldView.as_view(), name="api-gold"),
    path(P + "gold/<path:external_id>/", GoldDetailView.as_view(), name="api-gold-detail"),
    path(P + "label-issues/", LabelIssuesView.as_view(), name="api-label-issues"),
    path(P + "label-issues/find/", LabelIssuesFindView.as_view(), name="api-label-issues-find"),
    path(P + "label-issues/review/", LabelIssuesReviewView.as_view(), name="api-label-issues-review"),
    path(P + "consensus/reestimate/", ConsensusReestimateView.as_view(), name="api-consensus-reestimate"),
]
