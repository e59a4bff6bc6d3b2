"""Creating and changing projects."""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from labeling import project_settings
from labeling.models import Membership, Project, Role

SETTINGS_GROUPS = tuple(project_settings.DEFAULTS)


def project_create(
    *,
    creator: User,
    name: str,
    labels: list[str],
    schema: dict[str, str],
    overlap: int = 1,
    gold_rate: float = 0.0,
    settings: dict[str, Any] | None = None,
) -> Project:
    """Create a project; its creator becomes its manager. ``settings`` groups are validated
    (raises project_settings.SettingsError)."""
    given = settings or {}
    stored = {group: project_settings.normalize(group, given.get(group)) for group in SETTINGS_GROUPS}
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            labels=list(labels),
            schema=dict(schema),
            field_order=list(schema),
            overlap=overlap,
            gold_rate=gold_rate,
            settings=stored,
            created_by=creator,
        )
        Membership.objects.create(project=project, user=creator, role=Role.MANAGER)
    return project


def project_update(*, project_id: int, changes: dict[str, Any]) -> Project:
    """Apply validated ``changes`` (name, overlap, gold_rate, settings groups) under a row lock.

    Labels and schema are not changed here: samples and models were made against them.
    """
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project_id)
        for field in ("name", "overlap", "gold_rate"):
            if field in changes:
                setattr(project, field, changes[field])
        stored = dict(project.settings)
        for group in SETTINGS_GROUPS:
            if group in changes:
                stored[group] = project_settings.normalize(group, changes[group], stored.get(group))
        project.settings = stored
        project.save()
    return project
