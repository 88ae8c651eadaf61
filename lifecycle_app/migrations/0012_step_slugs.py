"""The Integrate stage's steps are named deploy and app (were optimize and augment)."""

from django.db import migrations

RENAMES = {"optimize": "deploy", "augment": "app"}


def rename(apps, schema_editor, renames=RENAMES):  # type: ignore[no-untyped-def]
    Stage = apps.get_model("lifecycle_app", "Stage")
    for stage in Stage.objects.filter(key="integrate"):
        steps = dict(stage.steps or {})
        for old, new in renames.items():
            if old in steps:
                steps[new] = steps.pop(old)
        if steps != stage.steps:
            stage.steps = steps
            stage.save(update_fields=["steps"])


def unrename(apps, schema_editor):  # type: ignore[no-untyped-def]
    rename(apps, schema_editor, {new: old for old, new in RENAMES.items()})


class Migration(migrations.Migration):
    dependencies = [("lifecycle_app", "0011_job_kinds")]

    operations = [migrations.RunPython(rename, unrename)]
