"""``python manage.py demo``: build the digits demo project and wait for the worker's first model."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from feedback import demo
from feedback.models import ModelAlias


class Command(BaseCommand):
    help = "Create the handwritten-digits demo project (idempotent) and wait for its first champion."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait", type=float, default=180.0, help="seconds to wait for the first model (0: no wait)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo.build()
        verb = "Created" if result.created else "Found"
        self.stdout.write(f"{verb} demo project {result.project.name!r} (id {result.project.pk}).")
        deadline = time.monotonic() + options["wait"]
        while options["wait"] > 0:
            if ModelAlias.objects.filter(project=result.project, alias="champion").exists():
                self.stdout.write("The worker trained the first model; it is the champion.")
                break
            if time.monotonic() > deadline:
                self.stderr.write("No model yet: is the Celery worker running? The demo works without one for now.")
                break
            time.sleep(0.5)
