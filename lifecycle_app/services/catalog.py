from __future__ import annotations

from typing import Any

from lifecycle_app.models import BaseModel


def basemodel_upsert(*, slug: str, **fields: Any) -> BaseModel:
    model, _ = BaseModel.objects.update_or_create(slug=slug, defaults=fields)
    return model
