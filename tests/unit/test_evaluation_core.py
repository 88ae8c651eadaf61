"""The evaluation core on the tiny model: perplexity by hand, batched equal to one at a
time, the same numbers twice (greedy and seeded sampling), the general-ability set and
the seeded row sample. No Django, no worker."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workers.ml import loading
from workers.ml.evaluation import general, runner
from workers.ml.params import GenerationSettings
from workers.ml.prompts import BuiltPrompt

GREEDY = GenerationSettings(max_new_tokens=6)
SAMPLING = GenerationSettings(max_new_tokens=6, decoding="sampling", temperature=1.0, seed=3)


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path) -> loading.LoadedModel:
    return loading.load(loading.ModelSpec("tiny"), tiny_folder.parent, device="cpu")


def prompts(loaded: loading.LoadedModel, n: int = 5) -> list[BuiltPrompt]:
    out = []
    for i in range(n):
        text = f"Dialogue: person {i} asks about the bill number {i * 7} twice.\nSummary:"
        tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
        out.append(BuiltPrompt(i, i + 1, text, f"person {i} asks about a bill", text, text, tokens))
    return out


def test_perplexity_is_the_mean_nll_of_the_reference_tokens_given_the_prompt(
    tiny: loading.LoadedModel,
) -> None:
    import torch

    prompt, target = "Dialogue: hi there\nSummary:", " a greeting"
    [got] = runner.target_nll(tiny, [prompt], [target]) or []
    p = tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = tiny.tokenizer(target, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = tiny.model(input_ids=torch.tensor([p + t])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    by_hand = -sum(float(logprobs[len(p) - 1 + j, tok]) for j, tok in enumerate(t))
    assert got.tokens == len(t)
    assert got.nll == pytest.approx(by_hand, rel=1e-4)
    assert got.perplexity == pytest.approx(math.exp(by_hand / len(t)), rel=1e-4)
    assert runner.corpus_perplexity([got, got]) == pytest.approx(got.perplexity, rel=1e-6)


def test_batched_perplexity_equals_one_row_at_a_time(tiny: loading.LoadedModel) -> None:
    rows = prompts(tiny)
    texts, refs = [p.text for p in rows], [p.reference for p in rows]
    batched = runner.target_nll(tiny, texts, refs, batch_size=4) or []
    single = runner.target_nll(tiny, texts, refs, batch_size=1) or []
    for a, b in zip(batched, single, strict=True):
        assert a.tokens == b.tokens
        assert a.nll == pytest.approx(b.nll, rel=1e-4)


def test_perplexity_stops_when_cancelled(tiny: loading.LoadedModel) -> None:
    assert runner.target_nll(tiny, ["a"], ["b"], should_cancel=lambda: True) is None


@pytest.mark.parametrize("gen", [GREEDY, SAMPLING], ids=["greedy", "seeded-sampling"])
def test_a_candidate_scores_the_same_twice(
    tiny: loading.LoadedModel, gen: GenerationSettings
) -> None:
    first = runner.run_candidate(tiny, prompts(tiny), gen, task="text")
    second = runner.run_candidate(tiny, prompts(tiny), gen, task="text")
    assert first.scores == second.scores
    assert [r.output for r in first.rows] == [r.output for r in second.rows]
    assert set(first.scores) == {
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "bleu",
        "exact_match",
        "perplexity",
    }
    assert all("perplexity" in r.scores and "bleu" in r.scores for r in first.rows)


def test_greedy_scores_do_not_depend_on_the_batch_size(tiny: loading.LoadedModel) -> None:
    batched = runner.run_candidate(tiny, prompts(tiny), GREEDY, task="text", batch_size=4)
    single = runner.run_candidate(tiny, prompts(tiny), GREEDY, task="text", batch_size=1)
    assert [r.output for r in batched.rows] == [r.output for r in single.rows]
    for key, value in batched.scores.items():
        assert single.scores[key] == pytest.approx(value, rel=1e-4)


def test_a_classification_candidate_has_accuracy_and_macro_f1(tiny: loading.LoadedModel) -> None:
    result = runner.run_candidate(tiny, prompts(tiny, 3), GREEDY, task="label")
    assert set(result.scores) == {"accuracy", "macro_f1", "perplexity"}


def test_the_general_check_scores_multiple_choice_first_and_free_answers_beside(
    tiny: loading.LoadedModel,
) -> None:
    rows = general.general_rows()
    assert len(rows) == 40 and all(r["input"] and r["target"] for r in rows)
    result = general.run_general(tiny)
    assert result.stats.rows_done == 40
    assert set(result.scores) == {
        "mc_accuracy",
        "mc_accuracy_raw",
        "mc_questions",
        "answer_match",
        "rougeL",
        "perplexity",
    }
    assert result.scores["mc_questions"] == len(general.mc_rows()) > 100
    assert general.answer_contains("The capital is Paris.", "Paris") == 1.0
    assert general.answer_contains("Parisian food", "Paris") == 0.0


def test_the_row_sample_is_seeded_and_in_file_order() -> None:
    a = runner.sample_indices(200, 50, 0)
    assert a == runner.sample_indices(200, 50, 0)
    assert a == sorted(a) and len(set(a)) == 50
    assert a != runner.sample_indices(200, 50, 1)
    assert runner.sample_indices(10, 50, 0) == list(range(10))
    assert runner.sample_indices(10, None, 0) == list(range(10))
