"""In-context learning on the bundled model: zero-shot against three shots written three ways.

Runs standalone: `.venv/bin/python bench/icl.py` (`LIFECYCLE_MODELS_DIR` to reuse converted
models). With the bundled SmolLM2-135M-Instruct and the shipped dialogue sample
(lifecycle_app/samples/dialogue_summaries.jsonl: the last N_ROWS lines are the rows, the
lines before them the train split), it runs the same rows, greedy, MAX_NEW_TOKENS new
tokens, repetition penalty 1.1 (the trial defaults), four ways:
- zero:     the default summarization template, no shots;
- inline3:  the first three train rows written inside the one user message;
- chat3:    the same three shots as earlier user/assistant turns (the default now);
- similar3: for each row, the three train rows most similar to it by BM25, as chat turns.
Every prompt goes through the product's builder (`workers.ml.prompts.build_prompts`) and the
trial runner (`workers.ml.generation.batch.run_trial`); ROUGE-1 as trials score it.
Goal (issue 19): chat3 and similar3 above zero.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transformers

from workers.ml import loading, prompts
from workers.ml.generation.batch import run_trial
from workers.ml.params import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lifecycle_app" / "samples" / "dialogue_summaries.jsonl"
N_ROWS = 20
K = 3
MAX_NEW_TOKENS = 60


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    models_dir = Path(os.environ.get("LIFECYCLE_MODELS_DIR") or ROOT / "var" / "models")
    began = time.perf_counter()
    loaded = loading.load(loading.ModelSpec(source="bundled"), models_dir)
    kit = prompts.load_kit(Path(loaded.path), loaded.context_length)
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    all_rows: list[dict[str, Any]] = [
        {"input": r["dialogue"], "target": r["summary"], "line": i + 1}
        for i, r in enumerate(records)
    ]
    train, rows = all_rows[:-N_ROWS], all_rows[-N_ROWS:]
    chat = prompts.DEFAULT_TEMPLATE  # shot_style "chat"
    inline = replace(chat, shot_style="inline")
    first = train[:K]
    modes: dict[str, tuple[prompts.TemplateSpec, list[list[dict[str, Any]]]]] = {
        "zero": (chat, [[] for _ in rows]),
        "inline3": (inline, [first for _ in rows]),
        "chat3": (chat, [first for _ in rows]),
        "similar3": (chat, prompts.shots_per_row(train, rows, K, mode="similar", seed=0)),
    }
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, decoding="greedy")
    results: dict[str, float] = {}
    print(f"{len(rows)} rows (lines {rows[0]['line']}-{rows[-1]['line']}), {len(train)} train rows")
    print(f"{'mode':<10}{'ROUGE-1':>9}{'ROUGE-L':>9}{'prompt tok':>12}{'seconds':>9}")
    for name, (spec, row_shots) in modes.items():
        built, report = prompts.build_prompts(
            kit, spec, rows, max_new_tokens=MAX_NEW_TOKENS, row_shots=row_shots, overflow="skip"
        )
        assert not report.any, report.describe(len(rows))
        stats = run_trial(loaded, built, settings, score_kind="rouge")
        results[name] = stats.scores["rouge1"]
        mean_tokens = sum(p.tokens for p in built) / len(built)
        print(
            f"{name:<10}{stats.scores['rouge1']:>9.3f}{stats.scores['rougeL']:>9.3f}"
            f"{mean_tokens:>12.0f}{stats.seconds:>9.1f}",
            flush=True,
        )
    goal = results["chat3"] > results["zero"] and results["similar3"] > results["zero"]
    print(
        f"\ngoal (chat3 and similar3 above zero): {'met' if goal else 'NOT met'}; "
        f"bench took {time.perf_counter() - began:.0f} s"
    )
    print("RESULT " + " ".join(f"{name}_rouge1={value:.3f}" for name, value in results.items()))


if __name__ == "__main__":
    main()
