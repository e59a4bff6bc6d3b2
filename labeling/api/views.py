"""Labeling API views: parse input, call one service or selector, render output."""

from typing import Any

import orjson
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import queue, selectors
from labeling.api import serializers as s
from labeling.api.access import ACTIONS, MAX_ID, project_for, task_for
from labeling.api.pagination import Pagination
from labeling.models import Project
from labeling.services import people, projects, review

# Counts that live on the feedback side are added by the feedback app (labeling never imports it).
extra_counts: list[Any] = []


def _valid(serializer_class: type[s.serializers.Serializer], request: Request, **kwargs: Any) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ValidationError({"body": "expected a JSON object"})
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class TokenView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(request=s.TokenRequest, responses=s.TokenResponse, auth=[])
    def post(self, request: Request) -> Response:
        data = _valid(s.TokenRequest, request)
        user = authenticate(request=request._request, username=data["username"], password=data["password"])
        if user is None or not isinstance(user, User):
            raise ValidationError({"credentials": "unknown username or wrong password"})
        key, expires_at = people.token_issue(user=user)
        return Response({"token": key, "expires_at": expires_at})


class UsersView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=s.UserCreate, responses={201: s.UserOut})
    def post(self, request: Request) -> Response:
        data = _valid(s.UserCreate, request)
        user = people.user_create(username=data["username"], password=data["password"])
        return Response({"id": user.pk, "username": user.username}, status=status.HTTP_201_CREATED)


