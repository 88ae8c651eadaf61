"""The parts fine-tuning and alignment share: their time limit, the dashboard's side of a
training step and the end of a training job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.finetune import runs as ft

FINETUNE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)


def _training_progress(job: Job) -> Callable[[Any], None]:
    """The dashboard's side of a training step (fine-tuning and alignment alike): the
    train-loss and learning-rate curves, the live figures, measured progress, a log line."""

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
    from workers.ml.training import sft as train

    summary = {k: v for k, v in result.as_dict().items() if k not in ("history", "evals")}
    if result.status == "cancelled":
        ft.finetune_log(job_id=job.id, line=f"cancelled at step {result.steps}")
        fresh = Job.objects.get(id=job.id)
        job_services.job_mark_cancelled(job_id=job.id, result={**fresh.result, "summary": summary})
        return
    assert result.final_dir is not None
    final_dir = Path(result.final_dir)
    finish(job=job, summary=summary, final_dir=final_dir, files=train.artifact_files(final_dir))
