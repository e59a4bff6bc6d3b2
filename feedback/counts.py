from feedback.models import DatasetVersion, ModelVersion
from labeling.models import Project


def project_counts(project: Project) -> dict[str, int]:
    return {
        "dataset_versions": DatasetVersion.objects.filter(project=project).count(),
        "model_versions": ModelVersion.objects.filter(project=project).count(),
    }
