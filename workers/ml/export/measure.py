"""Measure an exported variant on this machine: size, load time, one-request latency,
generation speed and ROUGE, loaded fresh on CPU (no warm cache).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.ml.export.onnx_runtime import OnnxLoaded, is_onnx_variant, load_onnx
from workers.ml.export.variants import ProgressFn, _noop, load_for_export
from workers.ml.loading import INT8_MARKER, LoadedModel, adapter_base, load_int8

# --- measuring ------------------------------------------------------------------------


@dataclass
class Measurement:
    """What one variant costs on this machine, and what it scores."""

    size_bytes: int
    load_s: float
    tokens_per_s: float  # generated tokens per second of that request
    latency_ms: float  # one request: prompt in, exactly `max_new_tokens` greedy tokens out
    latency_tokens: int
    ms_per_token: float = 0.0  # latency_ms / latency_tokens: comparable across variants
    scores: dict[str, float] = field(default_factory=dict)
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_any(path: str) -> LoadedModel | OnnxLoaded:
    """`load_folder`, or an ONNX variant loaded into an onnxruntime session."""
    return load_onnx(path) if is_onnx_variant(path) else load_folder(path)


def load_folder(path: str) -> LoadedModel:
    """Load a variant (or its parent) fresh from disk on CPU, with no warm cache."""
    from transformers import AutoTokenizer

    from workers.ml.loading import context_length_of, read_config

    folder = Path(path)
    if (folder / INT8_MARKER).is_file():
        model = load_int8(path)
    else:
        model, _ = load_for_export(path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    base = adapter_base(folder)
    config = read_config(base or path)
    model.to("cpu").eval()
    return LoadedModel(model, tokenizer, "cpu", path, context_length_of(config))


def fixed_length(loaded: LoadedModel | OnnxLoaded, prompt: str, new_tokens: int) -> int:
    """Generate exactly `new_tokens` greedy tokens (the end token does not stop it), so
    every variant's latency is for the same output length. Returns the tokens generated."""
    import torch

    from workers.ml.generation.stream import pad_token_id
    from workers.ml.params import GenerationSettings

    tokenizer = loaded.tokenizer
    if isinstance(loaded, OnnxLoaded):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        settings = GenerationSettings(max_new_tokens=new_tokens, decoding="greedy")
        return len(loaded.decode_ids([ids], settings, min_new_tokens=new_tokens)[0].ids)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = loaded.model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            repetition_penalty=1.1,
            pad_token_id=pad_token_id(tokenizer),
        )
    return int(out.shape[1] - inputs["input_ids"].shape[1])


def measure(
    path: str,
    *,
    size_bytes: int,
    prompts: Sequence[Any],
    references_kind: Any = "rouge",
    latency_prompt: str,
    max_new_tokens: int = 32,
    repeats: int = 3,
    on_progress: ProgressFn = _noop,
) -> Measurement:
    """Load time, one-request latency at a fixed output length (median of `repeats`;
    exactly `max_new_tokens` tokens, so variants compare per generated token), generation
    tokens/s and ROUGE on `prompts` (BuiltPrompt rows with references), greedy, on CPU."""
    from workers.ml.generation.batch import run_trial
    from workers.ml.params import GenerationSettings

    started = time.perf_counter()
    loaded = load_any(path)
    load_s = time.perf_counter() - started
    settings = GenerationSettings(max_new_tokens=max_new_tokens, decoding="greedy")
    fixed_length(loaded, latency_prompt, max_new_tokens)  # warm-up
    times, tokens = [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        tokens = fixed_length(loaded, latency_prompt, max_new_tokens)
        times.append(time.perf_counter() - began)
    latency = statistics.median(times)
    scores: dict[str, float] = {}
    rows = 0
    if not prompts:
        pass
    elif isinstance(loaded, OnnxLoaded):
        scores, rows = onnx_scores(loaded, prompts, settings, references_kind)
    else:
        stats = run_trial(loaded, prompts, settings, score_kind=references_kind)
        scores, rows = stats.scores, stats.rows_done
    return Measurement(
        size_bytes=size_bytes,
        load_s=round(load_s, 3),
        tokens_per_s=round(tokens / latency, 2) if latency > 0 else 0.0,
        latency_ms=round(latency * 1000, 1),
        latency_tokens=tokens,
        ms_per_token=round(latency * 1000 / tokens, 2) if tokens else 0.0,
        scores=scores,
        rows=rows,
    )


def onnx_scores(
    loaded: OnnxLoaded, prompts: Sequence[Any], settings: Any, score_kind: Any
) -> tuple[dict[str, float], int]:
    """`run_trial`'s scores for an ONNX variant: the same prompts, settings and metrics."""
    from workers.ml.scoring import metrics

    todo = [p for p in prompts if not p.skipped]
    if not todo:
        return {}, 0
    outputs = loaded.generate_texts([p.text for p in todo], settings)
    assert outputs is not None
    scores = metrics.score(score_kind, [o[0] for o in outputs], [p.reference for p in todo])
    return metrics.aggregate(scores), len(todo)
