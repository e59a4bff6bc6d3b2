"""Operations endpoints: /healthz (no auth) and /metrics (Prometheus text format)."""

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from labelloop.celery import app

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("healthz: database check failed", exc_info=True)
        return False


def _broker_ok() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        logger.warning("healthz: broker check failed", exc_info=True)
        return False


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    healthy = all(checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)


def _is_staff(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request

    from labeling.auth import ApiTokenAuthentication

    try:
        found = ApiTokenAuthentication().authenticate(Request(request))
    except AuthenticationFailed:
        return False
    return bool(found and found[0].is_staff)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Small-table counts for Prometheus. Staff only (an API token or a session)."""
    if not _is_staff(request):
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
    from feedback.models import ModelVersion, TrainingRun
    from labeling.models import Project

    registry = CollectorRegistry()
    Gauge("labelloop_projects", "Projects", registry=registry).set(Project.objects.count())
    Gauge("labelloop_model_versions", "Registered model versions", registry=registry).set(ModelVersion.objects.count())
    runs = Gauge("labelloop_training_runs", "Training runs by status", ["status"], registry=registry)
    for status, n in _runs_by_status(TrainingRun):
        runs.labels(status=status).set(n)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _runs_by_status(model: type) -> list[tuple[str, int]]:
    from django.db.models import Count

    return [(row["status"], row["n"]) for row in model.objects.values("status").annotate(n=Count("id"))]  # type: ignore[attr-defined]
