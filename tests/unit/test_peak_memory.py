"""The fine-tuning dashboard's peak memory is the run's own peak (issue 19): a worker
process runs many jobs, and its lifetime maximum (`ru_maxrss`) once showed a DPO run the
peak of an earlier fine-tune."""

from __future__ import annotations

import os

import pytest

from workers.ml.training.adapters import PROC_CLEAR_REFS, peak_memory_bytes, reset_peak_memory

MB = 2**20


@pytest.mark.skipif(
    not os.access(PROC_CLEAR_REFS, os.W_OK), reason="needs Linux's /proc/self/clear_refs"
)
def test_the_peak_after_a_reset_is_this_runs_not_the_processes() -> None:
    earlier_job = bytearray(400 * MB)
    for i in range(0, len(earlier_job), 4096):  # touch every page: it is resident now
        earlier_job[i] = 1
    lifetime = peak_memory_bytes("cpu")
    del earlier_job

    reset_peak_memory("cpu")
    this_run = peak_memory_bytes("cpu")

    assert this_run < lifetime - 300 * MB
    small = bytearray(50 * MB)
    for i in range(0, len(small), 4096):
        small[i] = 1
    assert peak_memory_bytes("cpu") >= this_run
