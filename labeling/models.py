"""Rows of the labeling side: what is labeled, by whom, and the trusted result.

Models hold fields, constraints and indexes; workflows live in ``labeling.services``.
"""

from typing import Any

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    MANAGER = "manager"
    INGEST = "ingest"


class FieldKind(models.TextChoices):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    IMAGE = "image"


class Project(models.Model):
    name = models.CharField(max_length=200)
    labels = models.JSONField(help_text="Ordered list of label names.")
    schema = models.JSONField(help_text="Field name -> kind (numeric, categorical, text, image).")
    # PostgreSQL's jsonb does not keep key order, so the declared order of the fields is kept here.
    field_order = models.JSONField(default=list)
    overlap = models.PositiveSmallIntegerField(default=1)
    gold_rate = models.FloatField(default=0.0)
    settings = models.JSONField(default=dict, help_text="selection, retrain and queue settings.")
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def fields(self) -> list[tuple[str, str]]:
        """(name, kind) of the schema's fields in the order they were declared."""
        names = [name for name in self.field_order if name in self.schema]
        names += sorted(name for name in self.schema if name not in set(names))
        return [(name, self.schema[name]) for name in names]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]


class ApiToken(models.Model):
    """An API token. Only the SHA-256 of the key is stored; the key is shown once."""

    key_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()


class SampleStatus(models.IntegerChoices):
    UNLABELED = 0  # no final label and no pending task (below the queue's floor)
    QUEUED = 1  # a pending labeling task exists
    LABELED = 2  # a final label exists


class Sample(models.Model):
    """One thing to label, as production saw it. ``data`` follows the project's schema."""

    # No index of its own: (project, external_id) and (project, status, id) lead with it. Every
    # index costs each ingested row (measured in bench/ingest.py).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="samples", db_index=False)
    external_id = models.CharField(max_length=255)
    data = models.JSONField()
    observed_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.SmallIntegerField(choices=SampleStatus.choices, default=SampleStatus.UNLABELED)
    # What the annotator may be shown as a hint (if the project shows hints): {"label", "confidence"}.
    suggestion = models.JSONField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "external_id"], name="sample_external_id_unique")]
        indexes = [models.Index(fields=["project", "status", "id"], name="sample_status_idx")]


class TaskKind(models.TextChoices):
    LABEL = "label"
    GOLD = "gold"
    REVIEW = "review"


class TaskStatus(models.IntegerChoices):
    PENDING = 0
    DONE = 1
    CANCELLED = 2


class Reason(models.TextChoices):
    UNCERTAINTY = "uncertainty"
    DRIFT = "drift"
    DIVERSITY = "diversity"
    RANDOM = "random"
    GOLD = "gold"
    REVIEW = "review"
    MANUAL = "manual"


