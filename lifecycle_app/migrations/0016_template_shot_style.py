"""Prompt templates say how shots are written (issue 19): as earlier chat turns (the
default from now on) or inline. Versions saved before ran their shots inline, so they keep
"inline"; new versions default to "chat"."""

from django.db import migrations, models

CHOICES = [("chat", "As earlier chat turns"), ("inline", "Inline, in one message")]


class Migration(migrations.Migration):
    dependencies = [("lifecycle_app", "0015_job_fencing_and_resend")]

    operations = [
        migrations.AddField(
            model_name="prompttemplate",
            name="shot_style",
            field=models.CharField(choices=CHOICES, default="inline", max_length=10),
        ),
        migrations.AlterField(
            model_name="prompttemplate",
            name="shot_style",
            field=models.CharField(choices=CHOICES, default="chat", max_length=10),
        ),
    ]
