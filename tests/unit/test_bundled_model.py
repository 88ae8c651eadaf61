"""The real bundled SmolLM2-135M-Instruct (converted once into var/models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from workers.ml import loading
from workers.ml.generation.stream import generate
from workers.ml.params import GenerateParams

COMMON_WORDS = {"the", "is", "of", "and", "a", "in", "capital", "city", "france", "paris"}


@pytest.mark.bundled_model
def test_the_bundled_model_answers_in_english() -> None:
    loaded = loading.load(loading.ModelSpec("bundled"), Path(settings.MODELS_DIR), device="cpu")
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


@pytest.mark.bundled_model
def test_the_bundled_model_can_be_aligned_although_it_came_from_gguf(tmp_path: Path) -> None:
    """The converted weights are plain float32, but the loaded model still names the GGUF
    quantizer; alignment must train a copy anyway (Trainer refuses GGUF models)."""
    from workers.ml.params import AlignParams
    from workers.ml.training import dpo

    loaded = loading.load(loading.ModelSpec("bundled"), Path(settings.MODELS_DIR), device="cpu")
    pairs = [dpo.Pair(f"Say hi {i}:", f"Hello there {i}.", f"Go away {i}.") for i in range(6)]
    params = AlignParams(
        model_ref="smollm2-135m-instruct",
        preference_set_id=1,
        max_steps=2,
        batch_size=2,
        max_length=64,
        checkpoint_every=0,
    )

    result = dpo.align(loaded, params, pairs, out_dir=tmp_path)

    assert result.status == "succeeded" and result.steps == 2
    assert (tmp_path / "final" / "adapter_model.safetensors").is_file()
    assert loaded.model.hf_quantizer is not None  # the cached inference model is untouched
