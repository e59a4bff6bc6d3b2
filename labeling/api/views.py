"""Labeling API views: parse input, call one service or selector, render output."""

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import queue, selectors
from labeling.api import serializers as s
from labeling.api.access import project_for, task_for
from labeling.api.pagination import Pagination
from labeling.models import Project
from labeling.project_settings import ProjectSettings
from labeling.services import people, projects

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
        project, _ = project_for(request, project_id, "read")
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            raise ValidationError({"limit": "must be an integer"}) from None
        if not 1 <= limit <= 1000:
            raise ValidationError({"limit": "must be between 1 and 1000"})
        return Response(s.QueueItem(selectors.queue_list(project=project, limit=limit), many=True).data)


class TaskNextView(APIView):
    @extend_schema(request=None, responses={200: s.NextTask, 204: None})
    def post(self, request: Request, project_id: int) -> Response:
        project, role = project_for(request, project_id, "label")
        assert isinstance(request.user, User)
        leased = queue.task_lease_next(project=project, user=request.user, role=role)
        if leased is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        show = ProjectSettings.of(project.settings).queue["show_suggestion"]
        return Response(
            {
                "task_id": leased.task.pk,
                "external_id": leased.sample.external_id,
                "data": leased.sample.data,
                "reason": leased.task.reason,
                "kind": leased.task.kind if leased.task.kind != "gold" else "label",
                "suggestion": leased.sample.suggestion if show else None,
                "lease_expires_at": leased.expires_at,
            }
        )


class AnnotationsView(APIView):
    @extend_schema(request=s.AnnotationIn, responses={201: s.AnnotationOut})
    def post(self, request: Request, task_id: int) -> Response:
        task, _ = task_for(request, task_id, "label")
        data = _valid(s.AnnotationIn, request)
        if data["label"] not in task.project.labels:
            raise ValidationError(
                {"label": f"not a label of this project; one of: {', '.join(task.project.labels)[:500]}"}
            )
        assert isinstance(request.user, User)
        annotation = queue.annotation_submit(
            task_id=task.pk, user=request.user, label=data["label"], duration_ms=data.get("duration_ms")
        )
        return Response(s.AnnotationOut(annotation).data, status=status.HTTP_201_CREATED)


class SkipView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, task_id: int) -> Response:
        task, _ = task_for(request, task_id, "label")
        assert isinstance(request.user, User)
        queue.task_skip(task_id=task.pk, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelsView(APIView):
    @extend_schema(responses=s.LabelOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "read")
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.labels_list(project=project), request, view=self)
        return paginator.get_paginated_response(s.LabelOut(page, many=True).data)
