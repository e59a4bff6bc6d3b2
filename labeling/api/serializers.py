"""Input and output shapes of the labeling API (see ../shared/API.md)."""

from typing import Any

from rest_framework import serializers

from labeling.models import FieldKind, Project, Role
from labeling.project_settings import DEFAULTS, ProjectSettings

SETTINGS_GROUPS = tuple(DEFAULTS)

MAX_LABELS = 1000
MAX_FIELDS = 500


class TokenRequest(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=512, trim_whitespace=False)


class TokenResponse(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class UserCreate(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(min_length=8, max_length=512, trim_whitespace=False)


class UserOut(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MemberIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberOut(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()


def _check_labels(value: list[str]) -> list[str]:
    if len(value) < 2:
        raise serializers.ValidationError("give at least two labels")
    if len(value) > MAX_LABELS:
        raise serializers.ValidationError(f"at most {MAX_LABELS} labels")
    if len(set(value)) != len(value):
        raise serializers.ValidationError("labels must be unique")
    return value


def _storable(text: str) -> bool:
    """Whether ``text`` can be stored in a JSON column: PostgreSQL rejects NUL and lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_schema(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise serializers.ValidationError("must be a non-empty object of field: kind")
    if len(value) > MAX_FIELDS:
        raise serializers.ValidationError(f"at most {MAX_FIELDS} fields")
    kinds = set(FieldKind.values)
    for field, kind in value.items():
        if not isinstance(field, str) or not field.strip() or len(field) > 100:
            raise serializers.ValidationError("field names must be non-empty strings of at most 100 characters")
        if not _storable(field):
            raise serializers.ValidationError("field names must not contain NUL or lone surrogate characters")
        if not isinstance(kind, str) or kind not in kinds:
            raise serializers.ValidationError(f"field {field!r}: kind must be one of {', '.join(sorted(kinds))}")
    return dict(value)


class ProjectCreate(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    labels = serializers.ListField(child=serializers.CharField(max_length=200), allow_empty=False)
    schema = serializers.JSONField()
    overlap = serializers.IntegerField(min_value=1, max_value=20, default=1)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    selection = serializers.JSONField(required=False)
    retrain = serializers.JSONField(required=False)
    training = serializers.JSONField(required=False)
    queue = serializers.JSONField(required=False)
    consensus = serializers.JSONField(required=False)
    audit = serializers.JSONField(required=False)
    drift = serializers.JSONField(required=False)
    datasets = serializers.JSONField(required=False)

    def validate_labels(self, value: list[str]) -> list[str]:
        return _check_labels(value)

    def validate_schema(self, value: Any) -> dict[str, str]:
        return _check_schema(value)


class ProjectUpdate(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    overlap = serializers.IntegerField(min_value=1, max_value=20, required=False)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    selection = serializers.JSONField(required=False)
    retrain = serializers.JSONField(required=False)
    training = serializers.JSONField(required=False)
    queue = serializers.JSONField(required=False)
    consensus = serializers.JSONField(required=False)
    audit = serializers.JSONField(required=False)
    drift = serializers.JSONField(required=False)
    datasets = serializers.JSONField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown & {"labels", "schema"}:
            raise serializers.ValidationError({"labels": "labels and schema cannot change after creation"})
        return attrs


class ProjectOut(serializers.ModelSerializer):
    """A project with every settings group, defaults filled in."""

    schema = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "labels", "schema", "overlap", "gold_rate", "created_at"]

    def get_schema(self, project: Project) -> dict[str, str]:
        return dict(project.fields())

    def to_representation(self, instance: Project) -> dict[str, Any]:
        body = super().to_representation(instance)
        current = ProjectSettings.of(instance.settings)
        for group in SETTINGS_GROUPS:
            body[group] = dict(getattr(current, group))
        return body


class Counts(serializers.Serializer):
    samples = serializers.IntegerField()
    queued = serializers.IntegerField()
    labeled = serializers.IntegerField()
    dataset_versions = serializers.IntegerField()
    model_versions = serializers.IntegerField()


class ProjectDetailOut(ProjectOut):
    counts = serializers.SerializerMethodField()

    class Meta(ProjectOut.Meta):
        fields = [*ProjectOut.Meta.fields, "counts"]

    def get_counts(self, project: Project) -> dict[str, int]:
        return dict(self.context["counts"])


class QueueItem(serializers.Serializer):
    task_id = serializers.IntegerField(source="id")
    external_id = serializers.CharField(source="sample.external_id")
    reason = serializers.CharField()
    priority = serializers.FloatField()
    kind = serializers.CharField()


class Suggestion(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    confidence = serializers.FloatField()


class NextTask(serializers.Serializer):
    task_id = serializers.IntegerField()
    external_id = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    reason = serializers.CharField()
    kind = serializers.ChoiceField(choices=["label", "review"])
    suggestion = Suggestion(allow_null=True)
    lease_expires_at = serializers.DateTimeField()


class AnnotationIn(serializers.Serializer):
    label = serializers.CharField(max_length=200)  # type: ignore[assignment]
    duration_ms = serializers.IntegerField(min_value=0, max_value=86_400_000, required=False, allow_null=True)


class AnnotationOut(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]
    duration_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class LabelOut(serializers.Serializer):
    external_id = serializers.CharField(source="sample.external_id")
    label = serializers.CharField()  # type: ignore[assignment]
    confidence = serializers.FloatField()
    method = serializers.CharField()
    n_annotations = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class ReviewAnswer(serializers.Serializer):
    username = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    duration_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReviewChange(serializers.Serializer):
    old_label = serializers.CharField(allow_null=True)
    new_label = serializers.CharField(allow_null=True)
    method = serializers.CharField()
    actor = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class ReviewLabel(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]
    confidence = serializers.FloatField()
    method = serializers.CharField()


class ReviewItemOut(serializers.Serializer):
    task_id = serializers.IntegerField()
    kind = serializers.ChoiceField(
        choices=["review", "label"],
        help_text="review: a review task; label: a finished label task whose answers disagreed",
    )
    external_id = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    why = serializers.CharField()
    label = ReviewLabel(allow_null=True)  # type: ignore[assignment]
    suggestion = Suggestion(allow_null=True)
    answers = ReviewAnswer(many=True)
    history = ReviewChange(many=True)


class ReviewDecideIn(serializers.Serializer):
    label = serializers.CharField(max_length=200)  # type: ignore[assignment]
    why = serializers.CharField(max_length=500, help_text="why the reviewer decided so (kept in the label's history)")


class ReviewDecideOut(serializers.Serializer):
    external_id = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    confidence = serializers.FloatField()
    method = serializers.CharField()
