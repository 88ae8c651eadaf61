"""Evaluation throughput: the batched evaluation core vs one row at a time.

Runs standalone: `.venv/bin/python bench/evaluation.py`. With the bundled SmolLM2-135M it
builds zero-shot prompts for 48 rows of the shipped sample dialogues (the default template
and chat template), then in the same process
(1) evaluates them with `workers.ml.evaluation.runner.run_candidate`: length-sorted, left-padded
    generation batches sized to memory, every metric, and the references' perplexity in
    batched forward passes, and
(2) evaluates them one row at a time: `model.generate` on one prompt, the same metrics,
    and one forward pass per row for perplexity,
and compares the figures (greedy decoding: both must agree). Rows/s counts whole
evaluated rows (generation, scoring and perplexity). Target (issue 7): speedup >= 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import transformers

from workers.ml import loading, prompts
from workers.ml.evaluation import runner
from workers.ml.generation.stream import generation_kwargs, pad_token_id
from workers.ml.params import GenerationSettings
from workers.ml.scoring import metrics

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 48
MAX_NEW_TOKENS = 32
SAMPLE = ROOT / "lifecycle_app" / "samples" / "dialogue_summaries.jsonl"


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    models_dir = Path(os.environ.get("LIFECYCLE_MODELS_DIR") or ROOT / "var" / "models")
    loaded = loading.load(loading.ModelSpec(source="bundled"), models_dir)
    kit = prompts.load_kit(Path(loaded.path), loaded.context_length)
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    rows = [
        {"input": r["dialogue"], "target": r["summary"], "line": i}
        for i, r in enumerate(records[-N_ROWS:])
    ]
    built, _ = prompts.build_prompts(
        kit, prompts.DEFAULT_TEMPLATE, rows, [], max_new_tokens=MAX_NEW_TOKENS
    )
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, decoding="greedy")
    tokenizer, model = loaded.tokenizer, loaded.model
    kwargs = generation_kwargs(settings)

    def one_row(p: prompts.BuiltPrompt) -> tuple[str, dict[str, float], runner.TargetNll]:
        inputs = tokenizer(p.text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**inputs, **kwargs, pad_token_id=pad_token_id(tokenizer))
        text = str(
            tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        )
        per, _ = metrics.score_eval("text", [text], [p.reference])
        [nll] = runner.target_nll(loaded, [p.text], [p.reference], batch_size=1) or []
        return text, per[0], nll

    one_row(built[0])  # warm up kernels, caches and the metric modules for both runs

    start = time.perf_counter()
    batched = runner.run_candidate(loaded, built, settings, task="text")
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    plain = [one_row(p) for p in built]
    plain_s = time.perf_counter() - start

    outputs = {o.index: o.output for o in batched.rows}
    same = sum(outputs.get(p.index) == text for p, (text, _, _) in zip(built, plain, strict=True))
    plain_scores = metrics.aggregate([s for _, s, _ in plain])
    plain_ppl = runner.corpus_perplexity([n for _, _, n in plain]) or 0.0
    rouge_gap = abs(plain_scores["rougeL"] - batched.scores["rougeL"])
    ppl_gap = abs(plain_ppl - batched.scores["perplexity"]) / plain_ppl
    n = len(built)
    speedup = plain_s / batched_s
    print(
        f"batched: {n} rows in {batched_s:.1f} s ({n / batched_s:.2f} rows/s), generation "
        f"batch {batched.stats.batch_size}, ROUGE-L {batched.scores['rougeL']:.4f}, "
        f"perplexity {batched.scores['perplexity']:.3f}"
    )
    print(
        f"one at a time: {n} rows in {plain_s:.1f} s ({n / plain_s:.2f} rows/s), "
        f"ROUGE-L {plain_scores['rougeL']:.4f}, perplexity {plain_ppl:.3f}"
    )
    print(
        f"identical outputs: {same} of {n}; ROUGE-L gap {rouge_gap:.4f}; "
        f"perplexity gap {100 * ppl_gap:.3f}%"
    )
    print(
        f"RESULT speedup={speedup:.2f} batched_rows_per_s={n / batched_s:.2f} "
        f"plain_rows_per_s={n / plain_s:.2f} identical_outputs={same}/{n}"
    )


if __name__ == "__main__":
    main()
