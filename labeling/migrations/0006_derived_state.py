"""Derived figures (the Dawid-Skene estimate, the stored audit report) move out of
``Project.settings`` into their own table; the keys that held them are moved, then dropped."""

import django.db.models.deletion
from django.db import migrations, models


KEYS = {"_consensus_state": "consensus", "_audit_report": "audit"}


def move_out_of_settings(apps, schema_editor):  # type: ignore[no-untyped-def]
    Project = apps.get_model("labeling", "Project")
    DerivedState = apps.get_model("labeling", "DerivedState")
    for project in Project.objects.all().iterator():
        found = {old: project.settings[old] for old in KEYS if old in (project.settings or {})}
        if not found:
            continue
        for old, value in found.items():
            DerivedState.objects.create(project=project, key=KEYS[old], value=value)
        project.settings = {k: v for k, v in project.settings.items() if k not in KEYS}
        project.save(update_fields=["settings"])


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0005_desk_queue"),
    ]

    operations = [
        migrations.CreateModel(
            name="DerivedState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=32)),
                ("value", models.JSONField(default=dict)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="derived", to="labeling.project"
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("project", "key"), name="derived_state_unique")],
            },
        ),
        migrations.RunPython(move_out_of_settings, migrations.RunPython.noop),
    ]
