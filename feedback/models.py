"""Rows of the production loop: scores, training-set versions, runs and the model registry."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from labeling.models import Project, Sample


class SampleScore(models.Model):
    """What production said about a sample, and what our newest model thinks of it."""

    sample = models.OneToOneField(Sample, on_delete=models.CASCADE, primary_key=True, related_name="score")
    # A copy of sample.project: no index or constraint of its own (each costs every ingested row).
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    production_label = models.CharField(max_length=200, null=True)
    production_probabilities = models.JSONField(null=True)
    production_model_version = models.CharField(max_length=200, blank=True, default="")
    uncertainty = models.FloatField(null=True)
    # How much the sample looks like the latest drifted window rather than the training data
    # (the domain classifier's out-of-fold probability), when drift was measured.
    drift = models.FloatField(null=True)
    # Model versions are never deleted (PROTECT elsewhere), so nothing needs this looked up by index.
    scored_by = models.ForeignKey(
        "ModelVersion", null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    scored_at = models.DateTimeField(null=True)


class DatasetVersion(models.Model):
    """An immutable training set: the labels valid at ``version`` (see DatasetMember).

    ``hash`` is a set hash over the (external_id, label) pairs (feedback.sethash), so equal sets
    have equal hashes whatever their order, and a child's hash follows from its parent's and the
    diff. ``last_change_id`` is the LabelChange watermark the version was cut at.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_versions")
    version = models.PositiveIntegerField()
    hash = models.CharField(max_length=64)
    parent = models.ForeignKey("self", null=True, on_delete=models.PROTECT, related_name="children")
    size = models.PositiveIntegerField()
    n_added = models.PositiveIntegerField(default=0)
    n_changed = models.PositiveIntegerField(default=0)
    n_removed = models.PositiveIntegerField(default=0)
    last_change_id = models.BigIntegerField(default=0)
    trigger = models.CharField(max_length=32)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # A pruned version keeps its row (lineage, hash, diff figures) but no longer its members.
    pruned_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="dataset_version_unique")]


class DatasetTag(models.Model):
    """A name on a version (e.g. "audited-2026-q4"); a tagged version is never pruned."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="dataset_tag_unique")]


class DatasetMember(models.Model):
    """A (sample, label) pair valid in versions [valid_from, valid_to). Storage grows with changes."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=200)
    valid_from = models.PositiveIntegerField()
    valid_to = models.PositiveIntegerField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["project", "valid_from"], name="member_from_idx"),
            models.Index(fields=["project", "valid_to"], name="member_to_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["sample"], condition=Q(valid_to__isnull=True), name="member_open_unique")
        ]


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"  # trained and registered, but the gate kept the champion


class TrainingRun(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="runs")
    config = models.JSONField()
    config_hash = models.CharField(max_length=64)
    trigger = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    metrics = models.JSONField(default=dict)
    gate = models.JSONField(null=True)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset_version", "config_hash"], name="run_per_version_config")
        ]


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="model_version")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="model_versions")
    metrics = models.JSONField(default=dict)
    params = models.JSONField(default=dict)
    lineage = models.JSONField(default=dict)
    classes = models.JSONField(help_text="Labels the estimator was fitted on, in its column order.")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the skops artifact.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="model_version_unique")]


class ModelArtifact(models.Model):
    """The skops file, kept in the database so that every web and worker machine can load it."""

    model_version = models.OneToOneField(
        ModelVersion, on_delete=models.CASCADE, primary_key=True, related_name="artifact"
    )
    data = models.BinaryField()


class ModelAlias(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    alias = models.CharField(max_length=32)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "alias"], name="model_alias_unique")]


class AliasEvent(models.Model):
    """Append-only history of alias moves (promotions and rollbacks)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    alias = models.CharField(max_length=32)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    previous = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)


class RetrainState(models.Model):
    """Whether a cut-and-train is already on its way, so that a burst of labels enqueues it once.

    ``cut_requested_at`` is set by a conditional UPDATE (only one request wins) and cleared by the
    task when it is done; a request older than the policy's patience is assumed lost and renewed.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="+")
    cut_requested_at = models.DateTimeField(null=True)
    # The last LabelChange id a cut looked at, even when it found nothing to cut (net-zero changes).
    seen_change_id = models.BigIntegerField(default=0)
    # The model that last re-scored the queue (the newest, or a champion promoted by hand): samples
    # sent later without probabilities are scored by it too, so the queue is ranked by one model.
    scorer = models.ForeignKey("ModelVersion", null=True, on_delete=models.SET_NULL, related_name="+")
    # When a drifted window last triggered retraining (retrain.on_drift), so one drift trains once.
    drift_triggered_at = models.DateTimeField(null=True)


class LabelIssueStatus(models.TextChoices):
    OPEN = "open"
    IN_REVIEW = "in_review"  # sent to a reviewer
    RESOLVED = "resolved"  # the reviewer decided (kept or changed the label)


class LabelIssue(models.Model):
    """A label that the out-of-fold predictions of a dataset version flag as likely wrong."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="+")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="label_issues")
    given_label = models.CharField(max_length=200)
    suggested_label = models.CharField(max_length=200)
    score = models.FloatField()
    status = models.CharField(max_length=16, choices=LabelIssueStatus.choices, default=LabelIssueStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["project", "status", "-score"], name="label_issue_rank_idx")]
        constraints = [models.UniqueConstraint(fields=["dataset_version", "sample"], name="label_issue_per_version")]
