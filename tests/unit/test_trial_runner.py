"""The prompt-trial runner on tiny models: batching, seeds, cancellation, per-row failures,
skipped rows, scores and batch sizing. No Django, no worker.

Two models: the tiny model every job uses, and a "varied" one built here from the same
tokenizer with untied embeddings. The tiny model's greedy output mostly repeats the
prompt's last token, so outputs that match between batched and one-at-a-time runs would
prove little; the varied model's outputs depend on the whole prompt.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from workers.ml import loading
from workers.ml.generation import batch as ml_batch
from workers.ml.generation.batch import (
    CPU_MAX_BATCH,
    RowOutcome,
    TrialStats,
    batch_size_for,
    row_bytes,
    run_trial,
)
from workers.ml.generation.stream import BatchOutput, generate_batch, generation_kwargs
from workers.ml.params import GenerationSettings
from workers.ml.prompts import BuiltPrompt
from workers.ml.scoring import metrics

TEXTS = [
    "Summarize the dialogue.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps. Summary:",
    "Hi",
    "Translate the following sentence into French, keeping names unchanged.",
    "Answer the question using only the context given above, in one short sentence please.",
    "Classify the sentiment:",
]
GREEDY = GenerationSettings(max_new_tokens=6, repetition_penalty=1.0)
SAMPLING = GenerationSettings(
    max_new_tokens=6, decoding="sampling", temperature=1.0, top_k=0, top_p=1.0, seed=5
)


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path) -> loading.LoadedModel:
    return loading.load(loading.ModelSpec("tiny"), tiny_folder.parent, device="cpu")


@pytest.fixture(scope="module")
def varied(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> loading.LoadedModel:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("varied")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_folder / name, folder / name)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=1,
    )
    torch.manual_seed(1)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=1)
    model.save_pretrained(str(folder))
    return loading.load(loading.ModelSpec("local", str(folder)), folder.parent, device="cpu")


def built(loaded: loading.LoadedModel, texts: Sequence[str], **skipped: str) -> list[BuiltPrompt]:
    """Prompts as build_prompts makes them; `skipped` maps "row<i>" to a skip reason."""
    tokenizer = loaded.tokenizer
    return [
        BuiltPrompt(
            index=i,
            line=10 + i,
            input=text,
            reference=f"reference {i}",
            text="" if f"row{i}" in skipped else text,
            tokens=len(tokenizer(text, add_special_tokens=False)["input_ids"]),
            skipped=skipped.get(f"row{i}", ""),
        )
        for i, text in enumerate(texts)
    ]


class Recorder:
    """The on_batch callback: every batch's outcomes and a copy of the running totals."""

    def __init__(self) -> None:
        self.batches: list[list[RowOutcome]] = []
        self.totals: list[dict[str, Any]] = []

    def __call__(self, outcomes: list[RowOutcome], stats: TrialStats) -> None:
        self.batches.append(list(outcomes))
        self.totals.append(stats.as_dict())

    @property
    def by_index(self) -> dict[int, RowOutcome]:
        return {o.index: o for batch in self.batches for o in batch}


def one_at_a_time(loaded: loading.LoadedModel, texts: Sequence[str]) -> list[str]:
    outputs = []
    for text in texts:
        result = generate_batch(loaded, [text], GREEDY)
        assert result is not None
        outputs.append(result[0].text)
    return outputs


@pytest.fixture(scope="module")
def varied_singles(varied: loading.LoadedModel) -> list[str]:
    """TEXTS' greedy outputs from the varied model, one prompt at a time."""
    return one_at_a_time(varied, TEXTS)


@pytest.fixture(scope="module")
def tiny_singles(tiny: loading.LoadedModel) -> list[str]:
    return one_at_a_time(tiny, TEXTS)


# --- Batching -----------------------------------------------------------------------------


def test_left_padded_batches_give_the_one_at_a_time_greedy_outputs(
    varied: loading.LoadedModel, varied_singles: list[str]
) -> None:
    singles = varied_singles
    # The premise: outputs differ from prompt to prompt, so a mix-up would show.
    assert len(set(singles)) == len(TEXTS)

    batched = generate_batch(varied, TEXTS, GREEDY)

    assert batched is not None
    assert [o.text for o in batched] == singles
    assert all(o.output_tokens == 6 and o.finish_reason == "length" for o in batched)


