"""BaseModel is CatalogModel: the catalog holds base models and the project's own candidates
(fine-tuned, aligned, exported), and the old name also clashed with pydantic's BaseModel."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("lifecycle_app", "0012_step_slugs")]

    operations = [migrations.RenameModel(old_name="BaseModel", new_name="CatalogModel")]
