"""The parts fine-tuning and alignment share: their time limit, the attempt's run folder
(seeded from the last attempt's checkpoints), the dashboard's side of a training step and
the end of a training job."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.finetune import runs as ft
from workers.tasks.base import JobRun, attempt_folder

logger = logging.getLogger(__name__)

FINETUNE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy
        shutil.copy2(src, dst)


def run_folder(run: JobRun) -> Path:
    """This attempt's training folder. A later attempt starts from the newest earlier
    attempt that left checkpoints or a final folder: it is hard-linked in (checkpoints are
    written to new files and renamed, never changed in place, so sharing inodes is safe),
    so a superseded worker that wakes up writes only into its own attempt's folder."""
    out_dir = run.folder / "run"
    if out_dir.exists() or run.attempt <= 1:
        return out_dir
    earlier = [attempt_folder(run.job_id, n) / "run" for n in range(run.attempt - 1, 0, -1)]
    earlier.append(attempt_folder(run.job_id, 0).parent / "run")  # before attempt folders
    for previous in earlier:
        if (previous / "checkpoints").is_dir() or (previous / "final").is_dir():
            tmp = out_dir.with_name(".run-seeding")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(
                previous,
                tmp,
                copy_function=_link_or_copy,
                ignore=shutil.ignore_patterns(".*"),  # half-written temporary folders
            )
            tmp.rename(out_dir)
            logger.info("Job %s attempt %s starts from %s", run.job_id, run.attempt, previous)
            break
    return out_dir


def _training_progress(job: Job, run: JobRun) -> Callable[[Any], None]:
    """The dashboard's side of a training step (fine-tuning and alignment alike): the
    train-loss and learning-rate curves, the live figures, measured progress, a log line."""

    def on_step(s: Any) -> None:
        run.write(
            ft.metric_record,
            job_id=job.id,
            step=s.step,
            values={"train_loss": s.loss, "learning_rate": s.learning_rate},
        )
        line = (
            f"step {s.step}/{s.total_steps} · epoch {s.epoch:.2f} · loss {s.loss:.4f} · "
            f"lr {s.learning_rate:.2e}"
            + (f" · {s.tokens_per_s:.0f} tokens/s" if s.tokens_per_s else "")
        )
        run.write(
            ft.finetune_live,
            job_id=job.id,
            step=s.step,
            total=s.total_steps,
            live=s.as_dict(),
            line=line,
        )

    return on_step


def _training_end(job: Job, run: JobRun, result: Any, finish: Callable[..., Any]) -> None:
    """The end of a training job (fine-tuning, alignment): cancelled with what it did, or
    finished with its final folder as the artifact (`finish` records the candidate)."""
    from workers.ml.training import sft as train

    summary = {k: v for k, v in result.as_dict().items() if k not in ("history", "evals")}
    if result.status == "cancelled":
        run.write(ft.finetune_log, job_id=job.id, line=f"cancelled at step {result.steps}")
        fresh = run.fresh()
        run.write(
            job_services.job_mark_cancelled,
            job_id=job.id,
            result={**fresh.result, "summary": summary},
        )
        return
    assert result.final_dir is not None
    final_dir = Path(result.final_dir)
    run.write(
        finish, job=job, summary=summary, final_dir=final_dir, files=train.artifact_files(final_dir)
    )
