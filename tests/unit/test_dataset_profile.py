"""Token-length profiles of cleaned datasets, with the tiny model's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workers.ml import bundled
from workers.ml.data import validation
from workers.ml.data.profile import profile


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    path = bundled.build_tiny(tmp_path_factory.mktemp("models") / "tiny")
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture
def clean_file(tmp_path: Path) -> Path:
    raw = tmp_path / "raw.jsonl"
    with raw.open("w") as f:
        for i in range(40):
            words = " ".join(["summarize the dialogue"] * (1 + i % 7))
            f.write(json.dumps({"input": f"{words} {i}", "target": "ok " * (1 + i % 3)}) + "\n")
    out = tmp_path / "clean.jsonl"
    validation.write_clean(
        raw,
        out,
        fmt="jsonl",
        encoding="utf-8",
        input_field="input",
        target_field="target",
        seed=0,
        fractions=(0.5, 0.25, 0.25),
        stratify=False,
        max_rows=100,
    )
    return out


def lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def test_it_counts_rows_per_split_and_histograms_every_row(
    tokenizer: Any, clean_file: Path
) -> None:
    progress: list[tuple[int, int]] = []
    result = profile(
        clean_file,
        tokenizer,
        context_length=4096,
        bins=8,
        batch_size=16,
        on_progress=lambda *a: progress.append(a),
    )
    assert result["rows"] == {"train": 20, "validation": 10, "test": 10}
    records = list(validation.read_clean(clean_file))
    inputs = lengths(tokenizer, [r["input"] for r in records])
    for key, expected in (("input_tokens", inputs), ("target_tokens", None)):
        stats = result[key]
        assert sum(stats["counts"]) == 40 and 1 <= len(stats["counts"]) <= 8
        assert len(stats["edges"]) == len(stats["counts"]) + 1 and stats["edges"][0] == 0.0
        widths = {b - a for a, b in zip(stats["edges"], stats["edges"][1:], strict=False)}
        assert len(widths) == 1 and widths.pop() >= 1  # whole-token bins of one width
        assert stats["edges"][-2] <= stats["max"] < stats["edges"][-1]
        assert stats["min"] <= stats["p50"] <= stats["p95"] <= stats["max"]
        if expected:
            assert (stats["min"], stats["max"]) == (min(expected), max(expected))
            assert stats["mean"] == round(sum(expected) / len(expected), 3)
    assert progress == [(16, 40), (32, 40), (40, 40)]
    assert result["over_context"] == 0 and result["context_length"] == 4096
    assert result["tokenizer"]


def test_it_counts_rows_longer_than_the_context(tokenizer: Any, clean_file: Path) -> None:
    records = list(validation.read_clean(clean_file))
    totals = [
        a + b
        for a, b in zip(
            lengths(tokenizer, [r["input"] for r in records]),
            lengths(tokenizer, [r["target"] for r in records]),
            strict=True,
        )
    ]
    context = sorted(totals)[len(totals) // 2]
    result = profile(clean_file, tokenizer, context_length=context)
    assert result["over_context"] == sum(t > context for t in totals) > 0


def test_it_profiles_an_empty_file_as_zeros(tokenizer: Any, tmp_path: Path) -> None:
    empty = tmp_path / "clean.jsonl"
    empty.write_text("")
    result = profile(empty, tokenizer, context_length=8, bins=4)
    assert result["rows"] == {"train": 0, "validation": 0, "test": 0}
    assert result["input_tokens"]["counts"] == [0, 0, 0, 0]
    assert result["over_context"] == 0
