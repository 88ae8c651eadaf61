"""Data-parallel fine-tuning with torch.distributed: the rank side and its file protocol.

Design note. The task (workers/tasks/distributed.py) writes a spec file into an empty run
folder and launches `python -m torch.distributed.run` as a subprocess (a Celery prefork
child is daemonic and cannot start multiprocessing children); torchrun starts N ranks of
`python -m workers.ml.training.distributed SPEC`. The ranks know nothing of Django.

- Work split. Every rank builds the same data order from the seed; each micro-batch of
  `batch_size` rows is dealt out row by row (`rows[rank::world]`), so the per-process
  batch is ceil(batch_size / N) and the global batch (batch_size x grad_accum) is the
  single-process one. Each rank backpropagates its share of the step's token-sum loss
  divided by the step's global target-token count; after the step's micro-batches the
  gradients are summed across ranks once (DDP's `no_sync` accumulation followed by one
  synchronised backward, done by hand in buckets so a rank whose share of a short last
  batch is empty still takes part). Clipping and the optimizer step then see exactly the
  single-process gradient, so every rank holds identical weights and the loss curve
  matches one process up to floating-point summation order (dropout masks aside).
- Only rank 0 writes: checkpoints (into the run folder the single-process path uses),
  the final folder and its result, and the events the task turns into Job-row writes
  (`events.jsonl`: one JSON object per line, flushed per line; the task reads complete
  lines only). Other ranks write only their pid and, when they fail, an error file.
- Lockstep with the task (`lockstep` in the spec). After each optimizer step rank 0 waits
  until the task has written that step to the database and answered in the `ack` file
  (the other ranks wait for rank 0 at their next collective), exactly as the
  single-process loop waits for its `on_step` writes: the dashboard never lags behind the
  processes, and the cancel check the task makes before answering lands before the next
  step starts.
- Cancel. The task creates the `cancel` file (before its answer to a step, or at any time
  during a long step); before every micro-batch each rank looks at it and the ranks agree
  by a MAX all-reduce, so they all stop at the same micro-batch and exit cleanly with no
  barrier; rank 0 writes the cancelled result.
- Failures. A rank that raises writes `rank-<r>.error.json` (the message, whether it is
  meant for a person, the traceback). A rank killed by a signal writes nothing, torchrun
  (`--max-restarts 0`) tears the group down, and the task resumes the job from its last
  checkpoint. A stuck collective raises after `collective_timeout_s` (the process group's
  timeout), and a rank whose torchrun died (its parent changed) exits within a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from workers.ml.errors import UserFacingError

SPEC_NAME = "spec.json"
EVENTS_NAME = "events.jsonl"
RESULT_NAME = "result.json"
CANCEL_NAME = "cancel"
ACK_NAME = "ack"
ACK_POLL_S = 0.005
BUCKET_ELEMENTS = 1 << 24  # gradient elements summed per all-reduce (64 MB in float32)
DEFAULT_COLLECTIVE_TIMEOUT_S = 600


def process_count(requested: int, *, batch_size: int, gpus: int, cpu_cores: int) -> int:
    """How many processes a run gets: the processes asked for, at most one per GPU when the
    worker has GPUs (else one per CPU core), and at most one per row of a micro-batch (a
    process with no rows would only add communication)."""
    available = gpus if gpus > 0 else cpu_cores
    return max(1, min(requested, available, batch_size))


def local_resources() -> dict[str, int]:
    """This machine's GPUs and the CPU cores this process may use."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {"gpus": gpus, "cpu_cores": cores}


def launch_command(
    spec_path: Path,
    nproc: int,
    *,
    nnodes: int = 1,
    rdzv_endpoint: str = "",
    rdzv_id: str = "",
) -> list[str]:
    """The torchrun command line. One host: `--standalone` (a rendezvous on a free local
    port). Several hosts: the same command on each, with `--nnodes` and a c10d rendezvous
    at `rdzv_endpoint` (host:port of one of them) under one `rdzv_id`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if rdzv_endpoint:
        cmd += [
            "--nnodes",
            str(nnodes),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            rdzv_endpoint,
            "--rdzv-id",
            rdzv_id or "lifecycle",
        ]
    else:
        cmd += ["--standalone"]
    cmd += ["--max-restarts", "0", "-m", "workers.ml.training.distributed", str(spec_path)]
    return cmd


@dataclass(frozen=True)
class Group:
    """This rank's place in the process group."""

    rank: int
    world: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: Sequence[Any]) -> list[Any]:
        """This rank's rows of a micro-batch (dealt out in turn)."""
        return list(rows[self.rank :: self.world])

    def sum_grads(self, params: Sequence[Any]) -> None:
        """Replace every gradient by its sum over the ranks (None counts as zeros)."""
        import torch
        import torch.distributed as dist

        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        buckets: list[list[Any]] = [[]]
        size = 0
        for g in grads:
            if buckets[-1] and size + g.numel() > BUCKET_ELEMENTS:
                buckets.append([])
                size = 0
            buckets[-1].append(g)
            size += g.numel()
        for bucket in buckets:
            if not bucket:
                continue
            flat = torch.cat([b.reshape(-1) for b in bucket])
            dist.all_reduce(flat)
            offset = 0
            for b in bucket:
                b.copy_(flat[offset : offset + b.numel()].view_as(b))
                offset += b.numel()

    def total(self, *values: float) -> list[float]:
        """Each value summed over the ranks."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any rank."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def init_group(timeout_s: float, device: str = "") -> Group:
    """Join the group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK): NCCL with one GPU
    per local rank when there are GPUs, gloo on CPU. Collectives time out after
    `timeout_s`, so a peer that hangs cannot hold the others forever."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)  # "cuda" below means this rank's GPU
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s)
    )
    return Group(
        rank=dist.get_rank(), world=dist.get_world_size(), device="cuda" if use_cuda else "cpu"
    )


