"""Never generate the same thing twice in an evaluation.

- Two candidates that are the same (same model weights, same prompt text settings, same
  shots, same generation settings: e.g. a catalog model zero-shot with template T and a
  zero-shot trial of that model with T) run once; the second copies the first's rows and
  scores and says so.
- A candidate that comes from a prompt trial reuses that trial's outputs when the trial
  answered every one of the evaluation's rows with exactly the prompt the evaluation
  builds (same line, same text): greedy decoding, or sampling with the same seed, would
  write the same answers again. Only the references' perplexity is computed anew.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from lifecycle_app.jobs.models import Job, JobStatus
from lifecycle_app.stages.evaluate.models import (
    CandidateStatus,
    EvaluationCandidate,
    EvaluationExample,
)
from lifecycle_app.stages.prompt.models import ExampleStatus, TrialExample
from workers.ml.generation.batch import RowOutcome
from workers.ml.prompts import BuiltPrompt

PROMPT_FIELDS = ("instruction", "example_format", "body", "use_chat_template", "shot_style")


def candidate_identity(candidate: EvaluationCandidate) -> str | None:
    """What decides a candidate's outputs, as a comparable string (None: no model)."""
    model = candidate.base_model
    if model is None:
        return None
    spec: dict[str, Any] = candidate.spec or {}
    template = spec.get("template") or {}
    shots = int(spec.get("shots") or 0)
    prompt = {k: template.get(k) for k in PROMPT_FIELDS}
    if prompt["shot_style"] is None:
        prompt["shot_style"] = "inline"  # snapshots from before shot styles ran inline
    identity: dict[str, Any] = {
        "model": [model.source, model.location],
        "template": prompt,
        "shots": shots,
        "shot_choice": [spec.get("shot_mode"), spec.get("shot_seed"), spec.get("shot_lines")]
        if shots
        else None,
        "generation": spec.get("generation") or {},
    }
    return json.dumps(identity, sort_keys=True)


def duplicates(candidates: Sequence[EvaluationCandidate]) -> dict[int, EvaluationCandidate]:
    """Candidate id -> the earlier candidate it is the same as."""
    first: dict[str, EvaluationCandidate] = {}
    same: dict[int, EvaluationCandidate] = {}
    for c in candidates:
        key = candidate_identity(c)
        if key is None:
            continue
        if key in first:
            same[c.id] = first[key]
        else:
            first[key] = c
    return same


@transaction.atomic
def candidate_copy(*, source: EvaluationCandidate, target: EvaluationCandidate) -> None:
    """`target` gets `source`'s rows and figures, marked as the same candidate."""
    source.refresh_from_db()
    EvaluationExample.objects.filter(candidate=target).delete()
    EvaluationExample.objects.bulk_create(
        EvaluationExample(
            candidate=target,
            index=e.index,
            line=e.line,
            input=e.input,
            prompt=e.prompt,
            reference=e.reference,
            output=e.output,
            status=e.status,
            output_tokens=e.output_tokens,
            finish_reason=e.finish_reason,
            scores=e.scores,
            error=e.error,
        )
        for e in EvaluationExample.objects.filter(candidate=source).order_by("index")
    )
    EvaluationCandidate.objects.filter(id=target.id).update(
        status=CandidateStatus.DONE,
        reason="",
        scores=source.scores,
        general_scores=source.general_scores,
        stats={**(source.stats or {}), "same_as": source.id, "same_as_label": source.label},
    )


def trial_outputs(
    candidate: EvaluationCandidate, prompts: Sequence[BuiltPrompt]
) -> dict[int, RowOutcome] | None:
    """The source trial's outputs for these prompts (by prompt index), when the trial ran
    the same model on every one of them with the very same prompt text; else None."""
    trial: Job | None = candidate.source_job
    if (
        candidate.kind != "trial"
        or trial is None
        or trial.status != JobStatus.SUCCEEDED
        or trial.base_model_id != candidate.base_model_id
    ):
        return None
    by_line = {
        e.line: e
        for e in TrialExample.objects.filter(job=trial, status=ExampleStatus.DONE).only(
            "line", "prompt", "output", "output_tokens", "finish_reason"
        )
    }
    out: dict[int, RowOutcome] = {}
    for p in prompts:
        if p.skipped:
            continue
        done = by_line.get(p.line)
        if done is None or done.prompt != p.text:
            return None
        out[p.index] = RowOutcome(
            index=p.index,
            status="done",
            output=done.output,
            output_tokens=done.output_tokens,
            finish_reason=done.finish_reason,
        )
    return out or None


@transaction.atomic
def candidate_record_reused(
    *, job_id: int, candidate_id: int, outcomes: Sequence[RowOutcome], trial_id: int
) -> None:
    """The reused outputs as the candidate's rows (scores follow in candidate_finish)."""
    for o in outcomes:
        EvaluationExample.objects.filter(candidate_id=candidate_id, index=o.index).update(
            status=o.status,
            output=o.output,
            output_tokens=o.output_tokens,
            finish_reason=o.finish_reason,
        )
    EvaluationCandidate.objects.filter(id=candidate_id).update(
        stats={"reused_from_trial": trial_id}
    )
