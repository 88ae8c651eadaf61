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

from workers.ml.export.variants import ProgressFn, _noop, load_for_export
from workers.ml.loading import INT8_MARKER, LoadedModel, adapter_base, load_int8

# --- measuring ------------------------------------------------------------------------


@dataclass
class Measurement:
    """What one variant costs on this machine, and what it scores."""

    size_bytes: int
    load_s: float
    tokens_per_s: float
    latency_ms: float  # one request: prompt in, `max_new_tokens` greedy tokens out
    latency_tokens: int
    scores: dict[str, float] = field(default_factory=dict)
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """Load time, one-request latency (median of `repeats`), generation tokens/s and
    ROUGE on `prompts` (BuiltPrompt rows with references), greedy, on CPU."""
    from workers.ml.generation.batch import run_trial
    from workers.ml.generation.stream import generate_batch
    from workers.ml.params import GenerationSettings

    started = time.perf_counter()
    loaded = load_folder(path)
    load_s = time.perf_counter() - started
    settings = GenerationSettings(max_new_tokens=max_new_tokens, decoding="greedy")
    generate_batch(loaded, [latency_prompt], settings)  # warm-up
    times, tokens = [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        out = generate_batch(loaded, [latency_prompt], settings)
        times.append(time.perf_counter() - began)
        tokens = out[0].output_tokens if out else 0
    latency = statistics.median(times)
    scores: dict[str, float] = {}
    rows = 0
    if prompts:
        stats = run_trial(loaded, prompts, settings, score_kind=references_kind)
        scores, rows = stats.scores, stats.rows_done
    return Measurement(
        size_bytes=size_bytes,
        load_s=round(load_s, 3),
        tokens_per_s=round(tokens / latency, 2) if latency > 0 else 0.0,
        latency_ms=round(latency * 1000, 1),
        latency_tokens=tokens,
        scores=scores,
        rows=rows,
    )
