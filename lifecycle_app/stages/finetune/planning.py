"""Planning a fine-tuning run: trainable parameters, the memory estimate against the worker's
memory and its verdict, and the optimizer steps (shown before launch, checked on submit)."""

from __future__ import annotations

import math
import os
from typing import Any

from django.conf import settings

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.models import Dataset
from workers.ml.params import TrainParams
from workers.ml.planner import memory as planner_memory
from workers.ml.planner import shape as planner_shape

GB = 1024**3


def worker_memory_bytes() -> int:
    """Memory a training worker may use: the configured figure, else this machine's RAM."""
    configured = getattr(settings, "WORKER_MEMORY_GB", 0) or 0
    if configured:
        return int(configured * GB)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def total_steps(params: TrainParams, train_rows: int) -> int:
    """Optimizer steps the run will take (max steps, else epochs over the train split)."""
    if params.max_steps:
        return params.max_steps
    batches = math.ceil(max(train_rows, 1) / params.batch_size)
    return max(1, math.ceil(params.epochs * batches / params.grad_accum))


def plan_for(model: CatalogModel, params: TrainParams, dataset: Dataset | None) -> dict[str, Any]:
    """Trainable parameters, the memory estimate and verdict, and the steps planned. With
    several processes the estimate and the memory it is checked against are per process
    (`planner_memory.per_process`): a GPU each, or an equal share of a CPU worker."""
    shape = planner_shape.ModelShape.from_json(model.shape)
    gpu = bool(settings.GPU_QUEUE)
    processes, rows_each = planner_memory.per_process(params.batch_size, params.processes)
    plan = planner_memory.memory_plan(
        shape,
        dtype="bf16" if gpu else "fp32",
        method=params.method,
        batch_size=rows_each,
        seq_len=params.max_seq_len,
        lora_r=params.lora_r,
        lora_targets=tuple(params.target_modules),
        lora_dropout=params.lora_dropout,
        num_virtual_tokens=params.num_virtual_tokens,
    )
    # On GPUs each process has a device of its own; on CPU the processes share the worker.
    available = worker_memory_bytes() // (1 if gpu else processes)
    fits, advice = planner_memory.verdict(plan, available)
    train_rows = int((dataset.split_counts or {}).get("train", 0)) if dataset else 0
    return {
        "trainable": plan.trainable_params,
        "trainable_share": plan.trainable_params / shape.n_params if shape.n_params else 0.0,
        "n_params": shape.n_params,
        "total_gb": plan.total / GB,
        "available_gb": available / GB,
        "fits": fits,
        "advice": advice,
        "rows": [(name, size / GB, why) for name, size, why in plan.rows()],
        "steps": total_steps(params, train_rows),
        "train_rows": train_rows,
        "precision": "BF16 on a GPU" if gpu else "FP32 on CPU",
        "processes": processes,
        "rows_per_process": rows_each,
    }
