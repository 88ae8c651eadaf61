"""The Django-free parts of multi-process training: how many processes a run gets, the
torchrun command for one host and for several, and the file protocol between rank 0 and
the task (events read line by line, the answer to each step, rank errors)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from workers.ml.training import distributed as ddp


def test_processes_are_capped_by_gpus_else_cores_and_by_the_batch() -> None:
    assert ddp.process_count(4, batch_size=8, gpus=0, cpu_cores=2) == 2
    assert ddp.process_count(4, batch_size=8, gpus=8, cpu_cores=2) == 4
    assert ddp.process_count(8, batch_size=8, gpus=2, cpu_cores=64) == 2
    assert ddp.process_count(4, batch_size=3, gpus=0, cpu_cores=16) == 3
    assert ddp.process_count(1, batch_size=8, gpus=0, cpu_cores=16) == 1


def test_one_host_launches_standalone_and_several_hosts_meet_at_a_rendezvous(
    tmp_path: Path,
) -> None:
    spec = tmp_path / ddp.SPEC_NAME
    local = ddp.launch_command(spec, 2)
    assert local[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node"]
    assert "--standalone" in local and "--rdzv-endpoint" not in local
    assert local[-3:] == ["-m", "workers.ml.training.distributed", str(spec)]
    assert local[local.index("--max-restarts") + 1] == "0"  # a lost rank ends the attempt

    hosts = ddp.launch_command(spec, 4, nnodes=2, rdzv_endpoint="gpu1:29400", rdzv_id="job-7")
    assert "--standalone" not in hosts
    for flag, value in [
        ("--nnodes", "2"),
        ("--rdzv-backend", "c10d"),
        ("--rdzv-endpoint", "gpu1:29400"),
        ("--rdzv-id", "job-7"),
        ("--nproc-per-node", "4"),
    ]:
        assert hosts[hosts.index(flag) + 1] == value


def test_the_task_reads_complete_event_lines_only(tmp_path: Path) -> None:
    path = tmp_path / ddp.EVENTS_NAME
    reader = ddp.EventReader(path)
    assert reader.new() == []
    writer = ddp.EventWriter(path)
    writer("step", {"step": 1})
    with path.open("a") as fh:  # a line rank 0 is still writing
        fh.write('{"kind": "step", "st')
    assert reader.new() == [{"kind": "step", "step": 1}]
    with path.open("a") as fh:
        fh.write('ep": 2}\n')
    writer("checkpoint", {"step": 2, "path": "x"})
    writer.close()
    assert reader.new() == [
        {"kind": "step", "step": 2},
        {"kind": "checkpoint", "step": 2, "path": "x"},
    ]
    assert reader.new() == []


def test_rank_zero_waits_for_the_answer_to_its_step(tmp_path: Path) -> None:
    ddp.write_ack(tmp_path, 1)
    done = threading.Event()

    def wait() -> None:
        ddp.wait_ack(tmp_path, 2)
        done.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.1)
    assert not done.is_set()
    ddp.write_ack(tmp_path, 2)
    thread.join(timeout=5)
    assert done.is_set()


def test_rank_failures_name_the_ranks_that_started_and_what_they_reported(
    tmp_path: Path,
) -> None:
    for rank, pid in ((0, 101), (1, 102)):
        (tmp_path / f"rank-{rank}.pid").write_text(str(pid))
    (tmp_path / "rank-0.error.json").write_text(
        json.dumps({"rank": 0, "message": "boom", "user_facing": False, "traceback": "tb"})
    )
    started, failures = ddp.rank_failures(tmp_path)
    assert started == [0, 1]
    assert [(f.rank, f.message, f.user_facing) for f in failures] == [(0, "boom", False)]
    assert ddp.rank_pids(tmp_path) == {0: 101, 1: 102}
