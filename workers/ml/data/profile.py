"""Token-length profile of a cleaned dataset, for choosing context length and batch size.

Reads the JSON Lines that `validation.write_clean` wrote, tokenizes inputs and targets in
batches and keeps only two arrays of lengths (4 bytes a row), never the texts.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.ml.data.validation import SPLITS, read_clean

# (rows tokenized so far, rows in the file)
ProgressFn = Callable[[int, int], None]


def profile(
    clean_path: Path,
    tokenizer: Any,
    *,
    context_length: int,
    bins: int = 20,
    batch_size: int = 256,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Count rows per split and describe input/target lengths in tokens.

    Lengths are counted without special tokens. `over_context` counts rows whose input
    and target together are longer than `context_length` tokens. Histograms have `bins`
    equal-width bins from 0 to the longest row (the last bin includes its right edge),
    so their counts sum to the number of rows.
    """
    import numpy as np

    total = _count_lines(clean_path)
    rows = dict.fromkeys(SPLITS, 0)
    input_lengths, target_lengths = array("I"), array("I")
    inputs: list[str] = []
    targets: list[str] = []

    def flush() -> None:
        if not inputs:
            return
        counts = token_counts(tokenizer, inputs + targets)
        input_lengths.extend(counts[: len(inputs)])
        target_lengths.extend(counts[len(inputs) :])
        inputs.clear()
        targets.clear()
        if on_progress:
            on_progress(len(input_lengths), total)

    for record in read_clean(clean_path):
        rows[record["split"]] = rows.get(record["split"], 0) + 1
        inputs.append(record["input"])
        targets.append(record["target"])
        if len(inputs) >= batch_size:
            flush()
    flush()
    if on_progress and not input_lengths:
        on_progress(0, total)

    lengths_in = np.frombuffer(input_lengths, dtype=np.uint32).astype(np.int64)
    lengths_out = np.frombuffer(target_lengths, dtype=np.uint32).astype(np.int64)
    return {
        "rows": rows,
        "input_tokens": _describe(lengths_in, bins),
        "target_tokens": _describe(lengths_out, bins),
        "over_context": int(np.count_nonzero(lengths_in + lengths_out > context_length)),
        "context_length": context_length,
        "tokenizer": getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__,
    }


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """Tokens per text without special tokens, as `tokenizer(texts)["input_ids"]` counts them.

    A fast tokenizer's Rust backend is asked directly when it has no truncation or padding
    set (the wrapper would switch those off): it skips building the lists of ids.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return [len(encoding) for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _describe(lengths: Any, bins: int) -> dict[str, Any]:
    import numpy as np

    if not len(lengths):
        edges = np.linspace(0.0, 1.0, bins + 1)
        return {
            "min": 0,
            "max": 0,
            "mean": 0.0,
            "p50": 0.0,
            "p95": 0.0,
            "edges": [float(e) for e in edges],
            "counts": [0] * bins,
        }
    ordered = np.sort(lengths)
    longest = int(ordered[-1])
    # Whole-token bins [a, b): at most `bins` of them, each at least one token wide, so a
    # short target (labels of 1-2 tokens) gets one bar per length instead of "0-0, 0-1".
    width = max(1, -(-(longest + 1) // bins))
    n_bins = -(-(longest + 1) // width)
    counts, edges = np.histogram(ordered, bins=np.arange(n_bins + 1) * width)
    p50, p95 = np.percentile(ordered, [50, 95])
    return {
        "min": int(ordered[0]),
        "max": longest,
        "mean": round(float(ordered.mean()), 3),
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
    }


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count
