"""Knowledge-base forms: upload a document, build the index, search it."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.knowledge.services import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
)


class DocumentUploadForm(forms.Form):
    file = forms.FileField(
        allow_empty_file=True,  # the reader names the problem ("… is empty")
        help_text="Plain text, Markdown, HTML, PDF or JSON Lines (UTF-8).",
    )
    text_field = forms.CharField(
        max_length=200,
        required=False,
        initial="text",
        label="JSON Lines text field",
        help_text="For .jsonl files: the field that holds each row's text.",
    )


class IndexForm(forms.Form):
    tokenizer_model = forms.ModelChoiceField(
        queryset=CatalogModel.objects.none(),
        label="Measure chunks with the tokenizer of",
        help_text="The model the application will run, so a chunk's size is what it sees.",
    )
    chunk_size = forms.IntegerField(
        min_value=16, max_value=2048, initial=DEFAULT_CHUNK_SIZE, label="Chunk size (tokens)"
    )
    chunk_overlap = forms.IntegerField(
        min_value=0, max_value=1024, initial=DEFAULT_CHUNK_OVERLAP, label="Overlap (tokens)"
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["tokenizer_model"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = CatalogModel.objects.for_project(project).pickable()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        size, overlap = cleaned.get("chunk_size"), cleaned.get("chunk_overlap")
        if size is not None and overlap is not None and overlap >= size:
            self.add_error("chunk_overlap", "The overlap must be smaller than the chunk size.")
        return cleaned


class SearchForm(forms.Form):
    q = forms.CharField(max_length=500, label="Search the index", strip=True)
