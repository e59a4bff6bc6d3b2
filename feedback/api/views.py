"""Feedback API views: ingest, samples, training sets (tags, pruning, exports), runs, the model
registry (promote, roll back, alias history), predictions."""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback import datasets, exports, ingest, pipelines, registry, selection, training
from feedback.api import serializers as s
from feedback.models import DatasetTag, DatasetVersion, ModelVersion, SampleScore, TrainingRun
from feedback.rows import check_data
from labeling import selectors
from labeling.api.access import project_for
from labeling.api.pagination import Pagination
from labeling.models import SampleStatus
from labeling.project_settings import ProjectSettings

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/ndjson")
MAX_PREDICT_ITEMS = 10_000
# Past the limit the rest of the body is read and dropped (up to this much) so that the client
# receives the 413 instead of a reset connection.
DRAIN_LIMIT = 256 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


def _read_limited(request: HttpRequest, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or ""
    length = int(declared) if declared.isdigit() else None
    if length is not None and length > limit:
        _drain(request, length)
        raise BodyTooLarge
    body = request.read(limit + 1)
    if len(body) > limit:
        _drain(request, DRAIN_LIMIT)
        raise BodyTooLarge
    return body


def _drain(request: HttpRequest, up_to: int) -> None:
    remaining = min(up_to, DRAIN_LIMIT)
    while remaining > 0:
        chunk = request.read(min(remaining, 1 << 20))
        if not chunk:
            return
        remaining -= len(chunk)


def _int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError({name: "must be an integer"}) from None


def _version(project_id: int, number: int) -> DatasetVersion:
    version = (
        DatasetVersion.objects.filter(project_id=project_id, version=number)
        .select_related("parent")
        .prefetch_related("tags")
        .first()
    )
    if version is None:
        raise NotFound(f"dataset version {number} does not exist")
    return version


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "gone"


def _readable(version: DatasetVersion) -> DatasetVersion:
    """The version, if its rows are still there (410 for a pruned one)."""
    if version.pruned_at is not None:
        raise Gone(str(datasets.VersionPruned(version)) + ": its hash and figures remain, its rows do not")
    return version


def _actor(request: Request) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _body(request: Request) -> dict[str, Any]:
    if request.data is None or request.data == {}:
        return {}
    if not isinstance(request.data, dict):
        raise ValidationError({"body": "expected a JSON object"})
    return dict(request.data)


class SamplesView(APIView):
    parser_classes: list[Any] = []  # the ingest body is read (with a size limit) by the view itself

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=["unlabeled", "queued", "labeled"])],
        responses=s.SampleOut(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "read")
        wanted = request.query_params.get("status")
        if wanted is not None and wanted.upper() not in SampleStatus.names:
            raise ValidationError({"status": "must be one of unlabeled, queued, labeled"})
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.samples_list(project=project, status=wanted), request, view=self)
        return paginator.get_paginated_response(s.SampleOut(page, many=True).data)

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT, "application/x-ndjson": OpenApiTypes.STR},
        responses=s.IngestResult,
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "ingest")
        try:
            body = _read_limited(request._request, settings.INGEST_MAX_BYTES)
        except BodyTooLarge:
            return Response(
                {"detail": f"request body over the limit of {settings.INGEST_MAX_BYTES} bytes; nothing was stored"},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        try:
            items = ingest.parse_body(body, ndjson=content_type in NDJSON_TYPES)
        except ingest.BodyError as exc:
            return Response({"detail": str(exc), "errors": {"body": str(exc)}}, status=status.HTTP_400_BAD_REQUEST)
        if len(items) > ingest.MAX_ITEMS:
            return Response(
                {"detail": f"at most {ingest.MAX_ITEMS} samples per request; nothing was stored"},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        actor = request.user if isinstance(request.user, User) else None
        result = ingest.samples_ingest(project=project, items=items, actor=actor)
        return Response({"created": result.created, "duplicates": result.duplicates, "rejected": result.rejected})


class SampleDetailView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int, external_id: str) -> Response:
        project, _ = project_for(request, project_id, "read")
        # NUL is never stored in an external_id (PostgreSQL cannot even compare against it).
        sample = (
            None if "\x00" in external_id else selectors.sample_by_external_id(project=project, external_id=external_id)
        )
        if sample is None:
            raise NotFound(f"no sample {external_id!r} in this project")
        score = SampleScore.objects.select_related("scored_by").filter(sample=sample).first()
        return Response(s.sample_detail(sample, selectors.sample_history(sample=sample), score))


class DatasetsView(APIView):
    @extend_schema(responses=s.DatasetVersionOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project_for(request, project_id, "read")
        versions = (
            DatasetVersion.objects.filter(project_id=project_id)
            .select_related("parent")
            .prefetch_related("tags")
            .order_by("-version")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(versions, request, view=self)
        return paginator.get_paginated_response(s.DatasetVersionOut(page, many=True).data)

    @extend_schema(request=None, responses={201: s.DatasetVersionDetail, 200: s.DatasetVersionDetail})
    def post(self, request: Request, project_id: int) -> Response:
        project_for(request, project_id, "manage")
        actor = request.user if isinstance(request.user, User) else None
        result = datasets.dataset_version_cut(project_id=project_id, trigger="manual", actor=actor)
        version = _version(project_id, result.version.version)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.DatasetVersionDetail(version).data, status=code)


class DatasetDetailView(APIView):
    @extend_schema(responses=s.DatasetVersionDetail)
    def get(self, request: Request, project_id: int, version: int) -> Response:
        project_for(request, project_id, "read")
        return Response(s.DatasetVersionDetail(_version(project_id, version)).data)


class ExportNegotiation(DefaultContentNegotiation):
    """On an export ``?format=`` names the file format, not one of DRF's renderers (which would
    answer 404 for ``csv``); the rows are streamed as that format and errors are JSON."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class DatasetExportView(APIView):
    content_negotiation_class = ExportNegotiation

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(exports.FORMATS))], responses=OpenApiTypes.BINARY
    )
    def get(self, request: Request, project_id: int, version: int) -> StreamingHttpResponse:
        project, _ = project_for(request, project_id, "export")
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in exports.FORMATS:
            raise ValidationError({"format": f"must be one of {', '.join(exports.FORMATS)}"})
        dataset = _readable(_version(project_id, version))
        response = StreamingHttpResponse(
            exports.stream(dataset, project.fields(), fmt), content_type=exports.FORMATS[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="{exports.filename(project_id, dataset, fmt)}"'
        response["X-Dataset-Hash"] = dataset.hash
        response["X-Dataset-Version"] = str(dataset.version)
        return response


class DatasetDiffView(APIView):
    @extend_schema(parameters=[OpenApiParameter("against", int, required=False)], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, project_id: int, version: int) -> Response:
        project_for(request, project_id, "read")
        newer = _readable(_version(project_id, version))
        against = _int_param(request, "against")
        if against is None:
            if newer.parent is None:
                return Response({"version": newer.version, "against": None, "changes": []})
            older = newer.parent
        else:
            older = _version(project_id, against)
        _readable(older)
        changes = datasets.diff_items(project_id=project_id, older=older, newer=newer)
        return Response({"version": newer.version, "against": older.version, "changes": changes})


class RunsView(APIView):
    @extend_schema(responses=s.RunOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project_for(request, project_id, "read")
        runs = (
            TrainingRun.objects.filter(project_id=project_id)
            .select_related("dataset_version", "model_version")
            .order_by("-id")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(s.RunOut(page, many=True).data)

    @extend_schema(request=s.RunIn, responses={202: s.RunCreated})
    def post(self, request: Request, project_id: int) -> Response:
        """Train a version (the latest, cut now, by default) with the project's training config:
        the run of that (version, config) when it exists (a failed one is queued again)."""
        project, _ = project_for(request, project_id, "manage")
        serializer = s.RunIn(data=_body(request))
        serializer.is_valid(raise_exception=True)
        problems = pipelines.check_config(training.training_config(project))
        if problems:
            raise ValidationError({"training": problems})
        number = serializer.validated_data.get("dataset_version")
        actor = _actor(request)
        if number is None:
            dataset = datasets.dataset_version_cut(project_id=project_id, trigger="manual", actor=actor).version
        else:
            dataset = _readable(_version(project_id, number))
        if dataset.size == 0:
            raise ValidationError({"dataset_version": f"version {dataset.version} has no labeled samples to train on"})
        run, created = training.training_run_request(
            project=project, dataset_version=dataset, trigger="manual", actor=actor, retry_failed=True
        )
        return Response(
            {"run_id": run.pk, "status": run.status, "dataset_version": dataset.version, "created": created},
            status=status.HTTP_202_ACCEPTED,
        )


class RunDetailView(APIView):
    @extend_schema(responses=s.RunOut)
    def get(self, request: Request, run_id: int) -> Response:
        run = TrainingRun.objects.select_related("dataset_version").filter(pk=run_id).first()
        if run is None:
            raise NotFound
        project_for(request, run.project_id, "read")
        run = TrainingRun.objects.select_related("dataset_version", "model_version").get(pk=run_id)
        return Response(s.RunOut(run).data)


class ModelsView(APIView):
    @extend_schema(responses=s.ModelOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project_for(request, project_id, "read")
        models = (
            ModelVersion.objects.filter(project_id=project_id).select_related("dataset_version").order_by("-version")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(models, request, view=self)
        context = {"aliases": registry.aliases_of(project_id=project_id)}
        return paginator.get_paginated_response(s.ModelOut(page, many=True, context=context).data)


class PromoteView(APIView):
    @extend_schema(request=s.PromoteIn, responses=s.ModelOut)
    def post(self, request: Request, project_id: int, version: int) -> Response:
        project_for(request, project_id, "manage")
        serializer = s.PromoteIn(data=_body(request))
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data.get("reason", "")
        actor = _actor(request)
        try:
            model_version = registry.model_promote(
                project_id=project_id, version=version, actor=actor, reason=str(reason)[:500]
            )
        except ModelVersion.DoesNotExist:
            raise NotFound(f"model version {version} does not exist") from None
        context = {"aliases": registry.aliases_of(project_id=project_id)}
        return Response(s.ModelOut(model_version, context=context).data)


class DatasetTagsView(APIView):
    @extend_schema(responses=s.TagOut(many=True))
    def get(self, request: Request, project_id: int, version: int) -> Response:
        project_for(request, project_id, "read")
        dataset = _version(project_id, version)
        tags = DatasetTag.objects.filter(version=dataset).select_related("version", "created_by").order_by("name")
        return Response(s.TagOut(tags, many=True).data)

    @extend_schema(request=s.TagIn, responses={201: s.TagOut, 200: s.TagOut})
    def post(self, request: Request, project_id: int, version: int) -> Response:
        """Tag the version (a tagged version is never pruned); 409 when the name is on another version."""
        project_for(request, project_id, "manage")
        serializer = s.TagIn(data=_body(request))
        serializer.is_valid(raise_exception=True)
        name = serializer.validated_data["name"]
        _version(project_id, version)
        existed = DatasetTag.objects.filter(project_id=project_id, name=name).exists()
        try:
            tag = datasets.dataset_tag_add(project_id=project_id, version=version, name=name, actor=_actor(request))
        except datasets.TagConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except datasets.VersionPruned as exc:
            raise Gone(str(exc)) from None
        tag = DatasetTag.objects.select_related("version", "created_by").get(pk=tag.pk)
        return Response(s.TagOut(tag).data, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("name", str, required=True)], responses={204: None})
    def delete(self, request: Request, project_id: int, version: int) -> Response:
        project_for(request, project_id, "manage")
        _version(project_id, version)
        name = request.query_params.get("name")
        if not name:
            raise ValidationError({"name": "give the tag to remove as ?name="})
        if not datasets.dataset_tag_remove(project_id=project_id, version=version, name=name):
            raise NotFound(f"version {version} has no tag {name[:100]!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetPruneView(APIView):
    @extend_schema(request=s.PruneIn, responses=s.PruneOut)
    def post(self, request: Request, project_id: int) -> Response:
        """Prune untagged versions older than retention_days (the project's datasets.retention_days
        unless given); never the latest, a tagged one, or one a model was trained on."""
        project, _ = project_for(request, project_id, "manage")
        serializer = s.PruneIn(data=_body(request))
        serializer.is_valid(raise_exception=True)
        days = serializer.validated_data.get("retention_days")
        if days is None and ProjectSettings.of(project.settings).datasets["retention_days"] is None:
            raise ValidationError(
                {"retention_days": "this project keeps every version (datasets.retention_days is null): give one"}
            )
        dry_run = bool(serializer.validated_data.get("dry_run"))
        result = datasets.dataset_versions_prune(project_id=project_id, retention_days=days, dry_run=dry_run)
        return Response(
            {
                "pruned": result.pruned,
                "members_deleted": result.members_deleted,
                "kept": {str(k): v for k, v in result.kept.items()},
                "retention_days": result.retention_days,
                "dry_run": dry_run,
            }
        )


def _model(project_id: int, version: int) -> ModelVersion:
    found = (
        ModelVersion.objects.filter(project_id=project_id, version=version)
        .select_related("dataset_version", "run")
        .first()
    )
    if found is None:
        raise NotFound(f"model version {version} does not exist")
    return found


class ModelDetailView(APIView):
    @extend_schema(responses=s.ModelDetail)
    def get(self, request: Request, project_id: int, version: int) -> Response:
        project_for(request, project_id, "read")
        model_version = _model(project_id, version)
        context = {
            "aliases": registry.aliases_of(project_id=project_id),
            "history": registry.alias_history(project_id=project_id),
        }
        return Response(s.ModelDetail(model_version, context=context).data)


class AliasHistoryView(APIView):
    @extend_schema(responses=s.AliasEventOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project_for(request, project_id, "read")
        return Response(s.AliasEventOut(registry.alias_history(project_id=project_id), many=True).data)


class RollbackView(APIView):
    @extend_schema(request=s.PromoteIn, responses=s.ModelOut)
    def post(self, request: Request, project_id: int) -> Response:
        """Make the champion that the current one replaced the champion again; 409 when there is none."""
        project_for(request, project_id, "manage")
        serializer = s.PromoteIn(data=_body(request))
        serializer.is_valid(raise_exception=True)
        try:
            model_version = registry.model_rollback(
                project_id=project_id, actor=_actor(request), reason=serializer.validated_data.get("reason", "")
            )
        except registry.NoRollback as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        context = {"aliases": registry.aliases_of(project_id=project_id)}
        return Response(s.ModelOut(model_version, context=context).data)


def _beyond_float(data: dict[str, Any] | None) -> dict[str, str]:
    """Integers too large for a float: this body is parsed by Python's json (unbounded integers),
    not by ingest's orjson, and the model's arrays are floats."""
    errors = {}
    for field, value in (data or {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:
                errors[f"data.{field}"] = "numeric field must be a finite number"
    return errors


class PredictView(APIView):
    @extend_schema(request=s.PredictIn, responses=s.PredictOut)
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_for(request, project_id, "predict")
        items = request.data.get("items") if isinstance(request.data, dict) else None
        if not isinstance(items, list) or not items:
            raise ValidationError({"items": 'expected a non-empty list of {"data": {...}}'})
        if len(items) > MAX_PREDICT_ITEMS:
            raise ValidationError({"items": f"at most {MAX_PREDICT_ITEMS} items per request"})
        rows, errors = [], {}
        for index, item in enumerate(items):
            data, problems = check_data(item.get("data") if isinstance(item, dict) else None, project.schema)
            problems = problems or _beyond_float(data)
            if data is None or problems:
                errors[str(index)] = problems
            else:
                rows.append(data)
        if errors:
            raise ValidationError({"items": errors})
        champion = registry.champion(project_id=project.pk)
        if champion is None:
            return Response({"detail": "this project has no model yet"}, status=status.HTTP_409_CONFLICT)
        probabilities = selection.score_matrix(project, registry.load_model(model_version=champion), rows)
        labels = project.labels
        predictions = [
            {
                "label": labels[int(row.argmax())],
                "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)},
            }
            for row in probabilities
        ]
        return Response({"model_version": champion.version, "predictions": predictions})
