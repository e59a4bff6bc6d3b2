"""API views: drift, and manual pushes into the queue. URL patterns are included from feedback/api/urls.py.

``GET /api/projects/{id}/queue/`` (the order annotators get, with each task's reason and priority) is
labeling's view; ``POST .../queue/manual/`` here puts samples on top of it.
"""

from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import drift_service, selection
from labeling.api.access import project_for


def _int(request: Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: "must be an integer"}) from None
    if not lo <= value <= hi:
        raise ValidationError({name: f"must be between {lo} and {hi}"})
    return value


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValidationError({name: "must be true or false (1 or 0)"})


class DriftView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("window", int, description="samples per window (10..1,000,000; default drift.window)"),
            OpenApiParameter("seconds", int, description="windows by time instead: seconds per window"),
            OpenApiParameter("limit", int, description=f"newest windows to compute (1..{drift_service.MAX_LIMIT})"),
            OpenApiParameter("domain", bool, description="run the domain classifier per window (default true)"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "read")
        window = _int(request, "window", 10, 1_000_000)
        seconds = _int(request, "seconds", 60, 365 * 24 * 3600)
        if window is not None and seconds is not None:
            raise ValidationError({"window": "give window or seconds, not both"})
        limit = _int(request, "limit", 1, drift_service.MAX_LIMIT) or drift_service.DEFAULT_LIMIT
        try:
            body = drift_service.project_drift(
                project=project, window=window, seconds=seconds, limit=limit, domain=_flag(request, "domain", True)
            )
        except drift_service.DriftError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(body)


class ManualPushIn(serializers.Serializer):
    external_ids = serializers.ListField(
        child=serializers.CharField(max_length=255, allow_blank=False), required=False, max_length=selection.MANUAL_MAX
    )
    filter = serializers.JSONField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=selection.MANUAL_MAX)


class ManualPushView(APIView):
    @extend_schema(request=ManualPushIn, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "manage")
        if not isinstance(request.data, dict):
            raise ValidationError({"body": "expected a JSON object"})
        serializer = ManualPushIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(serializer.validated_data)
        spec = data.get("filter")
        if spec is not None and not isinstance(spec, dict):
            raise ValidationError({"filter": 'an object: {"status": ..., "data": {field: condition}}'})
        try:
            result = selection.queue_manual_push(
                project=project,
                external_ids=data.get("external_ids"),
                filter_spec=spec,
                limit=data.get("limit") or selection.MANUAL_MAX,
            )
        except selection.PushError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(
            {
                "pushed": len(result.pushed),
                "external_ids": result.pushed,
                "labeled": result.labeled,
                "unknown": result.unknown,
            }
        )


urlpatterns = [
    path("projects/<int:project_id>/drift/", DriftView.as_view(), name="api-drift"),
    path("projects/<int:project_id>/queue/manual/", ManualPushView.as_view(), name="api-queue-manual"),
]
