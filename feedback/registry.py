"""The model registry: aliases (champion, challenger), promotion and rollback, loading artifacts."""

import threading
from collections import OrderedDict
from functools import partial

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from sklearn.pipeline import Pipeline

from feedback import pipelines
from feedback.models import AliasEvent, ModelAlias, ModelArtifact, ModelVersion

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
CACHE_SIZE = 16

_cache: "OrderedDict[tuple[int, str], Pipeline]" = OrderedDict()
_cache_lock = threading.Lock()


def champion(*, project_id: int) -> ModelVersion | None:
    alias = ModelAlias.objects.filter(project_id=project_id, alias=CHAMPION).select_related("model_version").first()
    return alias.model_version if alias else None


def newest(*, project_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id).order_by("-version").first()


def ranker(*, project_id: int) -> ModelVersion | None:
    """The model whose scores should rank the queue: the newest trained model (a challenger the
    gate refused still knows the newest labels), unless a champion was promoted after it was
    trained: a rollback or a manual promotion is the manager's choice and holds until a newer
    model is trained."""
    latest = newest(project_id=project_id)
    move = (
        AliasEvent.objects.filter(project_id=project_id, alias=CHAMPION)
        .select_related("model_version")
        .order_by("-id")
        .first()
    )
    if latest is None or move is None or move.created_at < latest.created_at:
        return latest
    return move.model_version


def load_model(*, model_version: ModelVersion) -> Pipeline:
    """The fitted pipeline of a model version, loaded with skops after its digest check; kept in a
    small in-process cache keyed by (id, digest), so a promotion is served at once."""
    key = (model_version.pk, model_version.digest)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    data = ModelArtifact.objects.values_list("data", flat=True).get(model_version=model_version)
    model = pipelines.load(bytes(data), model_version.digest)
    with _cache_lock:
        _cache[key] = model
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def alias_set(
    *, project_id: int, alias: str, model_version: ModelVersion, actor: User | None = None, reason: str = ""
) -> None:
    """Point ``alias`` at ``model_version`` and record the move (AliasEvent, append-only); a model
    made champion stops being the challenger. Lock: the alias row. Readers (predict, re-scoring)
    look the champion up in the database on every call, so every process sees a move at once."""
    with transaction.atomic():
        current = ModelAlias.objects.select_for_update().filter(project_id=project_id, alias=alias).first()
        previous = current.model_version if current else None
        if current is None:
            ModelAlias.objects.create(project_id=project_id, alias=alias, model_version=model_version)
        else:
            current.model_version = model_version
            current.updated_at = timezone.now()
            current.save(update_fields=["model_version", "updated_at"])
        if alias == CHAMPION:
            ModelAlias.objects.filter(project_id=project_id, alias=CHALLENGER, model_version=model_version).delete()
        AliasEvent.objects.create(
            project_id=project_id,
            alias=alias,
            model_version=model_version,
            previous=previous,
            actor=actor,
            reason=reason,
        )


def model_promote(*, project_id: int, version: int, actor: User | None, reason: str = "") -> ModelVersion:
    """Make model ``version`` the champion (promoting an older one is a rollback) and re-score
    the queue with it after commit. Raises ModelVersion.DoesNotExist."""
    from feedback import tasks

    with transaction.atomic():
        model_version = ModelVersion.objects.get(project_id=project_id, version=version)
        alias_set(
            project_id=project_id,
            alias=CHAMPION,
            model_version=model_version,
            actor=actor,
            reason=reason or "promoted by hand",
        )
        transaction.on_commit(partial(tasks.rescore_project.delay, project_id, model_version.pk))
    return model_version


def aliases_of(*, project_id: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for model_version_id, alias in ModelAlias.objects.filter(project_id=project_id).values_list(
        "model_version_id", "alias"
    ):
        out.setdefault(model_version_id, []).append(alias)
    return out


class NoRollback(Exception):
    """There is no earlier champion to go back to."""


def model_rollback(*, project_id: int, actor: User | None, reason: str = "") -> ModelVersion:
    """Promote the champion that the current one replaced (the ``previous`` of the latest
    champion move), and re-score the queue with it. Raises NoRollback when there is none."""
    with transaction.atomic():
        # The champion's alias row serializes rollbacks and promotions of the project.
        ModelAlias.objects.select_for_update().filter(project_id=project_id, alias=CHAMPION).first()
        last = (
            AliasEvent.objects.filter(project_id=project_id, alias=CHAMPION)
            .select_related("previous", "model_version")
            .order_by("-id")
            .first()
        )
        if last is None or last.previous is None:
            raise NoRollback("no earlier champion to roll back to")
        return model_promote(
            project_id=project_id,
            version=last.previous.version,
            actor=actor,
            reason=reason or f"rolled back from v{last.model_version.version}",
        )


def alias_history(*, project_id: int, limit: int = 200) -> list[dict[str, object]]:
    """The newest alias moves first: ``{"alias", "version", "previous", "actor", "reason", "at"}``."""
    events = (
        AliasEvent.objects.filter(project_id=project_id)
        .order_by("-id")
        .values("alias", "model_version__version", "previous__version", "actor__username", "reason", "created_at")[
            :limit
        ]
    )
    return [
        {
            "alias": e["alias"],
            "version": e["model_version__version"],
            "previous": e["previous__version"],
            "actor": e["actor__username"],
            "reason": e["reason"],
            "at": e["created_at"],
        }
        for e in events
    ]
