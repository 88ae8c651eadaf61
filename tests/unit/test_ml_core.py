"""The ML core on the tiny model: no Django, no worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workers.ml import bundled, loading
from workers.ml.errors import GenerationError, ModelNotAvailable
from workers.ml.generation.stream import generate
from workers.ml.params import GenerateParams

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny(models_dir: Path) -> loading.LoadedModel:
    return loading.load(loading.ModelSpec("tiny"), models_dir, device="cpu")


def params(**overrides: object) -> GenerateParams:
    base: dict[str, object] = {
        "model_ref": "tiny",
        "prompt": "Summarize the dialogue.",
        "max_new_tokens": 12,
    }
    return GenerateParams(**(base | overrides))  # type: ignore[arg-type]


def test_it_builds_the_tiny_model_once_and_describes_it(
    models_dir: Path, tiny: loading.LoadedModel
) -> None:
    path = bundled.build_tiny(models_dir / bundled.TINY_DIRNAME)
    before = sorted(p.stat().st_mtime for p in path.iterdir())
    assert bundled.build_tiny(path) == path
    assert sorted(p.stat().st_mtime for p in path.iterdir()) == before
    info = loading.describe(str(path))
    assert info.family == "decoder-only"
    assert info.n_params == sum(p.numel() for p in tiny.model.parameters())
    assert info.context_length == 4096
    assert (info.n_layers, info.hidden_size) == (2, 64)


def test_greedy_generation_is_deterministic_and_reports_counts(tiny: loading.LoadedModel) -> None:
    first = generate(tiny, params())
    second = generate(tiny, params())
    assert first.text == second.text != ""
    assert first.output_tokens == 12
    assert first.finish_reason == "length"
    assert first.prompt_tokens > 0


def test_sampling_follows_the_seed(tiny: loading.LoadedModel) -> None:
    a = generate(tiny, params(decoding="sampling", seed=1, temperature=1.5, max_new_tokens=20))
    b = generate(tiny, params(decoding="sampling", seed=1, temperature=1.5, max_new_tokens=20))
    c = generate(tiny, params(decoding="sampling", seed=2, temperature=1.5, max_new_tokens=20))
    assert a.text == b.text
    assert a.text != c.text


def test_progress_is_measured_and_ends_at_the_token_count(tiny: loading.LoadedModel) -> None:
    seen: list[tuple[int, int]] = []
    result = generate(
        tiny,
        params(max_new_tokens=30),
        on_progress=lambda d, t, _: seen.append((d, t)),
        progress_interval_s=0,
    )
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert seen[-1] == (result.output_tokens, 30)


def test_cancel_is_honoured_at_the_next_step(tiny: loading.LoadedModel) -> None:
    calls = {"n": 0}

    def should_cancel() -> bool:
        calls["n"] += 1
        return calls["n"] >= 5

    result = generate(tiny, params(max_new_tokens=500), should_cancel=should_cancel)
    assert result.finish_reason == "cancelled"
    assert result.output_tokens == 5


def test_a_prompt_past_the_context_window_is_a_readable_error(tiny: loading.LoadedModel) -> None:
    with pytest.raises(GenerationError, match="context window of 4096 tokens"):
        generate(tiny, params(prompt="xz" * 1995, max_new_tokens=2048))


def test_a_missing_local_model_names_the_path(models_dir: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="/nowhere/model"):
        loading.resolve(loading.ModelSpec("local", "/nowhere/model"), models_dir)


def test_an_unknown_hub_id_is_not_downloaded(models_dir: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="not on this machine"):
        loading.load(loading.ModelSpec("hub", "nobody/no-such-model-xyz"), models_dir)


def test_family_comes_from_the_config() -> None:
    from transformers import BertConfig, LlamaConfig, T5Config

    assert loading.family_of(T5Config()) == "encoder-decoder"
    assert loading.family_of(BertConfig()) == "encoder-only"
    assert loading.family_of(LlamaConfig(architectures=["LlamaForCausalLM"])) == "decoder-only"


def test_params_reject_bad_values() -> None:
    from pydantic import ValidationError

    for bad in (
        {"prompt": "   "},
        {"max_new_tokens": 0},
        {"max_new_tokens": 100000},
        {"temperature": -1},
    ):
        with pytest.raises(ValidationError):
            params(**bad)


def test_the_ml_core_does_not_import_django_and_the_web_side_does_not_import_torch() -> None:
    code_ml = (
        "import sys, workers.ml.loading, workers.ml.bundled, workers.ml.generation.stream, "
        "workers.ml.params;"
        "assert 'django' not in sys.modules, 'ml imported django'"
    )
    code_web = (
        "import os, sys, django;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'lifecycle_app.settings');"
        "django.setup();"
        "import lifecycle_app.urls, lifecycle_app.jobs.services, lifecycle_app.wizard.views;"
        "assert 'torch' not in sys.modules, 'web side imported torch'"
    )
    for code in (code_ml, code_web):
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
