"""App evaluation ("jobs.app_evaluate"): measure application versions on an evaluation
set, with and without retrieval, or (mode "draft") let a model draft questions from the
indexed chunks for a person to review.

Per-question errors (a question too long for the model) are recorded on that answer and
the others still run; cancel is honoured between questions and within generation.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.integrate.app import services as app_services
from lifecycle_app.storage import local_dir
from workers.ml.errors import UserFacingError
from workers.tasks.base import JobRun, job_task, model_folder

logger = logging.getLogger(__name__)

APP_EVALUATE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)
DRAFT_PROMPT = (
    "Read the passage and write one question that it answers, and the short answer.\n\n"
    "Passage:\n{passage}\n\nReply in exactly this form:\nQuestion: <question>\nAnswer: <answer>"
)


def _load(ref: str) -> Any:
    """A version's model on this host (`model_path` is a reference the web wrote: see
    `workers.tasks.base.model_folder`); an ONNX variant runs in onnxruntime, as served."""
    from workers.ml import loading
    from workers.ml.export.onnx_runtime import is_onnx_variant, load_onnx

    folder = model_folder(ref)
    if is_onnx_variant(folder):
        return load_onnx(folder)
    return loading.load(loading.ModelSpec("local", folder), Path(settings.MODELS_DIR))


def _progress(run: JobRun, done: int, total: int, message: str) -> None:
    run.write(job_services.job_progress, job_id=run.job_id, done=done, total=total, message=message)


def _app_evaluate(job: Job, run: JobRun) -> None:
    from workers.ml.application.params import AppEvalParams

    params = AppEvalParams(**job.params)
    if params.mode == "draft":
        _draft(params, run)
    else:
        _evaluate(params, run)


def _load_index(params: Any) -> Any:
    if not params.index_folder:
        return None
    from workers.ml.retrieval import KnowledgeIndex, load_embedder

    folder = local_dir(params.index_folder)  # a store key: fetched through this host's cache
    return KnowledgeIndex.load(folder, load_embedder(params.embedder_path))


def _evaluate(params: Any, run: JobRun) -> None:
    from workers.ml.application import measure
    from workers.ml.application.answer import answer_question
    from workers.ml.application.config import AppConfig
    from workers.ml.params import GenerationSettings

    questions = params.questions
    golds = [measure.Gold(q.reference, q.document_name, q.passage) for q in questions]
    settings_by_version = [(v, AppConfig.from_dict(v.config)) for v in params.versions]
    runs = [
        (v, cfg, with_r)
        for v, cfg in settings_by_version
        for with_r in ((True, False) if cfg.retrieval != "off" else (False,))
    ]
    total = len(questions) * len(runs)
    _progress(run, 0, total, "Loading the index")
    index = _load_index(params)

    retrieval: dict[str, Any] = {}
    if index is not None:
        for mode in measure.RETRIEVERS:
            ranks = []
            for q, gold in zip(questions, golds, strict=True):
                hits = index.search(q.question, mode, params.k)
                ranks.append(measure.first_relevant_rank(hits, gold))
            retrieval[mode] = measure.retrieval_scores(ranks, params.k)
        if run.should_cancel():
            run.write(
                job_services.job_mark_cancelled, job_id=run.job_id, result={"retrieval": retrieval}
            )
            return

    summaries: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    done = 0
    loaded_path = ""
    loaded: Any = None
    for position, (version, config, with_retrieval) in enumerate(runs):
        if version.model_path != loaded_path:
            _progress(run, done, total, f"Loading the model of {version.label}")
            loaded = _load(version.model_path)
            loaded_path = version.model_path
        cfg = config if with_retrieval else replace(config, retrieval="off", index_folder=None)
        gen = GenerationSettings(max_new_tokens=cfg.max_new_tokens)
        rows = summaries.setdefault((version.version_id, with_retrieval), [])
        setting = "with retrieval" if with_retrieval else "without retrieval"
        for i, (q, gold) in enumerate(zip(questions, golds, strict=True)):
            if run.should_cancel():
                run.write(
                    job_services.job_mark_cancelled,
                    job_id=run.job_id,
                    result=_result(params, retrieval, summaries),
                )
                return
            record: dict[str, Any] = {
                "index": position * len(questions) + i,
                "version_id": version.version_id,
                "question_id": q.id,
                "with_retrieval": with_retrieval,
            }
            try:
                ans = answer_question(
                    loaded, cfg, q.question, gen, lambda e: None, run.should_cancel, index
                )
            except UserFacingError as exc:
                record.update(answer="", error=str(exc), scores={})
            else:
                scores: dict[str, Any] = measure.answer_scores(ans.answer, gold)
                if with_retrieval and config.cite:
                    scores["cited_holds"] = measure.citation_holds(ans.citations, ans.hits, gold)
                scores["fallback"] = ans.fallback
                rows.append(scores)
                record.update(
                    answer=ans.answer,
                    citations=ans.citations,
                    scores=scores,
                    fallback=ans.fallback,
                    error="",
                )
            run.write(app_services.app_answers_record, job_id=run.job_id, answers=[record])
            done += 1
            _progress(
                run,
                done,
                total,
                f"{version.label}, {setting}: question {i + 1} of {len(questions)}",
            )
    result = _result(params, retrieval, summaries)
    run.write(
        job_services.job_succeed,
        job_id=run.job_id,
        result=result,
        message=f"{len(questions)} questions, {len(params.versions)} version(s)",
    )


def _result(
    params: Any, retrieval: dict[str, Any], summaries: dict[tuple[int, bool], list[dict[str, Any]]]
) -> dict[str, Any]:
    from workers.ml.application import measure

    return {
        "k": params.k,
        "questions": len(params.questions),
        "retrieval": retrieval,
        "versions": [
            {
                "version_id": v.version_id,
                "label": v.label,
                "with": measure.summarize(summaries[(v.version_id, True)])
                if (v.version_id, True) in summaries
                else None,
                "without": measure.summarize(summaries[(v.version_id, False)])
                if (v.version_id, False) in summaries
                else None,
            }
            for v in params.versions
        ],
    }


def parse_draft(text: str) -> tuple[str, str] | None:
    """(question, answer) from a drafted "Question: ... Answer: ..." reply, or None."""
    import re

    match = re.search(r"(?is)question\s*:\s*(.+?)\s*answer\s*:\s*(.+)", text)
    if not match:
        return None
    question = " ".join(match.group(1).split())
    answer = " ".join(match.group(2).strip().split("\n")[0].split())
    if len(question) < 5 or not answer:
        return None
    return question[:500], answer[:500]


def _draft(params: Any, run: JobRun) -> None:
    from workers.ml.application.compose import render
    from workers.ml.generation.streaming import stream_generate
    from workers.ml.params import GenerationSettings

    total = params.n_draft
    _progress(run, 0, total, "Loading the index and the model")
    index = _load_index(params)
    if index is None:
        raise UserFacingError(
            "Build the knowledge index first: questions are drafted from its chunks."
        )
    chunks = list(index.chunks)
    if not chunks:
        raise UserFacingError("The knowledge index has no chunks to draft questions from.")
    version = params.versions[0]
    loaded = _load(version.model_path)
    picked = random.Random(params.seed).sample(chunks, min(total, len(chunks)))
    rows = []
    for i, chunk in enumerate(picked):
        if run.should_cancel():
            break
        prompt = render(loaded.tokenizer, DRAFT_PROMPT.replace("{passage}", chunk.text[:2000]))
        out = stream_generate(
            loaded, prompt, GenerationSettings(max_new_tokens=64), lambda t: None, run.should_cancel
        )
        parsed = parse_draft(out.text)
        if parsed:
            rows.append(
                {
                    "question": parsed[0],
                    "reference": parsed[1],
                    "document_name": chunk.document_name,
                    "passage": chunk.text,
                }
            )
        _progress(run, i + 1, total, f"Drafted {len(rows)} of {i + 1} tried")
    run.write(app_services.drafted_questions_add, eval_set_id=params.eval_set_id, rows=rows)
    summary = {"drafted": len(rows), "tried": len(picked)}
    if run.should_cancel():
        run.write(job_services.job_mark_cancelled, job_id=run.job_id, result=summary)
        return
    run.write(
        job_services.job_succeed,
        job_id=run.job_id,
        result=summary,
        message=f"Drafted {len(rows)} questions from {len(picked)} chunks: review them before they count",
    )


app_evaluate_job = job_task(
    _app_evaluate,
    name="jobs.app_evaluate",
    soft_time_limit=APP_EVALUATE_SOFT_LIMIT_S,
    time_limit=APP_EVALUATE_SOFT_LIMIT_S + 60,
)
