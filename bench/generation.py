"""Batched trial generation vs a plain one-prompt-at-a-time `generate` loop.

Runs standalone: `.venv/bin/python bench/generation.py`. With the bundled SmolLM2-135M it
builds 64 zero-shot prompts from the shipped sample dialogues (the trial's own template
and chat template), then in the same process
(1) runs them through the prompt-trial runner (`workers.ml.generation.batch.run_trial`:
    length-sorted, left-padded batches sized to memory, scoring included), and
(2) runs a plain loop: `model.generate` on one prompt at a time with the same settings,
and compares greedy outputs text for text. Output tokens are counted up to the end token,
never padding. Target (issue 5): speedup >= 2.5 with identical greedy outputs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import transformers

from workers.ml import loading, prompts
from workers.ml.generation import batch
from workers.ml.generation.stream import generation_kwargs, pad_token_id
from workers.ml.params import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
N_PROMPTS = 64
MAX_NEW_TOKENS = 32
SAMPLE = ROOT / "lifecycle_app" / "samples" / "dialogue_summaries.jsonl"


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    loaded = loading.load(loading.ModelSpec(source="bundled"), ROOT / "var" / "models")
    kit = prompts.load_kit(Path(loaded.path), loaded.context_length)
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    rows = [
        {"input": r["dialogue"], "target": r["summary"], "line": i}
        for i, r in enumerate(records[:N_PROMPTS])
    ]
    built, _ = prompts.build_prompts(
        kit, prompts.DEFAULT_TEMPLATE, rows, [], max_new_tokens=MAX_NEW_TOKENS
    )
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, decoding="greedy")
    tokenizer, model = loaded.tokenizer, loaded.model
    kwargs = generation_kwargs(settings)

    def plain_one(text: str) -> tuple[str, int]:
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**inputs, **kwargs, pad_token_id=pad_token_id(tokenizer))
        new = out[0, inputs["input_ids"].shape[1] :]
        return str(tokenizer.decode(new, skip_special_tokens=True)), int(new.shape[0])

    plain_one(built[0].text)  # warm up kernels and caches for both runs

    runner_outputs: dict[int, str] = {}
    start = time.perf_counter()
    stats = batch.run_trial(
        loaded,
        built,
        settings,
        score_kind="rouge",
        on_batch=lambda outcomes, _: runner_outputs.update({o.index: o.output for o in outcomes}),
    )
    runner_s = time.perf_counter() - start

    plain_outputs: dict[int, str] = {}
    plain_tokens = 0
    start = time.perf_counter()
    for p in built:
        plain_outputs[p.index], n = plain_one(p.text)
        plain_tokens += n
    plain_s = time.perf_counter() - start

    same = sum(runner_outputs.get(i) == text for i, text in plain_outputs.items())
    identical = same == len(built)
    speedup = plain_s / runner_s
    print(
        f"runner: {len(built)} prompts in {runner_s:.1f} s, {stats.output_tokens} tokens, "
        f"{stats.output_tokens / runner_s:.1f} tokens/s, batch size {stats.batch_size}, "
        f"ROUGE-L {stats.scores.get('rougeL', 0):.3f}"
    )
    print(
        f"plain loop: {len(built)} prompts in {plain_s:.1f} s, {plain_tokens} tokens, "
        f"{plain_tokens / plain_s:.1f} tokens/s"
    )
    print(f"identical outputs: {same} of {len(built)}")
    print(
        f"RESULT speedup={speedup:.2f} identical_outputs={str(identical).lower()} "
        f"runner_tokens_per_s={stats.output_tokens / runner_s:.1f} "
        f"plain_tokens_per_s={plain_tokens / plain_s:.1f}"
    )


if __name__ == "__main__":
    main()