class MembersView(APIView):
    @extend_schema(responses=s.MemberOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "read")
        members = project.memberships.select_related("user").order_by("id")
        return Response(s.MemberOut(members, many=True).data)

    @extend_schema(request=s.MemberIn, responses={201: s.MemberOut, 200: s.MemberOut})
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "manage")
        data = _valid(s.MemberIn, request)
        user = User.objects.filter(username=data["username"]).first()
        if user is None:
            raise ValidationError({"username": "no such user"})
        membership, created = people.member_set(project=project, user=user, role=data["role"])
        return Response(s.MemberOut(membership).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def project_counts(project: Project) -> dict[str, int]:
    counts = selectors.project_counts(project=project)
    for add in extra_counts:
        counts.update(add(project))
    counts.setdefault("dataset_versions", 0)
    counts.setdefault("model_versions", 0)
    return counts


class ProjectsView(APIView):
    @extend_schema(responses=s.ProjectOut(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.projects_for_user(user=request.user).order_by("id"), request, view=self
        )
        return paginator.get_paginated_response(s.ProjectOut(page, many=True).data)

    @extend_schema(request=s.ProjectCreate, responses={201: s.ProjectDetailOut})
    def post(self, request: Request) -> Response:
        data = _valid(s.ProjectCreate, request)
        assert isinstance(request.user, User)
        settings: dict[str, Any] = {group: data.pop(group) for group in s.SETTINGS_GROUPS if group in data}
        project = projects.project_create(creator=request.user, settings=settings, **data)
        body = s.ProjectDetailOut(project, context={"counts": project_counts(project)}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    @extend_schema(responses=s.ProjectDetailOut)
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "read")
        return Response(s.ProjectDetailOut(project, context={"counts": project_counts(project)}).data)

    @extend_schema(request=s.ProjectUpdate, responses=s.ProjectDetailOut)
    def patch(self, request: Request, project_id: int) -> Response:
        project_for(request, project_id, "manage")
        data = _valid(s.ProjectUpdate, request)
        project = projects.project_update(project_id=project_id, changes=data)
        return Response(s.ProjectDetailOut(project, context={"counts": project_counts(project)}).data)


class QueueView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="how many (1..1000, default 50)")],
        responses=s.QueueItem(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, role = project_for(request, project_id, "read")
        limit = _limit(request, default=50, most=1000)
        tasks = selectors.queue_list(
            project=project, limit=limit, reviews=role == "staff" or role in queue.TAKES_REVIEWS
        )
        return Response(s.QueueItem(tasks, many=True).data)


def _limit(request: Request, *, default: int, most: int) -> int:
    try:
        limit = int(request.query_params.get("limit", str(default)))
    except ValueError:
        raise ValidationError({"limit": "must be an integer"}) from None
    if not 1 <= limit <= most:
        raise ValidationError({"limit": f"must be between 1 and {most}"})
    return limit


def _refuse(refused: str | None, action: str) -> None:
    if refused == queue.Access.NOT_FOUND:
        raise Http404
    if refused == queue.Access.FORBIDDEN:
        raise PermissionDenied(f"your role may not {action} in this project")


def _json(body: dict[str, Any], status_code: int = 200) -> HttpResponse:
    """The hot paths' responses, rendered once with orjson (DRF's renderer re-walks the data)."""
    return HttpResponse(orjson.dumps(body), status=status_code, content_type="application/json")


def next_task_body(leased: queue.LeasedTask) -> dict[str, Any]:
    """What an annotator is shown of a leased task; a gold task looks like any other."""
    return {
        "task_id": leased.task.pk,
        "external_id": leased.sample.external_id,
        "data": leased.sample.data,
        "reason": leased.reason,
        "kind": queue.shown_kind(leased.task),
        "suggestion": leased.suggestion,
        "lease_expires_at": leased.expires_at.isoformat().replace("+00:00", "Z"),
    }


class TaskNextView(APIView):
    @extend_schema(request=None, responses={200: s.NextTask, 204: None})
    def post(self, request: Request, project_id: int) -> HttpResponse:
        if not 0 < project_id <= MAX_ID:
            raise Http404
        assert isinstance(request.user, User)
        # The access check and the hand-out are one statement (labeling.queue_pg.NEXT).
        handed = queue.task_lease_next_checked(project_id=project_id, user=request.user, roles=sorted(ACTIONS["label"]))
        _refuse(handed.refused, "label")
        if handed.leased is None:
            return HttpResponse(status=status.HTTP_204_NO_CONTENT)
        return _json(next_task_body(handed.leased))


class AnnotationsView(APIView):
    @extend_schema(request=s.AnnotationIn, responses={201: s.AnnotationOut})
    def post(self, request: Request, task_id: int) -> HttpResponse:
        if not 0 < task_id <= MAX_ID:
            raise Http404
        try:
            data = _valid(s.AnnotationIn, request)
        except ValidationError:
            task_for(request, task_id, "label")  # a stranger learns nothing from a bad body: 404 first
            raise
        assert isinstance(request.user, User)
        # The access check, the label check and the answer are one statement where they can be.
        done = queue.annotation_submit_checked(
            task_id=task_id,
            user=request.user,
            roles=sorted(ACTIONS["label"]),
            label=data["label"],
            duration_ms=data.get("duration_ms"),
        )
        _refuse(done.refused, "label")
        if done.bad_label_of is not None:
            raise ValidationError(
                {"label": f"not a label of this project; one of: {', '.join(done.bad_label_of)[:500]}"}
            )
        annotation = done.annotation
        assert annotation is not None
        body = {
            "id": annotation.pk,
            "task_id": annotation.task_id,
            "label": annotation.label,
            "duration_ms": annotation.duration_ms,
            "created_at": annotation.created_at.isoformat().replace("+00:00", "Z"),
        }
        return _json(body, status.HTTP_201_CREATED)


class SkipView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, task_id: int) -> Response:
        task, _ = task_for(request, task_id, "label")
        assert isinstance(request.user, User)
        queue.task_skip(task_id=task.pk, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UndoView(APIView):
    @extend_schema(
        request=None,
        responses={200: s.NextTask},
        description="Take back your answer on this task within the project's queue.undo_seconds: the answer "
        "is deleted, a final label it made is reverted (method undo), and the task is leased back to you.",
    )
    def post(self, request: Request, task_id: int) -> HttpResponse:
        task, _ = task_for(request, task_id, "label")
        assert isinstance(request.user, User)
        leased = queue.annotation_undo(task_id=task.pk, user=request.user)
        return _json(next_task_body(leased))


def review_item_body(item: selectors.ReviewItem, show_suggestion: bool) -> dict[str, Any]:
    label = item.label
    return {
        "task_id": item.task.pk if item.task else None,
        "kind": item.task.kind if item.task else "label",
        "external_id": item.sample.external_id,
        "data": item.sample.data,
        "why": item.why,
        "label": {"label": label.label, "confidence": label.confidence, "method": label.method} if label else None,
        "suggestion": item.sample.suggestion if show_suggestion else None,
        "answers": [
            {
                "username": a["user__username"],
                "label": a["label"],
                "duration_ms": a["duration_ms"],
                "created_at": a["created_at"],
            }
            for a in item.answers
        ],
        "history": [
            {
                "old_label": c["old_label"],
                "new_label": c["new_label"],
                "method": c["method"],
                "actor": c["actor__username"],
                "reason": c["reason"],
                "created_at": c["created_at"],
            }
            for c in item.changes
        ],
    }


class ReviewsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description="how many (1..200, default 50)"),
            OpenApiParameter(
                "kind",
                str,
                enum=["pending", "disagreements"],
                description="pending: review tasks, in hand-out order (default); disagreements: samples a "
                "majority labeled over answers that disagreed, newest first",
            ),
        ],
        responses=s.ReviewItemOut(many=True),
        description="What reviewers and managers decide: each sample with every answer, its final label "
        "and its history.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "export")  # reviewers and managers
        limit = _limit(request, default=50, most=200)
        kind = request.query_params.get("kind", "pending")
        if kind == "pending":
            items = selectors.reviews_pending(project=project, limit=limit)
        elif kind == "disagreements":
            items = selectors.disagreements(project=project, limit=limit)
        else:
            raise ValidationError({"kind": "must be pending or disagreements"})
        show = True  # reviewers judge the model too: its suggestion is theirs to see
        return Response(s.ReviewItemOut([review_item_body(item, show) for item in items], many=True).data)


class ReviewDecideView(APIView):
    @extend_schema(
        request=s.ReviewDecideIn,
        responses={200: s.ReviewDecideOut},
        description="Decide a pending review task (or a finished label task whose answers disagreed): the label "
        "becomes final (method review) and the decision is kept in the sample's history with who and why.",
    )
    def post(self, request: Request, task_id: int) -> Response:
        task, _ = task_for(request, task_id, "export")  # reviewers and managers
        data = _valid(s.ReviewDecideIn, request)
        if data["label"] not in task.project.labels:
            raise ValidationError(
                {"label": f"not a label of this project; one of: {', '.join(task.project.labels)[:500]}"}
            )
        if not data["why"].strip():
            raise ValidationError({"why": "say why"})
        assert isinstance(request.user, User)
        label = review.review_decide(task_id=task.pk, reviewer=request.user, label=data["label"], why=data["why"])
        return Response(
            {
                "external_id": task.sample.external_id,
                "label": label.label,
                "confidence": label.confidence,
                "method": label.method,
            }
        )


class LabelsView(APIView):
    @extend_schema(responses=s.LabelOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "read")
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.labels_list(project=project), request, view=self)
        return paginator.get_paginated_response(s.LabelOut(page, many=True).data)
