"""The parts fine-tuning and alignment share: their time limit, the attempt's run folder
(seeded from the last attempt's checkpoints), the dashboard's side of a training step and
the end of a training job.

Checkpoints and the final folder go to the artifact store (lifecycle_app/storage), so a job
resumed on another host continues from the last stored checkpoint. A checkpoint is
published once complete (after its folder's atomic rename), from the task's thread at the
next step: training waits for the upload. Measured (bench/storage.py, moto's S3 server on
this 2-core machine): a LoRA-sized checkpoint (5.5 MB: adapter, optimizer, scheduler) takes
about 0.2 s, once every `checkpoint_every` steps, against several seconds per step of
LoRA on the bundled model (about 160 tokens/s at batch 4 x 256 here), so simple and
ordered won over a background thread; a full fine-tune's checkpoint (the weights three
times over) is where a background upload would pay off.
Keys carry the attempt (jobs/<id>/attempt-<n>/run/checkpoints/step-<k>), so a
superseded worker never overwrites another attempt's files; the manifest is written last,
so a worker killed mid-upload leaves nothing a reader sees.
"""

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
from lifecycle_app.storage import is_remote, key_for, publish_dir, store
from lifecycle_app.storage.base import MANIFEST
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
    else:
        _seed_from_store(run, out_dir)
    return out_dir


def _step_of(key: str) -> int:
    """k of .../step-k (fine-tuning) or .../checkpoint-k (alignment); -1 otherwise."""
    number = key.rsplit("/", 1)[-1].rpartition("-")[2]
    return int(number) if number.isdigit() else -1


def _seed_from_store(run: JobRun, out_dir: Path) -> None:
    """No earlier attempt left files on this host: take the newest checkpoint any earlier
    attempt published to the store (another host's), copied out of the cache."""
    if not is_remote():
        return
    target = store()
    found = [
        k
        for k in target.published_folders(f"jobs/{run.job_id}")
        if "/run/checkpoints/" in k and f"/attempt-{run.attempt}/" not in k
    ]
    if not found:
        return
    newest = max(found, key=_step_of)
    source = target.fetch_dir(newest)
    tmp = out_dir.with_name(".run-seeding")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        source,
        tmp / "checkpoints" / newest.rsplit("/", 1)[-1],
        copy_function=_link_or_copy,  # cache files are never changed in place
        ignore=shutil.ignore_patterns(MANIFEST),
    )
    tmp.rename(out_dir)
    logger.info("Job %s attempt %s starts from the stored %s", run.job_id, run.attempt, newest)


class CheckpointSync:
    """Publishes each complete checkpoint of a run folder once, newest only."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        # Checkpoints already there were seeded from the store (or an earlier attempt).
        root = out_dir / "checkpoints"
        self.done: set[str] = {p.name for p in root.iterdir()} if root.is_dir() else set()

    def __call__(self) -> None:
        from workers.ml.training.common import checkpoints
        from workers.ml.training.dpo import latest_checkpoint

        if not is_remote():
            return  # the local store is the run folder itself
        aligned = latest_checkpoint(self.out_dir)
        latest = checkpoints(self.out_dir)[-1:] or ([aligned] if aligned else [])
        for folder in latest:
            if folder.name in self.done:
                continue
            try:
                publish_dir(folder)
            except FileNotFoundError:  # rotated away while being read: the next one comes
                continue
            self.done.add(folder.name)
            logger.info("Published checkpoint %s", key_for(folder))


def _training_progress(job: Job, run: JobRun) -> Callable[[Any], None]:
    """The dashboard's side of a training step (fine-tuning and alignment alike): the
    train-loss and learning-rate curves, the live figures, measured progress, a log line."""

    sync = CheckpointSync(run.folder / "run")

    def on_step(s: Any) -> None:
        sync()  # the checkpoint saved after the previous step, if any
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
    files = train.artifact_files(final_dir)
    # Rows hold the store key (a relative path), published before the row names it.
    key = publish_dir(final_dir)
    run.write(finish, job=job, summary=summary, final_dir=Path(key), files=files)
    if is_remote():  # the final folder holds all a later job needs; checkpoints go
        target = store()
        for folder in target.published_folders(f"jobs/{job.id}"):
            if "/run/checkpoints/" in folder:
                target.delete(folder)
