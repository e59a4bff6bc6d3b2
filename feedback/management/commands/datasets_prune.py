"""``python manage.py datasets_prune``: prune old untagged training-set versions (what the
periodic task does), for one project or for every project with datasets.retention_days set."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback import datasets
from labeling.models import Project
from labeling.project_settings import ProjectSettings


class Command(BaseCommand):
    help = (
        "Prune untagged dataset versions older than datasets.retention_days (or --days), never the latest, "
        "a tagged one, or one a model was trained on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", type=int, help="only this project (default: every project with a retention)")
        parser.add_argument("--days", type=int, help="retention in days, instead of the project's setting")
        parser.add_argument("--dry-run", action="store_true", help="list what would be pruned, prune nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options.get("days")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        projects = Project.objects.order_by("pk")
        if options.get("project") is not None:
            projects = projects.filter(pk=options["project"])
            if not projects.exists():
                raise CommandError(f"no project {options['project']}")
        for project in projects:
            if days is None and ProjectSettings.of(project.settings).datasets["retention_days"] is None:
                continue
            result = datasets.dataset_versions_prune(
                project_id=project.pk, retention_days=days, dry_run=options["dry_run"]
            )
            verb = "would prune" if options["dry_run"] else "pruned"
            pruned = ", ".join(f"v{n}" for n in result.pruned) or "nothing"
            kept = "; ".join(f"v{n}: {why}" for n, why in sorted(result.kept.items()))
            self.stdout.write(
                f"project {project.pk}: {verb} {pruned} ({result.members_deleted} member rows deleted)"
                + (f"; kept {kept}" if kept else "")
            )
