"""Input and output shapes of the feedback API (see ../shared/API.md)."""

from typing import Any

from rest_framework import serializers

from feedback.models import DatasetVersion, ModelVersion, TrainingRun
from labeling.models import Sample, SampleStatus


class IngestResult(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.ListField(child=serializers.DictField())


class SampleOut(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = ["external_id", "status", "data", "observed_at", "created_at"]

    def get_status(self, sample: Sample) -> str:
        return SampleStatus(sample.status).name.lower()


class DatasetVersionOut(serializers.ModelSerializer):
    parent = serializers.SerializerMethodField()  # type: ignore[assignment]
    tags = serializers.SerializerMethodField()

    class Meta:
        model = DatasetVersion
        fields = ["version", "hash", "parent", "size", "created_at", "trigger", "tags", "pruned_at"]

    def get_parent(self, version: DatasetVersion) -> int | None:
        return version.parent.version if version.parent_id and version.parent else None

    def get_tags(self, version: DatasetVersion) -> list[str]:
        return sorted(tag.name for tag in version.tags.all())


class TagIn(serializers.Serializer):
    name = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        max_length=100,
        error_messages={"invalid": "letters, digits and . _ : - only, starting with a letter or digit"},
    )


class TagOut(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField(source="version.version")
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", default=None)


class PruneIn(serializers.Serializer):
    retention_days = serializers.IntegerField(min_value=1, max_value=100_000, required=False, allow_null=True)
    dry_run = serializers.BooleanField(required=False, default=False)


class PruneOut(serializers.Serializer):
    pruned = serializers.ListField(child=serializers.IntegerField())
    members_deleted = serializers.IntegerField()
    kept = serializers.DictField(child=serializers.CharField())
    retention_days = serializers.IntegerField(allow_null=True)
    dry_run = serializers.BooleanField()


class Diff(serializers.Serializer):
    added = serializers.IntegerField()
    changed = serializers.IntegerField()
    removed = serializers.IntegerField()


class DatasetVersionDetail(DatasetVersionOut):
    diff = serializers.SerializerMethodField()

    class Meta(DatasetVersionOut.Meta):
        fields = [*DatasetVersionOut.Meta.fields, "diff"]

    def get_diff(self, version: DatasetVersion) -> dict[str, int]:
        return {"added": version.n_added, "changed": version.n_changed, "removed": version.n_removed}


class RunIn(serializers.Serializer):
    dataset_version = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class RunCreated(serializers.Serializer):
    run_id = serializers.IntegerField()
    status = serializers.CharField()
    dataset_version = serializers.IntegerField()
    created = serializers.BooleanField()


class Gate(serializers.Serializer):
    passed = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
    checks = serializers.ListField(child=serializers.DictField(), required=False)


class RunOut(serializers.ModelSerializer):
    run_id = serializers.IntegerField(source="pk")
    dataset_version = serializers.IntegerField(source="dataset_version.version")
    model_version = serializers.SerializerMethodField()
    gate = Gate(allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "run_id",
            "status",
            "progress",
            "dataset_version",
            "metrics",
            "model_version",
            "gate",
            "error",
            "trigger",
            "attempts",
            "config",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_model_version(self, run: TrainingRun) -> int | None:
        model_version = getattr(run, "model_version", None)
        return model_version.version if model_version else None


class ModelOut(serializers.ModelSerializer):
    dataset_version = serializers.IntegerField(source="dataset_version.version")
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "dataset_version",
            "metrics",
            "aliases",
            "created_at",
            "digest",
            "params",
            "lineage",
            "classes",
        ]

    def get_aliases(self, model_version: ModelVersion) -> list[str]:
        return sorted(self.context.get("aliases", {}).get(model_version.pk, []))


class ModelDetail(ModelOut):
    """A model version with its run, gate decision and dataset hash (the confusion matrix and
    slices are in ``metrics``, the parameters, code and library versions in ``lineage``)."""

    run_id = serializers.IntegerField(source="run.pk")
    dataset_hash = serializers.CharField(source="dataset_version.hash")
    gate = serializers.JSONField(source="run.gate")
    history = serializers.SerializerMethodField()

    class Meta(ModelOut.Meta):
        fields = [*ModelOut.Meta.fields, "run_id", "dataset_hash", "gate", "history"]

    def get_history(self, model_version: ModelVersion) -> list[dict[str, Any]]:
        return [e for e in self.context.get("history", []) if model_version.version in (e["version"], e["previous"])]


class AliasEventOut(serializers.Serializer):
    alias = serializers.CharField()
    version = serializers.IntegerField()
    previous = serializers.IntegerField(allow_null=True)
    actor = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class PromoteIn(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class PredictItem(serializers.Serializer):
    data = serializers.DictField()  # type: ignore[assignment]


class PredictIn(serializers.Serializer):
    items = PredictItem(many=True)


class Prediction(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    probabilities = serializers.DictField(child=serializers.FloatField())


class PredictOut(serializers.Serializer):
    model_version = serializers.IntegerField()
    predictions = Prediction(many=True)


def sample_detail(sample: Sample, history: dict[str, Any], score: Any) -> dict[str, Any]:
    label = history["label"]
    return {
        "external_id": sample.external_id,
        "status": SampleStatus(sample.status).name.lower(),
        "data": sample.data,
        "observed_at": sample.observed_at,
        "created_at": sample.created_at,
        "scores": {
            "uncertainty": score.uncertainty if score else None,
            "scored_by": score.scored_by.version if score and score.scored_by else None,
            "scored_at": score.scored_at if score else None,
        },
        "prediction": {
            "label": score.production_label,
            "probabilities": score.production_probabilities,
            "model_version": score.production_model_version,
        }
        if score and (score.production_label or score.production_probabilities)
        else None,
        "suggestion": sample.suggestion,
        "tasks": [
            {**task, "task_id": task.pop("id"), "status": ["pending", "done", "cancelled"][task["status"]]}
            for task in history["tasks"]
        ],
        "annotations": [
            {
                "task_id": a["task_id"],
                "username": a["user__username"],
                "label": a["label"],
                "duration_ms": a["duration_ms"],
                "created_at": a["created_at"],
            }
            for a in history["annotations"]
        ],
        "label": {
            "label": label.label,
            "confidence": label.confidence,
            "method": label.method,
            "n_annotations": label.n_annotations,
            "updated_at": label.updated_at,
        }
        if label
        else None,
        "history": [
            {
                "old": c["old_label"],
                "new": c["new_label"],
                "method": c["method"],
                "by": c["actor__username"],
                "reason": c["reason"],
                "at": c["created_at"],
            }
            for c in history["label_changes"]
        ],
    }