@pytest.mark.parametrize("batch_size", [2, 4])
def test_run_trial_outputs_do_not_depend_on_the_batch_size(
    varied: loading.LoadedModel, varied_singles: list[str], batch_size: int
) -> None:
    singles = varied_singles
    recorder = Recorder()

    stats = run_trial(
        varied,
        built(varied, TEXTS),
        GREEDY,
        score_kind="rouge",
        batch_size=batch_size,
        on_batch=recorder,
    )

    assert [recorder.by_index[i].output for i in range(len(TEXTS))] == singles
    assert stats.rows_done == len(TEXTS)
    assert stats.batches == -(-len(TEXTS) // batch_size)
    assert stats.batch_size == batch_size
    assert stats.output_tokens == 6 * len(TEXTS)
    assert not stats.cancelled


def test_rows_run_longest_prompt_first_in_batches_of_the_given_size(
    tiny: loading.LoadedModel,
) -> None:
    prompts = built(tiny, TEXTS)
    recorder = Recorder()

    run_trial(tiny, prompts, GREEDY, score_kind="rouge", batch_size=4, on_batch=recorder)

    longest_first = [p.index for p in sorted(prompts, key=lambda p: -p.tokens)]
    assert [[o.index for o in b] for b in recorder.batches] == [
        longest_first[:4],
        longest_first[4:],
    ]
    # Running totals grow batch by batch.
    assert [t["rows_done"] for t in recorder.totals] == [4, 6]
    assert [t["batches"] for t in recorder.totals] == [1, 2]


# --- Seeds --------------------------------------------------------------------------------


def test_sampling_with_the_same_seed_reproduces_outputs_and_scores(
    varied: loading.LoadedModel, varied_singles: list[str]
) -> None:
    def run(settings: GenerationSettings) -> tuple[list[RowOutcome], TrialStats]:
        recorder = Recorder()
        stats = run_trial(
            varied,
            built(varied, TEXTS),
            settings,
            score_kind="rouge",
            batch_size=3,
            on_batch=recorder,
        )
        return sorted(recorder.by_index.values(), key=lambda o: o.index), stats

    first, first_stats = run(SAMPLING)
    again, again_stats = run(SAMPLING)
    other, _ = run(SAMPLING.model_copy(update={"seed": 6}))

    assert [(o.output, o.scores) for o in again] == [(o.output, o.scores) for o in first]
    assert again_stats.scores == first_stats.scores
    assert [o.output for o in other] != [o.output for o in first]
    # Sampling really sampled: it is not the greedy output.
    assert [o.output for o in first] != varied_singles


# --- Cancellation -------------------------------------------------------------------------


def test_cancel_after_the_first_batch_keeps_that_batch(tiny: loading.LoadedModel) -> None:
    recorder = Recorder()

    stats = run_trial(
        tiny,
        built(tiny, TEXTS),
        GREEDY,
        score_kind="rouge",
        batch_size=2,
        on_batch=recorder,
        should_cancel=lambda: len(recorder.batches) >= 1,
    )

    assert stats.cancelled
    assert len(recorder.batches) == 1
    assert stats.batches == 1
    assert stats.rows_done == 2
    assert stats.output_tokens == 12
    assert all(o.status == "done" and o.output for o in recorder.batches[0])
    assert stats.scores == metrics.aggregate([o.scores for o in recorder.batches[0]])


def test_a_cancel_during_a_batch_drops_that_batch(tiny: loading.LoadedModel) -> None:
    asked: list[int] = []

    def should_cancel() -> bool:
        asked.append(1)
        return True

    result = generate_batch(
        tiny,
        TEXTS[:2],
        GenerationSettings(max_new_tokens=50),
        should_cancel=should_cancel,
        cancel_check_interval_s=0.0,
    )

    assert result is None
    assert asked  # it was asked during generation, not before


def test_a_cancel_before_anything_ran_runs_nothing(tiny: loading.LoadedModel) -> None:
    recorder = Recorder()

    stats = run_trial(
        tiny,
        built(tiny, TEXTS),
        GREEDY,
        score_kind="rouge",
        batch_size=2,
        on_batch=recorder,
        should_cancel=lambda: True,
    )

    assert stats.cancelled
    assert (stats.rows_done, stats.batches, recorder.batches) == (0, 0, [])


# --- Failures and skipped rows ------------------------------------------------------------

MARKER = "FAIL-THIS-ROW"


def test_a_row_that_fails_is_recorded_and_the_others_go_on(
    tiny: loading.LoadedModel, tiny_singles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [*TEXTS[:3], f"{MARKER} please", *TEXTS[3:]]
    expected = dict(enumerate([*tiny_singles[:3], "-", *tiny_singles[3:]]))
    del expected[3]
    calls: list[list[str]] = []

    def failing(loaded: Any, batch: list[str], settings: Any, **kwargs: Any) -> Any:
        calls.append(batch)
        if any(MARKER in t for t in batch):
            raise RuntimeError("boom in the tokenizer")
        return generate_batch(loaded, batch, settings, **kwargs)

    monkeypatch.setattr(ml_batch, "generate_batch", failing)
    recorder = Recorder()

    stats = run_trial(
        tiny, built(tiny, texts), GREEDY, score_kind="rouge", batch_size=3, on_batch=recorder
    )

    rows = recorder.by_index
    assert rows[3].status == "failed"
    assert rows[3].error == "RuntimeError: boom in the tokenizer"
    assert rows[3].output == ""
    assert {i: o.output for i, o in rows.items() if i != 3} == expected
    assert all(o.status == "done" for i, o in rows.items() if i != 3)
    assert (stats.rows_done, stats.rows_failed, stats.rows_total) == (6, 1, 7)
    assert stats.scores == metrics.aggregate([o.scores for i, o in rows.items() if i != 3])
    # The failing batch was retried row by row.
    failed_at = next(i for i, c in enumerate(calls) if any(MARKER in t for t in c))
    assert len(calls[failed_at]) == 3
    assert calls[failed_at + 1 : failed_at + 4] == [[t] for t in calls[failed_at]]


def test_out_of_memory_halves_the_batch_and_retries(
    tiny: loading.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []

    def small_memory(loaded: Any, batch: list[str], settings: Any, **kwargs: Any) -> Any:
        sizes.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return generate_batch(loaded, batch, settings, **kwargs)

    monkeypatch.setattr(ml_batch, "generate_batch", small_memory)

    stats = run_trial(tiny, built(tiny, TEXTS), GREEDY, score_kind="rouge", batch_size=5)

    assert sizes == [5, 2, 2, 2]
    assert stats.batch_size == 2
    assert (stats.rows_done, stats.rows_failed) == (6, 0)


def test_skipped_prompts_are_counted_and_never_generated(tiny: loading.LoadedModel) -> None:
    prompts = built(tiny, TEXTS, row1="Skipped: 9 tokens over the budget.", row4="Skipped: x")
    recorder = Recorder()

    stats = run_trial(tiny, prompts, GREEDY, score_kind="rouge", batch_size=8, on_batch=recorder)

    assert sorted(recorder.by_index) == [0, 2, 3, 5]
    assert (stats.rows_total, stats.rows_skipped, stats.rows_done) == (6, 2, 4)


def test_a_trial_whose_rows_are_all_skipped_generates_nothing(tiny: loading.LoadedModel) -> None:
    recorder = Recorder()

    stats = run_trial(
        tiny,
        built(tiny, TEXTS[:2], row0="Skipped", row1="Skipped"),
        GREEDY,
        score_kind="rouge",
        on_batch=recorder,
    )

    assert (stats.rows_total, stats.rows_skipped, stats.rows_done, stats.batches) == (2, 2, 0, 0)
    assert recorder.batches == []
    assert stats.scores == {}


# --- Scores -------------------------------------------------------------------------------


def test_rouge_scores_each_example() -> None:
    scores = metrics.score(
        "rouge",
        ["The printer is jammed.", "the printer jammed", "a completely different answer"],
        ["The printer is jammed.", "The printer is jammed.", "The printer is jammed."],
    )

    assert scores[0] == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert 0.0 < scores[1]["rouge1"] < 1.0
    assert scores[1]["rougeL"] == pytest.approx(2 * (3 / 3) * (3 / 4) / (3 / 3 + 3 / 4), abs=1e-6)
    assert scores[2] == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Billing.", "billing", 1.0),
        ('  "Shipping"  \nbecause the parcel is late', "shipping", 1.0),
        ("TECHNICAL!", "Technical", 1.0),
        ("billing issue", "billing", 0.0),
        ("shipping", "billing", 0.0),
        ("", "billing", 0.0),
    ],
)
def test_label_match_normalises_case_punctuation_and_extra_lines(
    prediction: str, reference: str, expected: float
) -> None:
    assert metrics.score("label", [prediction], [reference]) == [{"exact_match": expected}]


def test_aggregates_are_means_of_the_examples() -> None:
    per_example = metrics.score("label", ["billing", "no", "Billing", "x"], ["billing"] * 4)

    assert metrics.aggregate(per_example) == {"exact_match": 0.5}
    assert metrics.aggregate([]) == {}


def test_a_trial_scored_against_its_own_outputs_scores_one(
    tiny: loading.LoadedModel, tiny_singles: list[str]
) -> None:
    prompts = built(tiny, TEXTS)
    for prompt, output in zip(prompts, tiny_singles, strict=True):
        prompt.reference = output
    recorder = Recorder()

    stats = run_trial(tiny, prompts, GREEDY, score_kind="label", batch_size=3, on_batch=recorder)

    assert stats.scores == {"exact_match": 1.0}
    assert all(o.scores == {"exact_match": 1.0} for o in recorder.by_index.values())


# --- Batch sizing and settings ------------------------------------------------------------


def test_row_bytes_counts_cache_prefill_attention_and_logits(tiny: loading.LoadedModel) -> None:
    # Tiny Llama: 2 layers, 2 KV heads of 16, hidden 64, MLP 128, 4 heads, vocab 512.
    kv_cache = 2 * 2 * 2 * 16 * (10 + 6) * 4
    prefill = 10 * (4 * 64 + 3 * 128) * 4
    attention = 4 * 10 * 10 * 4
    logits = 3 * 512 * 4

    assert row_bytes(tiny.model.config, 10, 6, 4) == kv_cache + prefill + attention + logits


def test_batch_size_follows_the_memory_budget(tiny: loading.LoadedModel) -> None:
    per_row = row_bytes(tiny.model.config, 200, 32, 4)

    assert batch_size_for(tiny, 200, 32, budget_bytes=1) == 1
    assert batch_size_for(tiny, 200, 32, budget_bytes=per_row - 1) == 1
    assert batch_size_for(tiny, 200, 32, budget_bytes=3 * per_row + 5) == 3
    assert batch_size_for(tiny, 200, 32, budget_bytes=10**12) == CPU_MAX_BATCH
    # Longer prompts fit fewer rows into the same budget.
    assert batch_size_for(tiny, 2000, 32, budget_bytes=8 * per_row) < 8


def test_a_trial_sized_to_memory_uses_the_cpu_cap_for_the_tiny_model(
    tiny: loading.LoadedModel,
) -> None:
    stats = run_trial(tiny, built(tiny, TEXTS), GREEDY, score_kind="rouge")

    assert stats.batch_size == CPU_MAX_BATCH
    assert stats.batches == 1


def test_generation_kwargs_turn_sampling_knobs_off_for_greedy() -> None:
    assert generation_kwargs(GREEDY) == {
        "max_new_tokens": 6,
        "repetition_penalty": 1.0,
        "do_sample": False,
        "temperature": None,
        "top_k": None,
        "top_p": None,
    }
    assert generation_kwargs(SAMPLING) == {
        "max_new_tokens": 6,
        "repetition_penalty": 1.1,
        "do_sample": True,
        "temperature": 1.0,
        "top_k": None,  # 0 means off
        "top_p": 1.0,
    }


def test_stats_report_tokens_per_second() -> None:
    stats = TrialStats(rows_total=3, rows_done=3, output_tokens=30, seconds=4.0)

    assert stats.tokens_per_second == 7.5
    assert stats.as_dict()["tokens_per_second"] == 7.5
    assert TrialStats(rows_total=0).tokens_per_second == 0.0


def test_batch_outputs_count_generated_tokens(tiny: loading.LoadedModel) -> None:
    result = generate_batch(tiny, TEXTS[:3], GenerationSettings(max_new_tokens=4))

    assert result is not None
    assert [type(o) for o in result] == [BatchOutput] * 3
    assert [(o.output_tokens, o.finish_reason) for o in result] == [(4, "length")] * 3
    for output in result:
        assert len(tiny.tokenizer(output.text, add_special_tokens=False)["input_ids"]) <= 4
