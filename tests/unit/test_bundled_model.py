"""The real bundled SmolLM2-135M-Instruct (converted once into var/models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from workers.ml import models
from workers.ml.generate import generate
from workers.ml.params import GenerateParams

COMMON_WORDS = {"the", "is", "of", "and", "a", "in", "capital", "city", "france", "paris"}


@pytest.mark.bundled_model
def test_the_bundled_model_answers_in_english() -> None:
    loaded = models.load(models.ModelSpec("bundled"), Path(settings.MODELS_DIR), device="cpu")
    result = generate(
        loaded,
        GenerateParams(
            model_ref="smollm2-135m-instruct",
            prompt="What is the capital of France? Answer in one sentence.",
            max_new_tokens=24,
        ),
    )
    words = re.findall(r"[a-z]+", result.text.lower())
    assert result.output_tokens > 0
    assert len(words) >= 3, result.text
    assert COMMON_WORDS & set(words), result.text
    ascii_share = sum(c.isascii() for c in result.text) / len(result.text)
    assert ascii_share > 0.95, result.text
    assert "paris" in words, result.text