class Task(models.Model):
    """A request for ``overlap`` answers on one sample.

    ``n_leased`` counts live leases and ``lease_expiry`` is the earliest expiry among them, so the
    hand-out query can tell from the row alone whether a slot is free (or freed by an expiry).
    """

    # A copy of sample.project for the queue's index: no index or constraint of its own (the
    # partial index leads with it, and the sample's foreign key already ties the row to a project).
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="tasks", db_index=False, db_constraint=False
    )
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=8, choices=TaskKind.choices, default=TaskKind.LABEL)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    priority = models.FloatField(default=0.0)
    status = models.SmallIntegerField(choices=TaskStatus.choices, default=TaskStatus.PENDING)
    overlap = models.PositiveSmallIntegerField(default=1)
    n_answers = models.PositiveSmallIntegerField(default=0)
    n_leased = models.PositiveSmallIntegerField(default=0)
    lease_expiry = models.DateTimeField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # One partial index per kind of pending task, each in hand-out order: a hand-out of one
        # kind never walks the pending rows of another (gold tasks sit at priority 0, below every
        # label task; review tasks above them).
        indexes = [
            models.Index(
                "project",
                models.F("priority").desc(),
                "id",
                name="task_pending_idx",
                condition=Q(status=0, kind="label"),
            ),
            models.Index(
                "project",
                models.F("priority").desc(),
                "id",
                name="task_pending_gold_idx",
                condition=Q(status=0, kind="gold"),
            ),
            models.Index(
                "project",
                models.F("priority").desc(),
                "id",
                name="task_pending_review_idx",
                condition=Q(status=0, kind="review"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["sample"], condition=Q(status=0, kind="label"), name="task_one_pending_per_sample"
            ),
        ]


class LeaseStatus(models.IntegerChoices):
    LIVE = 0
    ANSWERED = 1
    SKIPPED = 2
    EXPIRED = 3


class Lease(models.Model):
    """One annotator's hold on one task. One row per (task, user): a task never goes twice to one person."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="leases")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.SmallIntegerField(choices=LeaseStatus.choices, default=LeaseStatus.LIVE)
    leased_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "user"], name="lease_task_user_unique")]
        indexes = [models.Index(fields=["user", "expires_at"], condition=Q(status=0), name="lease_live_user_idx")]


class Annotation(models.Model):
    # A copy of task.project, so that audits and dashboards read a project's answers by index.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="annotations")
    user = models.ForeignKey(django_settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    label = models.CharField(max_length=200)
    duration_ms = models.PositiveIntegerField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "user"], name="annotation_task_user_unique")]
        indexes = [
            models.Index(fields=["user", "created_at"], name="annotation_user_time_idx"),
            models.Index(fields=["project", "created_at"], name="annotation_project_time_idx"),
        ]


class Gold(models.Model):
    """A sample with a known answer. Its gold task is handed out (at the project's gold_rate) to
    every annotator once, never telling them; their answers score them and change no label."""

    sample = models.OneToOneField(Sample, on_delete=models.CASCADE, primary_key=True, related_name="gold")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gold_answers")
    label = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)


class ProjectCounter(models.Model):
    """A sharded counter (queued tasks, labels, ...), kept in the transaction that changes what
    it counts. Writers add to one of SHARDS rows, the one of their connection on PostgreSQL
    (migration 0007), so concurrent answers do not queue on one row lock; readers sum the shards
    (a handful of rows by index)."""

    SHARDS = 32

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="counters")
    name = models.CharField(max_length=32)
    shard = models.PositiveSmallIntegerField()
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name", "shard"], name="project_counter_unique")]


class DerivedState(models.Model):
    """Figures a worker computes for a project and requests read (the Dawid-Skene estimate, the
    stored audit report), one row per (project, key). Kept apart from ``Project.settings`` so
    that what people set is never mixed with what the system derives, and so that the readers of
    the settings (every hand-out) never parse these blobs. Writers lock the project row first."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="derived")
    key = models.CharField(max_length=32)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="derived_state_unique")]

    @classmethod
    def read(cls, *, project_id: int, key: str) -> dict[str, Any]:
        """The stored value, or {} (one index probe)."""
        found = cls.objects.filter(project_id=project_id, key=key).values_list("value", flat=True).first()
        return found if isinstance(found, dict) else {}

    @classmethod
    def write(cls, *, project_id: int, key: str, value: dict[str, Any]) -> None:
        """Store ``value``; the caller holds the project row's lock, so writers never race."""
        cls.objects.update_or_create(project_id=project_id, key=key, defaults={"value": value})


class LabelMethod(models.TextChoices):
    IMPORT = "import"
    MAJORITY = "majority"
    DAWID_SKENE = "dawid_skene"
    REVIEW = "review"
    UNDO = "undo"


class Label(models.Model):
    """The trusted, final label of a sample."""

    sample = models.OneToOneField(Sample, on_delete=models.CASCADE, primary_key=True, related_name="final_label")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="final_labels")
    label = models.CharField(max_length=200)
    confidence = models.FloatField()
    method = models.CharField(max_length=16, choices=LabelMethod.choices)
    n_annotations = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "sample"], name="label_project_idx")]


class LabelChange(models.Model):
    """Append-only trail of every change of a final label.

    Its ids are also the watermark that training-set versions are cut from: a new version looks only
    at changes after the previous version's last change, so cutting costs O(changes).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_changes")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="label_changes")
    old_label = models.CharField(max_length=200, null=True)
    new_label = models.CharField(max_length=200, null=True)
    method = models.CharField(max_length=16, choices=LabelMethod.choices)
    actor = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "id"], name="labelchange_project_idx")]
