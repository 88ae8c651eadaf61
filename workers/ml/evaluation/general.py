"""The general-ability (forgetting) check: does a tuned model still know what its base knew?

Primary figure: multiple choice scored by log-likelihood, as lm-evaluation-harness scores
ARC or HellaSwag. Each of the 125 questions of `data/general_mc.jsonl` (written for this
project) is asked as plain text, "Question: ...\\nAnswer:", without any chat template, and
every option is scored as the continuation " <option>": the sum of its tokens'
log-probabilities given the question. The model's answer is the option with the highest
log-likelihood per character of the option (harness's `acc_norm`: a long option is not
penalised for having more tokens). `mc_accuracy` is the share of questions answered right;
one question is 0.8 points.

What makes it a measure of knowledge, not style:
- no generation: how long a model's answers are, and when it stops, plays no part;
- special tokens (the end token among them) are left out of every softmax: options are
  text, so a model that ends its answers sooner (more probability on the end token) ranks
  the options exactly as before;
- no template: a model tuned to one prompt format is asked the way its base was.

Secondary figures, shown beside it: the 40 free-answer questions of
`data/general_ability.jsonl` generated under the chat template ("answer_match": the
reference appears in the answer; "rougeL") and the references' perplexity. A model that
answers more briefly scores better on those without knowing more, which is why they are
secondary.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.ml.evaluation.runner import CandidateResult, corpus_perplexity, target_nll
from workers.ml.generation.batch import RowOutcome, run_trial
from workers.ml.generation.stream import CancelFn, build_prompt
from workers.ml.loading import LoadedModel
from workers.ml.params import GenerationSettings
from workers.ml.prompts import BuiltPrompt
from workers.ml.scoring import metrics

DATA = Path(__file__).parent / "data"
GENERAL_SET = DATA / "general_ability.jsonl"
MC_SET = DATA / "general_mc.jsonl"
GENERAL_INSTRUCTION = "Answer in a few words."
GENERAL_SETTINGS = GenerationSettings(max_new_tokens=24, decoding="greedy")
MC_TEMPLATE = "Question: {question}\nAnswer:"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{**json.loads(line), "line": i + 1} for i, line in enumerate(lines) if line.strip()]


def general_rows() -> list[dict[str, Any]]:
    return _jsonl(GENERAL_SET)


def mc_rows() -> list[dict[str, Any]]:
    return _jsonl(MC_SET)


# --- Multiple choice by log-likelihood ----------------------------------------------------


@dataclass(frozen=True)
class ChoiceResult:
    line: int
    loglikelihoods: list[float]  # per option, in nats
    chosen: int  # by log-likelihood per character (acc_norm)
    chosen_raw: int  # by log-likelihood alone (acc)
    answer: int

    @property
    def correct(self) -> bool:
        return self.chosen == self.answer


def multiple_choice(
    loaded: LoadedModel,
    rows: Sequence[dict[str, Any]] | None = None,
    *,
    should_cancel: CancelFn | None = None,
) -> list[ChoiceResult] | None:
    """Score every option of every question (see the module notes); None when cancelled."""
    rows = mc_rows() if rows is None else rows
    contexts, continuations, owners = [], [], []
    for q, row in enumerate(rows):
        context = MC_TEMPLATE.format(question=row["question"])
        for option in row["choices"]:
            contexts.append(context)
            continuations.append(" " + str(option))
            owners.append(q)
    special = sorted(set(getattr(loaded.tokenizer, "all_special_ids", None) or []))
    nlls = target_nll(
        loaded, contexts, continuations, should_cancel=should_cancel, exclude_token_ids=special
    )
    if nlls is None:
        return None
    per_question: list[list[tuple[float, int]]] = [[] for _ in rows]
    for owner, continuation, nll in zip(owners, continuations, nlls, strict=True):
        per_question[owner].append((-nll.nll, len(continuation)))
    results = []
    for row, scored in zip(rows, per_question, strict=True):
        lls = [ll for ll, _ in scored]
        results.append(
            ChoiceResult(
                line=int(row.get("line", 0)),
                loglikelihoods=[round(v, 4) for v in lls],
                chosen=max(range(len(scored)), key=lambda i: scored[i][0] / scored[i][1]),
                chosen_raw=max(range(len(lls)), key=lambda i: lls[i]),
                answer=int(row["answer"]),
            )
        )
    return results


def mc_scores(results: Sequence[ChoiceResult]) -> dict[str, float]:
    n = len(results) or 1
    return {
        "mc_accuracy": round(sum(r.correct for r in results) / n, 4),
        "mc_accuracy_raw": round(sum(r.chosen_raw == r.answer for r in results) / n, 4),
        "mc_questions": float(len(results)),
    }


# --- Free answers (secondary) ------------------------------------------------------------


def general_prompts(loaded: LoadedModel, rows: Sequence[dict[str, Any]]) -> list[BuiltPrompt]:
    """Each question under a one-line instruction, in the model's chat template."""
    built = []
    for i, row in enumerate(rows):
        user = f"{GENERAL_INSTRUCTION}\n\n{row['input']}"
        text = build_prompt(loaded.tokenizer, user, use_chat_template=True)
        tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
        built.append(
            BuiltPrompt(
                index=i,
                line=int(row["line"]),
                input=str(row["input"]),
                reference=str(row["target"]),
                text=text,
                user_text=user,
                tokens=tokens,
            )
        )
    return built


_PUNCT = re.compile("[" + re.escape(string.punctuation + "“”‘’") + "]")


def _normalize(text: str) -> str:
    """As the exact-match module normalizes: lower case, no punctuation, single spaces."""
    return " ".join(_PUNCT.sub("", text.lower()).split())


def answer_contains(output: str, reference: str) -> float:
    """1.0 when the normalized reference answer appears in the normalized output."""
    ref = _normalize(reference)
    return float(bool(ref) and f" {ref} " in f" {_normalize(output)} ")


def run_general(
    loaded: LoadedModel,
    *,
    batch_size: int | None = None,
    should_cancel: CancelFn | None = None,
) -> CandidateResult:
    """The forgetting check: multiple-choice accuracy (primary), then the free answers'
    match, ROUGE-L and the references' perplexity (secondary)."""
    choices = multiple_choice(loaded, should_cancel=should_cancel)
    prompts = general_prompts(loaded, general_rows())
    outcomes: dict[int, RowOutcome] = {}
    stats = run_trial(
        loaded,
        prompts,
        GENERAL_SETTINGS,
        score_kind="rouge",
        batch_size=batch_size,
        on_batch=lambda batch, _: outcomes.update({o.index: o for o in batch}),
        should_cancel=should_cancel,
    )
    rows = [outcomes[i] for i in sorted(outcomes)]
    if choices is None or stats.cancelled:
        return CandidateResult(rows, stats, cancelled=True)
    done = [o for o in rows if o.status == "done"]
    nlls = target_nll(
        loaded,
        [prompts[o.index].text for o in done],
        [prompts[o.index].reference for o in done],
        should_cancel=should_cancel,
    )
    if nlls is None:
        return CandidateResult(rows, stats, cancelled=True)
    for o in done:
        o.scores = {
            "answer_match": answer_contains(o.output, prompts[o.index].reference),
            "rougeL": o.scores.get("rougeL", 0.0),
        }
    overall = {**mc_scores(choices), **metrics.aggregate([o.scores for o in done])}
    ppl = corpus_perplexity(nlls)
    if ppl is not None:
        overall["perplexity"] = round(ppl, 4)
    return CandidateResult(rows, stats, overall)
