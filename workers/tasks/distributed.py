"""The launcher of multi-process fine-tuning and alignment: torchrun as a subprocess of the
task.

Design note. A Celery prefork child is daemonic and cannot start multiprocessing children,
but it can run a program: the task starts `python -m torch.distributed.run` (its own
session, so the whole group can be signalled; it dies with the task, PR_SET_PDEATHSIG) and
stays the only writer of the Job row. Rank 0 appends events (steps, evaluations,
checkpoints) to a file in the attempt's `ddp/` folder; the task polls it and writes them
through `run.write` (fenced), exactly as the single-process path does from its callbacks.

- Lockstep: rank 0 waits after each step until the task has written it and answered
  (`ack` file), as the single-process loop waits for its `on_step` writes.
- Cancel: the task asks `run.should_cancel()` before answering each step and twice a
  second during a long one, and creates the cancel file; the ranks stop together at
  their next micro-batch and rank 0 writes the cancelled result. Ranks that have not
  exited `CANCEL_GRACE_S` later are killed.
- A rank that died (killed, out of memory) or a torchrun that failed without any rank
  reporting an error: the attempt ends and the job goes back to the queue
  (`job_retry_later`), so the next attempt resumes from the last checkpoint rank 0 saved.
  An error meant for a person fails the job with it; any other rank error fails it with
  that rank's traceback.
- Superseded (JobFenced), time limit or any other exception in the task: the process
  group is terminated, then killed, before the exception goes on.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.finetune import runs as ft
from workers.ml.errors import UserFacingError
from workers.ml.loading import prepared_path
from workers.ml.params import AlignParams, TrainParams
from workers.ml.training import distributed as ddp
from workers.ml.training.common import EvalLog, StepLog, TrainResult
from workers.tasks.base import JobRun, model_spec_for

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.02  # rank 0 waits for the answer to each step: keep the round trip short
CANCEL_POLL_S = 0.5
CANCEL_GRACE_S = 60.0
STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 2000


class RankLost(Exception):
    """A training process died without saying why (a signal, the OOM killer)."""


try:
    _LIBC: Any = ctypes.CDLL(None)  # loaded here, not in the forked child
except OSError:  # pragma: no cover - not Linux
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the task's thread dies (Linux), so
    torchrun never outlives a worker killed by the OOM killer or SIGKILL."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate torchrun's process group (torchrun and every rank), then kill it."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def _tail(path: Path) -> str:
    if not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def process_count(params: TrainParams | AlignParams) -> int:
    """The processes this worker gives a run (see `ddp.process_count` for the rule)."""
    if params.processes <= 1:
        return 1
    return ddp.process_count(
        params.processes, batch_size=params.batch_size, **ddp.local_resources()
    )


def train_sft(
    job: Job,
    run: JobRun,
    params: TrainParams,
    nproc: int,
    *,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    out_dir: Path,
    resume: bool,
    on_step: Callable[[StepLog], None],
    on_eval: Callable[[EvalLog], None],
) -> TrainResult | None:
    """Fine-tune with `nproc` data-parallel processes; the result rank 0 reported, or
    None when a process was lost and the job went back to the queue to resume."""
    kit_folder = prepared_path(model_spec_for(job), Path(settings.MODELS_DIR))
    if kit_folder is None:
        raise UserFacingError("The model of this run is not prepared on this worker.")

    def on_event(kind: str, event: dict[str, Any]) -> None:
        if kind == "step":
            on_step(StepLog(**event))
        elif kind == "eval":
            on_eval(EvalLog(**event))
        elif kind == "checkpoint":
            run.write(
                ft.finetune_log,
                job_id=job.id,
                line=f"checkpoint step-{event['step']} saved by rank 0",
            )

    spec = {
        "kind": "sft",
        "params": params.model_dump(mode="json"),
        "kit_folder": str(kit_folder),
        "context_length": (job.base_model.context_length if job.base_model else 0) or 0,
        "train_rows": list(train_rows),
        "eval_rows": list(eval_rows),
        "out_dir": str(out_dir),
        "resume": resume,
    }
    result = _launch(job, run, nproc, params.batch_size, spec, on_event)
    return None if result is None else TrainResult.from_dict(result)


def align_dpo(
    job: Job,
    run: JobRun,
    params: AlignParams,
    nproc: int,
    *,
    pairs: Sequence[Any],
    out_dir: Path,
    resume: bool,
    on_step: Callable[[StepLog], None],
    on_score: Callable[[str, Any], None],
) -> Any:
    """Align with `nproc` data-parallel processes (the Trainer's DDP); rank 0's
    `AlignResult`, or None when a process was lost and the job resumes later."""
    from workers.ml.training import dpo

    def on_event(kind: str, event: dict[str, Any]) -> None:
        if kind == "step":
            on_step(StepLog(**event))
        elif kind == "score":
            when = event.pop("when")
            on_score(when, dpo.PreferenceScore(**event))

    spec = {
        "kind": "dpo",
        "params": params.model_dump(mode="json"),
        "pairs": [dataclasses.asdict(p) for p in pairs],
        "out_dir": str(out_dir),
        "resume": resume,
    }
    result = _launch(job, run, nproc, params.batch_size, spec, on_event)
    return None if result is None else dpo.result_from_dict(result)


def _launch(
    job: Job,
    run: JobRun,
    nproc: int,
    batch_size: int,
    spec: dict[str, Any],
    on_event: Callable[[str, dict[str, Any]], None],
) -> dict[str, Any] | None:
    """Run torchrun on `spec` and relay rank 0's events until it exits; rank 0's result
    as a dict, or None when the job went back to the queue (see the module notes)."""
    model = model_spec_for(job)
    folder = run.folder / "ddp"
    shutil.rmtree(folder, ignore_errors=True)  # a redelivered attempt starts its group anew
    folder.mkdir(parents=True)
    spec_path = folder / ddp.SPEC_NAME
    spec_path.write_text(
        json.dumps(
            {
                **spec,
                "model": {"source": model.source, "location": model.location},
                "models_dir": str(settings.MODELS_DIR),
                "collective_timeout_s": ddp.DEFAULT_COLLECTIVE_TIMEOUT_S,
                "lockstep": True,
            }
        ),
        encoding="utf-8",
    )
    resources = ddp.local_resources()
    threads = max(1, resources["cpu_cores"] // nproc)
    backend = "NCCL, one GPU each" if resources["gpus"] else f"gloo on CPU, {threads} threads each"
    run.write(
        ft.finetune_log,
        job_id=job.id,
        line=f"training with {nproc} data-parallel processes ({backend}); "
        f"{-(-batch_size // nproc)} rows per process per micro-batch",
    )
    log_path = folder / "torchrun.log"
    command = ddp.launch_command(spec_path, nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "LIFECYCLE_RANK_THREADS": str(threads)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    logger.info("Job %s: torchrun pid %s: %s", job.id, proc.pid, " ".join(command))
    events = ddp.EventReader(folder / ddp.EVENTS_NAME)
    cancelled = False

    def check_cancel() -> None:
        nonlocal cancelled
        if not cancelled and run.should_cancel():
            (folder / ddp.CANCEL_NAME).touch()
            cancelled = True

    def dispatch() -> None:
        for event in events.new():
            kind = event.pop("kind")
            on_event(kind, event)
            if kind == "step":
                check_cancel()  # before the answer, so the next step sees it
                ddp.write_ack(folder, event["step"])

    try:
        cancel_at: float | None = None
        next_cancel_check = 0.0
        while proc.poll() is None:
            dispatch()
            now = time.monotonic()
            if not cancelled and now >= next_cancel_check:  # also during a long step
                next_cancel_check = now + CANCEL_POLL_S
                check_cancel()
            if cancelled and cancel_at is None:
                cancel_at = now
            elif cancel_at is not None and now - cancel_at > CANCEL_GRACE_S:
                logger.error("Job %s: the processes ignored cancel; stopping them", job.id)
                _stop(proc)
            time.sleep(POLL_S)
        dispatch()
    finally:
        if proc.poll() is None:
            _stop(proc)
    result_path = folder / ddp.RESULT_NAME
    if proc.returncode == 0 and result_path.is_file():
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        return result
    _failed(job, run, folder, proc.returncode, nproc, log_path)
    return None


def _failed(
    job: Job, run: JobRun, folder: Path, returncode: int, nproc: int, log_path: Path
) -> None:
    started, failures = ddp.rank_failures(folder)
    for failure in failures:
        if failure.user_facing:
            raise UserFacingError(failure.message)
    silent = [r for r in started if r not in {f.rank for f in failures}]
    if failures and not silent:  # every process that started raised: a real error
        first = failures[0]
        raise RuntimeError(
            f"Training process {first.rank} of {nproc} failed: {first.message}\n{first.traceback}"
        )
    ranks = " and ".join(str(r) for r in silent)
    who = (
        f"training process{'es' if len(silent) > 1 else ''} {ranks} of {nproc} stopped "
        "without an error (killed, or out of memory)"
        if silent
        else f"torchrun stopped (exit code {returncode}) before the processes started"
    )
    logger.error("Job %s: %s; torchrun log tail:\n%s", job.id, who, _tail(log_path))
    reason = f"{who[0].upper()}{who[1:]}."
    run.write(ft.finetune_log, job_id=job.id, line=f"attempt {run.attempt}: {who}")
    run.write(job_services.job_retry_later, job_id=job.id, attempt=run.attempt, reason=reason)
