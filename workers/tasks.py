"""Thin tasks: claim the Job row, call the ML core, write progress and results back.

Tasks take only a job id. Every exception is logged with its traceback and recorded on
the job; nothing is swallowed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections, connection

from lifecycle_app.models import Job
from lifecycle_app.services import jobs as job_services
from workers.celery import app
from workers.ml.errors import UserFacingError
from workers.ml.loading import ModelSpec

logger = logging.getLogger(__name__)

GENERATE_SOFT_LIMIT_S = 15 * 60
PROFILE_SOFT_LIMIT_S = 30 * 60


@contextlib.contextmanager
def heartbeat(job_id: int, interval: float | None = None) -> Iterator[None]:
    """Beat every `interval` seconds (settings.JOB_HEARTBEAT_S) from a thread, also while
    a model loads."""
    interval = interval or settings.JOB_HEARTBEAT_S
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                job_services.job_heartbeat(job_id=job_id)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _write_params(job: Job) -> None:
    folder = Path(settings.JOBS_DIR) / str(job.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(job.params, indent=2, sort_keys=True))


def _run(task: Task, job_id: int, body: object) -> None:
    close_old_connections()
    job = job_services.job_claim(job_id=job_id, worker=task.request.hostname or "worker")
    if job is None:
        logger.info("Job %s is not queued (taken, cancelled or finished); skipping", job_id)
        return
    try:
        _write_params(job)
        with heartbeat(job.id):
            body(job)  # type: ignore[operator]
    except UserFacingError as exc:
        logger.warning("Job %s failed: %s", job_id, exc)
        job_services.job_fail(job_id=job_id, error=str(exc))
    except SoftTimeLimitExceeded:
        logger.error("Job %s hit its time limit", job_id)
        job_services.job_fail(
            job_id=job_id,
            error="The job ran past its time limit and was stopped. "
            "Ask for fewer tokens or a smaller model.",
        )
    except Exception as exc:
        logger.exception("Job %s crashed", job_id)
        job_services.job_fail(
            job_id=job_id,
            error=f"Unexpected error: {type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )


def model_spec_for(job: Job) -> ModelSpec:
    base = job.base_model
    if base is None:
        raise UserFacingError("This job has no model.")
    return ModelSpec(source=base.source, location=base.location)  # type: ignore[arg-type]


def _generate(job: Job) -> None:
    from workers.ml import loading
    from workers.ml.generation.stream import generate
    from workers.ml.params import GenerateParams

    params = GenerateParams(**job.params)
    job_services.job_progress(
        job_id=job.id, done=0, total=params.max_new_tokens, message="Loading the model"
    )
    loaded = loading.load(model_spec_for(job), Path(settings.MODELS_DIR))
    job_services.job_progress(
        job_id=job.id, done=0, total=params.max_new_tokens, message="Generating"
    )

    def on_progress(done: int, total: int, text: str) -> None:
        job_services.job_progress(
            job_id=job.id,
            done=done,
            total=total,
            message="Generating",
        )
        job_services.generation_output_update(job_id=job.id, index=0, text=text)

    result = generate(
        loaded,
        params,
        on_progress=on_progress,
        should_cancel=lambda: job_services.job_cancel_requested(job_id=job.id),
    )
    job_services.generation_output_update(
        job_id=job.id,
        index=0,
        text=result.text,
        prompt_tokens=result.prompt_tokens,
        output_tokens=result.output_tokens,
        finish_reason=result.finish_reason,
    )
    summary = {**result.as_dict(), "device": loaded.device}
    summary.pop("text")
    if result.finish_reason == "cancelled":
        job_services.job_mark_cancelled(job_id=job.id, result=summary)
    else:
        job_services.job_succeed(
            job_id=job.id,
            result=summary,
            message=f"{result.output_tokens} tokens at {result.tokens_per_second} tokens/s",
        )


@app.task(
    name="jobs.generate",
    bind=True,
    soft_time_limit=GENERATE_SOFT_LIMIT_S,
    time_limit=GENERATE_SOFT_LIMIT_S + 60,
)
def generate_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _generate)


TRIAL_SOFT_LIMIT_S = 60 * 60


def _trial(job: Job) -> None:
    from lifecycle_app.prompting import PromptingError, build_for_trial
    from lifecycle_app.services import trials as trial_services
    from workers.ml import loading
    from workers.ml.generation.batch import RowOutcome, TrialStats, run_trial
    from workers.ml.params import TrialParams

    params = TrialParams(**job.params)
    if job.dataset is None or job.base_model is None:
        raise UserFacingError("The dataset or model of this trial was deleted.")
    try:
        built = build_for_trial(base_model=job.base_model, dataset=job.dataset, params=params)
    except PromptingError as exc:
        raise UserFacingError(str(exc)) from exc
    trial_services.trial_examples_init(job_id=job.id, prompts=built.prompts)
    total = built.rows
    job_services.job_progress(
        job_id=job.id, done=0, total=total, message=f"Loading the model for {total} rows"
    )
    loaded = loading.load(model_spec_for(job), Path(settings.MODELS_DIR))
    extra = {"device": loaded.device, "shots": len(built.shots)}
    job_services.job_progress(job_id=job.id, done=0, total=total, message="Generating")

    def on_batch(outcomes: list[RowOutcome], stats: TrialStats) -> None:
        trial_services.trial_record_batch(
            job_id=job.id, outcomes=outcomes, stats=stats, extra=extra
        )

    stats = run_trial(
        loaded,
        built.prompts,
        params.generation_settings(),
        score_kind=params.score_kind,
        batch_size=params.batch_size,
        on_batch=on_batch,
        should_cancel=lambda: job_services.job_cancel_requested(job_id=job.id),
    )
    summary = trial_services.trial_summary(stats, **extra)
    if stats.cancelled:
        job_services.job_mark_cancelled(job_id=job.id, result=summary)
        return
    if stats.rows_done == 0:
        raise UserFacingError(
            "No row could be generated: "
            + ("every row was skipped." if stats.rows_skipped == total else "see the rows below.")
        )
    scores = ", ".join(f"{k} {v:.3f}" for k, v in stats.scores.items())
    job_services.job_succeed(
        job_id=job.id,
        result=summary,
        message=f"{stats.rows_done} rows, {scores}, {stats.tokens_per_second} tokens/s",
    )


@app.task(
    name="jobs.trial",
    bind=True,
    soft_time_limit=TRIAL_SOFT_LIMIT_S,
    time_limit=TRIAL_SOFT_LIMIT_S + 60,
)
def trial_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _trial)


FINETUNE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)


def _training_progress(job: Job) -> Callable[[Any], None]:
    """The dashboard's side of a training step (fine-tuning and alignment alike): the
    train-loss and learning-rate curves, the live figures, measured progress, a log line."""
    from lifecycle_app.services import finetune as ft

    def on_step(s: Any) -> None:
        ft.metric_record(
            job_id=job.id,
            step=s.step,
            values={"train_loss": s.loss, "learning_rate": s.learning_rate},
        )
        line = (
            f"step {s.step}/{s.total_steps} · epoch {s.epoch:.2f} · loss {s.loss:.4f} · "
            f"lr {s.learning_rate:.2e}"
            + (f" · {s.tokens_per_s:.0f} tokens/s" if s.tokens_per_s else "")
        )
        ft.finetune_live(
            job_id=job.id, step=s.step, total=s.total_steps, live=s.as_dict(), line=line
        )

    return on_step


def _training_end(job: Job, result: Any, finish: Callable[..., Any]) -> None:
    """The end of a training job (fine-tuning, alignment): cancelled with what it did, or
    finished with its final folder as the artifact (`finish` records the candidate)."""
    from lifecycle_app.services import finetune as ft
    from workers.ml.training import sft

    summary = {k: v for k, v in result.as_dict().items() if k not in ("history", "evals")}
    if result.status == "cancelled":
        ft.finetune_log(job_id=job.id, line=f"cancelled at step {result.steps}")
        fresh = Job.objects.get(id=job.id)
        job_services.job_mark_cancelled(job_id=job.id, result={**fresh.result, "summary": summary})
        return
    assert result.final_dir is not None
    final_dir = Path(result.final_dir)
    finish(job=job, summary=summary, final_dir=final_dir, files=sft.artifact_files(final_dir))


def _finetune(job: Job) -> None:
    from lifecycle_app.prompting import PromptingError, kit_for, split_rows
    from lifecycle_app.services import finetune as ft
    from workers.ml import loading
    from workers.ml.params import TrainParams
    from workers.ml.training import common as ml_common
    from workers.ml.training import sft

    params = TrainParams(**job.params)
    if job.dataset is None or job.base_model is None:
        raise UserFacingError("The dataset or model of this run was deleted.")
    try:
        kit = kit_for(job.base_model)
        train_rows = split_rows(job.dataset, "train")
        eval_rows = split_rows(job.dataset, "validation", params.eval_rows)
    except PromptingError as exc:
        raise UserFacingError(str(exc)) from exc
    render = ml_common.make_render(kit, ml_common.template_spec(params.template))
    out_dir = ft.run_dir(job.id)
    resume = job.attempt > 1 and bool(ml_common.checkpoints(out_dir))
    total = job.progress_total or params.max_steps or 0
    job_services.job_progress(
        job_id=job.id,
        done=job.progress_done if resume else 0,
        total=total,
        message="Loading the model" + (" to resume from the last checkpoint" if resume else ""),
    )
    loaded = loading.load(model_spec_for(job), Path(settings.MODELS_DIR))
    if resume:
        ft.finetune_log(
            job_id=job.id,
            line=f"attempt {job.attempt}: resuming from {ml_common.checkpoints(out_dir)[-1].name}",
        )

    on_step = _training_progress(job)

    def on_eval(e: ml_common.EvalLog) -> None:
        ft.metric_record(job_id=job.id, step=e.step, values={"val_loss": e.loss})
        ft.finetune_log(
            job_id=job.id,
            line=f"step {e.step}: validation loss {e.loss:.4f} on {e.rows} rows",
        )

    result = sft.train(
        loaded,
        params,
        train_rows,
        eval_rows,
        out_dir=out_dir,
        render=render,
        on_step=on_step,
        on_eval=on_eval,
        should_cancel=lambda: job_services.job_cancel_requested(job_id=job.id),
        resume=resume,
    )
    _training_end(job, result, ft.finetune_finish)


@app.task(
    name="jobs.finetune",
    bind=True,
    soft_time_limit=FINETUNE_SOFT_LIMIT_S,
    time_limit=FINETUNE_SOFT_LIMIT_S + 300,
)
def finetune_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _finetune)


EVALUATE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)


def _record_eval_batch(outcomes: list[Any], stats: Any, *, job_id: int, candidate_id: int) -> None:
    from lifecycle_app.services.evaluation import candidate_record_batch

    candidate_record_batch(job_id=job_id, candidate_id=candidate_id, outcomes=outcomes, stats=stats)


def _evaluate(job: Job) -> None:
    """Each candidate in turn over the same rows; one that cannot run is marked
    unavailable (or failed, with the error) and the others still run."""
    from django.db.models import F

    from lifecycle_app import evaluating
    from lifecycle_app.models import CandidateStatus, EvaluationCandidate
    from lifecycle_app.prompting import PromptingError
    from lifecycle_app.services import evaluation as ev
    from workers.ml import errors, loading
    from workers.ml.evaluation.runner import run_candidate, run_general
    from workers.ml.params import EvaluateParams

    params = EvaluateParams(**job.params)
    if job.dataset is None:
        raise UserFacingError("The dataset of this evaluation was deleted.")
    try:
        rows = evaluating.eval_rows(job.dataset, params)
    except PromptingError as exc:
        raise UserFacingError(str(exc)) from exc
    candidates = list(
        EvaluationCandidate.objects.filter(job=job).select_related(
            "base_model", "base_model__trained_by_job", "source_job"
        )
    )
    Job.objects.filter(id=job.id).update(
        progress_done=0, progress_total=len(rows) * len(candidates)
    )
    general: dict[tuple[str, str], dict[str, float]] = {}

    def cancel() -> bool:
        return job_services.job_cancel_requested(job_id=job.id)

    scored = 0

    def skip(candidate: EvaluationCandidate, status: CandidateStatus, reason: str) -> None:
        ev.candidate_mark(candidate_id=candidate.id, status=status, reason=reason)
        Job.objects.filter(id=job.id).update(progress_done=F("progress_done") + len(rows))

    for n, candidate in enumerate(candidates, start=1):
        step = f"Candidate {n} of {len(candidates)}: {candidate.label}"
        reason = evaluating.candidate_unavailable(candidate)
        if reason:
            skip(candidate, CandidateStatus.UNAVAILABLE, reason)
            continue
        assert candidate.base_model is not None
        spec = ev.candidate_spec(candidate)
        try:
            prompts = evaluating.build_candidate_prompts(
                model=candidate.base_model,
                dataset=job.dataset,
                spec=spec,
                rows=rows,
                split=params.split,
            )
            ev.candidate_start(candidate_id=candidate.id, prompts=prompts)
            job_services.job_progress_message(job_id=job.id, message=f"{step}: loading")
            model_spec = ModelSpec(
                source=candidate.base_model.source,  # type: ignore[arg-type]
                location=candidate.base_model.location,
            )
            loaded = loading.load(model_spec, Path(settings.MODELS_DIR))
        except (PromptingError, errors.ModelNotAvailable) as exc:
            skip(candidate, CandidateStatus.UNAVAILABLE, str(exc))
            continue
        job_services.job_progress_message(job_id=job.id, message=f"{step}: generating")
        try:
            result = run_candidate(
                loaded,
                prompts,
                spec.generation,
                task=params.task,
                batch_size=params.batch_size,
                on_batch=functools.partial(
                    _record_eval_batch, job_id=job.id, candidate_id=candidate.id
                ),
                should_cancel=cancel,
            )
            if result.cancelled:
                ev.candidate_mark(candidate_id=candidate.id, status=CandidateStatus.CANCELLED)
                job_services.job_mark_cancelled(job_id=job.id, result={"scored": scored})
                return
            if result.stats.rows_done == 0:
                ev.candidate_mark(
                    candidate_id=candidate.id,
                    status=CandidateStatus.FAILED,
                    reason="No row could be generated; see the rows.",
                )
                continue
            ev.candidate_finish(candidate_id=candidate.id, result=result)
            scored += 1
            if params.general_check:
                # Forgetting is a property of the weights: one run per model.
                key = (model_spec.source, model_spec.location)
                if key not in general:
                    job_services.job_progress_message(
                        job_id=job.id, message=f"{step}: general-ability check"
                    )
                    outcome = run_general(loaded, should_cancel=cancel)
                    if outcome.cancelled:
                        job_services.job_mark_cancelled(job_id=job.id, result={"scored": scored})
                        return
                    general[key] = outcome.scores
                ev.candidate_general(candidate_id=candidate.id, scores=general[key])
        except Exception as exc:  # one candidate's crash must not lose the others
            logger.exception("Evaluation %s: candidate %s failed", job.id, candidate.id)
            ev.candidate_mark(
                candidate_id=candidate.id,
                status=CandidateStatus.FAILED,
                reason=f"{type(exc).__name__}: {exc}",
            )
    if scored == 0:
        raise UserFacingError("No candidate could be scored: see each candidate's reason.")
    job_services.job_succeed(
        job_id=job.id,
        result={"scored": scored, "candidates": len(candidates), "rows": len(rows)},
        message=f"Scored {scored} of {len(candidates)} candidates on {len(rows)} rows",
    )
    ev.evaluation_finished(job=job)


@app.task(
    name="jobs.evaluate",
    bind=True,
    soft_time_limit=EVALUATE_SOFT_LIMIT_S,
    time_limit=EVALUATE_SOFT_LIMIT_S + 120,
)
def evaluate_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _evaluate)


def _align(job: Job) -> None:
    from lifecycle_app.services import feedback as fb
    from lifecycle_app.services import finetune as ft
    from workers.ml import loading
    from workers.ml.params import AlignParams
    from workers.ml.training import dpo

    params = AlignParams(**job.params)
    if job.base_model is None:
        raise UserFacingError("The model this run starts from was deleted.")
    pairs = [dpo.Pair(**p) for p in fb.align_pairs(job=job)]
    if not pairs:
        raise UserFacingError("The preference set of this run was deleted or is empty.")
    out_dir = ft.run_dir(job.id)
    resume = job.attempt > 1 and dpo.latest_checkpoint(out_dir) is not None
    job_services.job_progress(
        job_id=job.id,
        done=job.progress_done if resume else 0,
        total=params.max_steps,
        message="Loading the model" + (" to resume from the last checkpoint" if resume else ""),
    )
    loaded = loading.load(model_spec_for(job), Path(settings.MODELS_DIR))
    if resume:
        checkpoint = dpo.latest_checkpoint(out_dir)
        name = checkpoint.name if checkpoint else "the start"
        ft.finetune_log(job_id=job.id, line=f"attempt {job.attempt}: resuming from {name}")
    else:
        ft.finetune_log(job_id=job.id, line="measuring preference accuracy before alignment")

    def on_score(when: str, score: dpo.PreferenceScore) -> None:
        fresh = Job.objects.get(id=job.id)
        preference = {**(fresh.result or {}).get("preference", {}), when: score.as_dict()}
        Job.objects.filter(id=job.id).update(result={**fresh.result, "preference": preference})
        ft.finetune_log(
            job_id=job.id,
            line=f"preference accuracy {when} alignment: {score.accuracy:.1%} of "
            f"{score.pairs} held-out pairs (mean log-likelihood margin {score.margin:+.3f})",
        )

    result = dpo.align(
        loaded,
        params,
        pairs,
        out_dir=out_dir,
        on_step=_training_progress(job),
        on_score=on_score,
        should_cancel=lambda: job_services.job_cancel_requested(job_id=job.id),
        resume=resume,
    )
    _training_end(job, result, fb.align_finish)


@app.task(
    name="jobs.align",
    bind=True,
    soft_time_limit=FINETUNE_SOFT_LIMIT_S,
    time_limit=FINETUNE_SOFT_LIMIT_S + 300,
)
def align_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _align)


def _profile(job: Job) -> None:
    from lifecycle_app.services.datasets import dataset_record_profile
    from workers.ml import loading
    from workers.ml.data.profile import profile

    dataset = job.dataset
    if dataset is None:
        raise UserFacingError("The dataset of this job was deleted.")
    job_services.job_progress(
        job_id=job.id, done=0, total=dataset.valid_rows, message="Loading the tokenizer"
    )
    tokenizer, context_length, _ = loading.load_tokenizer(
        model_spec_for(job), Path(settings.MODELS_DIR)
    )

    def on_progress(done: int, total: int) -> None:
        if job_services.job_cancel_requested(job_id=job.id):
            raise JobCancelled
        job_services.job_progress(job_id=job.id, done=done, total=total, message="Tokenizing")

    try:
        result = profile(
            dataset.clean_path,
            tokenizer,
            context_length=context_length,
            on_progress=on_progress,
        )
    except JobCancelled:
        job_services.job_mark_cancelled(job_id=job.id)
        return
    result["model"] = job.base_model.name if job.base_model else ""
    dataset_record_profile(dataset_id=dataset.id, profile=result)
    rows = sum(result.get("rows", {}).values())
    job_services.job_succeed(
        job_id=job.id,
        result={"over_context": result.get("over_context", 0), "rows": rows},
        message=f"Profiled {rows} rows",
    )


class JobCancelled(Exception):
    pass


@app.task(
    name="jobs.profile",
    bind=True,
    soft_time_limit=PROFILE_SOFT_LIMIT_S,
    time_limit=PROFILE_SOFT_LIMIT_S + 60,
)
def profile_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _profile)


def _register_model(job: Job) -> None:
    from lifecycle_app.services.catalog import basemodel_register_result
    from workers.ml import loading
    from workers.ml.planner.shape import shape_from_config

    source, location = job.params["source"], job.params["location"]
    spec = loading.ModelSpec(source=source, location=location)
    path = loading.resolve(spec, Path(settings.MODELS_DIR))
    info = loading.describe(path)
    shape = shape_from_config(path)
    model = basemodel_register_result(
        name=job.params.get("name") or location,
        source=source,
        location=location,
        info=info,
        shape=shape.to_json(),
        weights_present=loading.weights_present(path),
    )
    job_services.job_succeed(
        job_id=job.id,
        result={"base_model": model.slug},
        message=f"Added {model.name} ({info.family}, {info.n_params:,} parameters)",
    )


@app.task(name="jobs.register_model", bind=True, soft_time_limit=300, time_limit=360)
def register_model_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _register_model)


EXPORT_SOFT_LIMIT_S = 60 * 60
LATENCY_PROMPT = (
    "Summarize the following dialogue in one or two sentences.\n\nDialogue:\n"
    "A: Could you send me the report by Friday?\nB: Sure, I will have it done by Thursday.\n"
    "Summary:"
)


def _export(job: Job) -> None:
    """Build a variant, measure it and its parent side by side, bundle it, record it."""
    import shutil

    from lifecycle_app.prompting import PromptingError, kit_for, spec_of, split_rows
    from lifecycle_app.services import deploy
    from workers.ml import loading
    from workers.ml import prompts as ml_prompts
    from workers.ml.export import bundle as ml_bundle
    from workers.ml.export import measure, variants
    from workers.ml.params import ExportParams
    from workers.ml.serving import prompt_text

    params = ExportParams(**job.params)
    source = job.base_model
    if source is None:
        raise UserFacingError("The model of this export was deleted.")
    total = deploy.EXPORT_STEPS

    def progress(done: int, _total: int, message: str) -> None:
        job_services.job_progress(job_id=job.id, done=done, total=total, message=message)

    def cancelled() -> bool:
        if job_services.job_cancel_requested(job_id=job.id):
            job_services.job_mark_cancelled(job_id=job.id)
            return True
        return False

    source_path = loading.resolve(model_spec_for(job), Path(settings.MODELS_DIR))
    root = deploy.export_dir(job.id)
    out_dir = root / "variant"
    if out_dir.exists():  # a redelivered job starts its folder again
        shutil.rmtree(out_dir)
    info = deploy.card_info(job)
    files = variants.build_variant(
        params.kind, source_path, out_dir, card=variants.model_card(info), on_progress=progress
    )
    if cancelled():
        return

    prompts: list[ml_prompts.BuiltPrompt] = []
    if job.dataset is not None:
        try:
            kit = kit_for(source)
            rows = split_rows(job.dataset, "test", params.eval_rows)
            split = "test"
            if not rows:
                rows, split = split_rows(job.dataset, "validation", params.eval_rows), "validation"
        except PromptingError as exc:
            raise UserFacingError(str(exc)) from exc
        spec = spec_of(params.template) if params.template else ml_prompts.DEFAULT_TEMPLATE
        prompts, _ = ml_prompts.build_prompts(
            kit, spec, rows, [], max_new_tokens=params.max_new_tokens, overflow="truncate"
        )
    measurements: dict[str, object] = {
        "settings": {
            "rows": len(prompts),
            "split": split if prompts else "",
            "dataset": job.dataset.name if job.dataset else "",
            "max_new_tokens": params.max_new_tokens,
            "decoding": "greedy",
            "score_kind": params.score_kind,
            "device": "cpu",
            "worker": job.worker,
        }
    }
    parent_files = variants.folder_files(Path(source_path))
    parent_size = variants.weights_size(parent_files)
    base = loading.adapter_base(Path(source_path))
    if base:  # an adapter is served with its base weights
        parent_size += variants.weights_size(variants.folder_files(Path(base)))
    variant_size = variants.weights_size(files)
    if params.kind == "onnx":
        # Served through PyTorch here, so only its size is compared.
        measurements["parent"] = {"size_bytes": parent_size}
        measurements["variant"] = {"size_bytes": variant_size}
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(out_dir), local_files_only=True)
        latency_prompt = (
            prompts[0].text
            if prompts
            else prompt_text(tokenizer, [{"role": "user", "content": LATENCY_PROMPT}])
        )
        common: dict[str, Any] = {
            "prompts": prompts,
            "references_kind": params.score_kind,
            "latency_prompt": latency_prompt,
            "max_new_tokens": params.max_new_tokens,
        }
        progress(3, total, f"Measuring the parent on {len(prompts)} rows")
        measurements["parent"] = measure.measure(
            source_path, size_bytes=parent_size, **common
        ).as_dict()
        if cancelled():
            return
        progress(4, total, f"Measuring the variant on {len(prompts)} rows")
        measured = measure.measure(str(out_dir), size_bytes=variant_size, **common)
        measurements["variant"] = measured.as_dict()
        if measured.scores:
            info["scores"] = {
                k: f"{v:.4f} (parent {measurements['parent']['scores'].get(k, 0):.4f})"  # type: ignore[index]
                for k, v in measured.scores.items()
            }
            (out_dir / variants.CARD_NAME).write_text(variants.model_card(info), encoding="utf-8")
            files = variants.folder_files(out_dir)
    if cancelled():
        return
    bundle = None
    if params.kind != "onnx":
        progress(5, total, "Writing the download bundle")
        bundle = ml_bundle.write_bundle(out_dir, root / "bundle.zip")
    weights = variants.main_weights(files)
    progress(total, total, "Recording the variant")
    deploy.export_finish(
        job=job,
        out_dir=out_dir,
        bundle=bundle,
        files=files,
        measurements=measurements,
        weights_sha256=weights["sha256"] if weights else "",
    )


@app.task(
    name="jobs.export",
    bind=True,
    soft_time_limit=EXPORT_SOFT_LIMIT_S,
    time_limit=EXPORT_SOFT_LIMIT_S + 120,
)
def export_job(self: Task, job_id: int) -> None:
    _run(self, job_id, _export)


SERVE_SOFT_LIMIT_S = 120


@app.task(
    name="serve.generate",
    acks_late=False,  # a request nobody waits for any more is not worth redelivering
    soft_time_limit=SERVE_SOFT_LIMIT_S,
    time_limit=SERVE_SOFT_LIMIT_S + 10,
)
def serve_generate(reply_key: str, path: str, request: dict[str, object]) -> None:
    """Answer one API request with the deployed model at `path` (kept loaded). Touches no
    database row: the web process already checked the token and found the model."""
    from workers import serve_reply
    from workers.ml import serving
    from workers.ml.params import ServeRequest

    reply: dict[str, object]
    try:
        loaded = serving.warm_model(path, Path(settings.MODELS_DIR))
        reply = {"ok": True, **serving.complete(loaded, ServeRequest(**request))}  # type: ignore[arg-type]
    except serving.PromptTooLong as exc:
        reply = {"ok": False, "status": 400, "type": "invalid_request_error", "message": str(exc)}
    except UserFacingError as exc:
        reply = {"ok": False, "status": 503, "type": "model_unavailable", "message": str(exc)}
    except Exception as exc:
        logger.exception("Serving request %s failed", reply_key)
        reply = {
            "ok": False,
            "status": 500,
            "type": "server_error",
            "message": f"The model failed on this request ({type(exc).__name__}).",
        }
    serve_reply.send(reply_key, reply)


@app.task(name="jobs.reap")
def reap_stale_jobs() -> int:
    from lifecycle_app.services.datasets import staged_cleanup
    from workers import serve_reply

    staged_cleanup()
    serve_reply.cleanup()
    return job_services.job_reap_stale()


@worker_ready.connect
def _reap_on_start(**kwargs: object) -> None:
    try:
        job_services.job_reap_stale()
    except Exception:
        logger.exception("Reaping stale jobs at start-up failed")
