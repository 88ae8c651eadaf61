"""Model references the web hands to the serving worker and app-evaluation jobs: the host
that loads the model resolves them (several machines: the web's disk has no weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle_app.catalog.selectors import catalog_ref, model_for_ref
from lifecycle_app.models import CatalogModel
from workers.ml.errors import UserFacingError
from workers.tasks.base import model_folder


def test_a_catalog_reference_is_resolved_on_the_loading_host(
    tiny_model: CatalogModel, tiny_folder: Path
) -> None:
    ref = catalog_ref(tiny_model)
    assert ref == f"catalog:{tiny_model.id}"
    assert model_for_ref(ref) == tiny_model
    assert model_folder(ref) == str(tiny_folder)


def test_a_folder_value_is_read_as_it_is_and_a_deleted_model_is_named(
    tiny_model: CatalogModel, tiny_folder: Path
) -> None:
    assert model_folder(str(tiny_folder)) == str(tiny_folder)
    assert model_for_ref("catalog:x") is None and model_for_ref(str(tiny_folder)) is None
    ref = catalog_ref(tiny_model)
    tiny_model.delete()
    with pytest.raises(UserFacingError, match="was deleted"):
        model_folder(ref)
