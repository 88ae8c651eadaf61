"""The forgetting check measures knowledge, not style (issue 19).

A LoRA trained to summarize once scored *better* than its base on the old free-answer
general set: shorter answers, not more knowledge. Here a "briefer" model is the same
weights with a strong push towards the end token (a bias on its logit): it answers in fewer
tokens and knows nothing new. Its multiple-choice score must be no better than the base's
(it is the same: options are ranked without the end token), while the free answers do get
shorter. The question set itself is checked too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from workers.ml import loading
from workers.ml.evaluation import general
from workers.ml.generation.batch import run_trial


@contextlib.contextmanager
def briefer(loaded: loading.LoadedModel, bias: float) -> Iterator[None]:
    """The model, pushed to end its answers sooner: `bias` added to the end token's logit."""
    eos = int(loaded.tokenizer.eos_token_id)

    def push(_module: Any, _inputs: Any, output: Any) -> Any:
        output = output.clone()
        output[..., eos] += bias
        return output

    handle = loaded.model.get_output_embeddings().register_forward_hook(push)
    config = loaded.model.generation_config
    stops_at = config.eos_token_id
    if stops_at is None:  # the tiny model never stops; the briefer one does
        config.eos_token_id = eos
    try:
        yield
    finally:
        handle.remove()
        config.eos_token_id = stops_at


def mean_answer_tokens(loaded: loading.LoadedModel, n: int = 12) -> float:
    prompts = general.general_prompts(loaded, general.general_rows()[:n])
    outputs: dict[int, int] = {}
    run_trial(
        loaded,
        prompts,
        general.GENERAL_SETTINGS,
        score_kind="rouge",
        on_batch=lambda batch, _: outputs.update({o.index: o.output_tokens for o in batch}),
    )
    return sum(outputs.values()) / len(outputs)


def test_the_question_set_is_big_enough_and_well_formed() -> None:
    rows = general.mc_rows()
    assert len(rows) > 100  # one question is under one point
    assert len({r["question"] for r in rows}) == len(rows)
    for r in rows:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        assert 0 <= r["answer"] < 4
    positions = [r["answer"] for r in rows]
    assert all(positions.count(p) >= len(rows) // 5 for p in range(4))  # no favourite slot


def test_multiple_choice_picks_the_option_the_model_finds_most_likely(
    tiny_folder: Path,
) -> None:
    loaded = loading.load(loading.ModelSpec("tiny"), tiny_folder.parent, device="cpu")
    rows = general.mc_rows()[:6]
    results = general.multiple_choice(loaded, rows)

    assert results is not None and len(results) == 6
    for row, r in zip(rows, results, strict=True):
        assert len(r.loglikelihoods) == 4 and all(ll < 0 for ll in r.loglikelihoods)
        per_char = [
            ll / (len(c) + 1) for ll, c in zip(r.loglikelihoods, row["choices"], strict=True)
        ]
        assert r.chosen == max(range(4), key=lambda i: per_char[i])
        assert r.chosen_raw == max(range(4), key=lambda i: r.loglikelihoods[i])


def _check_briefer_is_no_better(
    loaded: loading.LoadedModel, rows: Any, *, answers: int = 12
) -> None:
    base = general.multiple_choice(loaded, rows)
    base_tokens = mean_answer_tokens(loaded, answers)
    with briefer(loaded, bias=6.0):
        brief = general.multiple_choice(loaded, rows)
        brief_tokens = mean_answer_tokens(loaded, answers)
    assert base is not None and brief is not None

    assert brief_tokens < base_tokens  # it does answer more briefly
    base_score = general.mc_scores(base)["mc_accuracy"]
    brief_score = general.mc_scores(brief)["mc_accuracy"]
    assert brief_score <= base_score
    assert [r.chosen for r in brief] == [r.chosen for r in base]


def test_a_briefer_model_that_knows_nothing_new_scores_no_better_tiny(tiny_folder: Path) -> None:
    loaded = loading.load(loading.ModelSpec("tiny"), tiny_folder.parent, device="cpu")
    _check_briefer_is_no_better(loaded, general.mc_rows())


@pytest.mark.bundled_model
@pytest.mark.timeout(900)
def test_a_briefer_model_that_knows_nothing_new_scores_no_better_bundled() -> None:
    loaded = loading.load(loading.ModelSpec("bundled"), Path(settings.MODELS_DIR), device="cpu")
    _check_briefer_is_no_better(loaded, general.mc_rows()[:40], answers=4)