# --- the file protocol between rank 0 and the task -----------------------------------------


class EventWriter:
    """Rank 0's events for the task: one JSON line each, flushed at once."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a", encoding="utf-8")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self._fh.write(json.dumps({"kind": kind, **data}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def wait_ack(folder: Path, step: int) -> None:
    """Rank 0: wait until the task has answered step `step` (see the module notes). The
    task dies with its processes, so there is no timeout here."""
    path = folder / ACK_NAME
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(path.read_text(encoding="utf-8")) >= step:
                return
        time.sleep(ACK_POLL_S)


def write_ack(folder: Path, step: int) -> None:
    """The task: step `step` is recorded (and the cancel file, if any, is in place)."""
    tmp = folder / f".{ACK_NAME}.tmp"
    tmp.write_text(str(step), encoding="utf-8")
    os.replace(tmp, folder / ACK_NAME)


class EventReader:
    """The task's side: the complete lines written since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
        self._offset += end
        return [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)  # a reader sees the whole file or none


@dataclass(frozen=True)
class RankFailure:
    rank: int
    message: str
    user_facing: bool
    traceback: str


def rank_failures(folder: Path) -> tuple[list[int], list[RankFailure]]:
    """The ranks that started (from their pid files) and the errors they recorded."""
    started = sorted(int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("rank-*.pid"))
    failures = [
        RankFailure(**json.loads(p.read_text(encoding="utf-8")))
        for p in sorted(folder.glob("rank-*.error.json"))
    ]
    return started, failures


def rank_pids(folder: Path) -> dict[int, int]:
    return {
        int(p.name.split("-")[1].split(".")[0]): int(p.read_text())
        for p in folder.glob("rank-*.pid")
    }


# --- the rank's entry point ------------------------------------------------------------------


@contextlib.contextmanager
def _exit_with_parent(interval: float = 1.0) -> Iterator[None]:
    """Exit at once when torchrun goes away (killed with its worker): an orphaned rank
    would otherwise train on and write into a folder nobody reads."""
    parent = os.getppid()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


def _train(spec: dict[str, Any], group: Group, folder: Path) -> Any:
    """Run the spec's training ("sft" fine-tuning or "dpo" alignment) on this rank."""
    from workers.ml import loading

    loaded = loading.load(
        loading.ModelSpec(**spec["model"]),
        Path(spec["models_dir"]),
        device=group.device,
        keep_warm=False,
    )
    events = EventWriter(folder / EVENTS_NAME) if group.is_main else None
    cancel_file = folder / CANCEL_NAME
    lockstep = bool(spec.get("lockstep"))

    def on_step(s: Any) -> None:
        assert events is not None
        events("step", s.as_dict())
        if lockstep:
            wait_ack(folder, s.step)

    common_args: dict[str, Any] = {
        "out_dir": Path(spec["out_dir"]),
        "on_step": on_step if events else None,
        "should_cancel": cancel_file.exists,
        "resume": bool(spec["resume"]),
        "group": group,
    }
    try:
        if spec.get("kind", "sft") == "dpo":
            from workers.ml.params import AlignParams
            from workers.ml.training import dpo

            return dpo.align(
                loaded,
                AlignParams(**spec["params"]),
                [dpo.Pair(**p) for p in spec["pairs"]],
                on_score=(lambda when, score: events("score", {"when": when, **score.as_dict()}))
                if events
                else None,
                **common_args,
            )
        from workers.ml import prompts
        from workers.ml.params import TrainParams
        from workers.ml.training import common, sft

        params = TrainParams(**spec["params"])
        kit = prompts.load_kit(Path(spec["kit_folder"]), int(spec["context_length"]))
        return sft.train(
            loaded,
            params,
            spec["train_rows"],
            spec["eval_rows"],
            render=common.make_render(kit, common.template_spec(params.template)),
            on_eval=(lambda e: events("eval", e.as_dict())) if events else None,
            on_checkpoint=(
                lambda step, path: events("checkpoint", {"step": step, "path": str(path)})
            )
            if events
            else None,
            **common_args,
        )
    finally:
        if events:
            events.close()


def main(argv: Sequence[str]) -> int:
    spec_path = Path(argv[0])
    folder = spec_path.parent
    rank = int(os.environ.get("RANK", "0"))
    (folder / f"rank-{rank}.pid").write_text(str(os.getpid()))
    threads = os.environ.get("LIFECYCLE_RANK_THREADS")
    try:
        import torch
        import torch.distributed as dist

        if threads:
            torch.set_num_threads(int(threads))
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        with _exit_with_parent():
            group = init_group(
                float(spec.get("collective_timeout_s", DEFAULT_COLLECTIVE_TIMEOUT_S)),
                spec.get("device", ""),
            )
            result = _train(spec, group, folder)
            if group.is_main:
                _write_json(folder / RESULT_NAME, result.as_dict())
            dist.destroy_process_group()
        return 0
    except Exception as exc:
        _write_json(
            folder / f"rank-{rank}.error.json",
            {
                "rank": rank,
                "message": str(exc),
                "user_facing": isinstance(exc, UserFacingError),
                "traceback": traceback.format_exc(),
            },
        )
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
