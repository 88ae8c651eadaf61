"""Compute-optimal pretraining: tokens, FLOPs and time on an accelerator (Chinchilla).

Plain arithmetic, so the web process can call it: no Django, no torch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

Accelerator = Literal["h100", "a100", "cpu"]

# Peak dense BF16 tensor throughput per device (no sparsity), FLOP/s.
PEAK_FLOPS: dict[str, float] = {
    "h100": 989e12,  # H100 SXM, BF16 dense
    "a100": 312e12,  # A100, BF16 dense
    # A generous round figure for a CPU: a 2-core AVX2 machine peaks nearer 0.1-0.2e12
    # FP32 FLOP/s, so CPU times below are optimistic, which does not change the verdict.
    "cpu": 1e12,
}
FLOPS_PER_PF_DAY = 8.64e19  # 1e15 FLOP/s x 86,400 s


# --- pretraining compute -----------------------------------------------------------------


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} seconds"


def pretraining_plan(
    n_params: int,
    *,
    tokens_per_param: float = 20,
    accelerator: Accelerator = "h100",
    efficiency: float = 0.4,
    n_devices: int = 1,
) -> dict[str, Any]:
    """Compute-optimal pretraining (Chinchilla: ~20 tokens/parameter, FLOPs = 6 N D)."""
    if accelerator not in PEAK_FLOPS:
        raise ValueError(f"Unknown accelerator {accelerator!r}; use {', '.join(PEAK_FLOPS)}.")
    tokens = n_params * tokens_per_param
    flops = 6 * n_params * tokens
    peak = PEAK_FLOPS[accelerator]
    sustained = peak * efficiency * n_devices
    seconds = flops / sustained if sustained > 0 else math.inf
    return {
        "n_params": n_params,
        "tokens": tokens,
        "flops": flops,
        "petaflop_s_days": flops / FLOPS_PER_PF_DAY,
        "accelerator": accelerator,
        "peak_flops_per_device": peak,
        "efficiency": efficiency,
        "n_devices": n_devices,
        "seconds": seconds,
        "duration": format_duration(seconds),
    }


__all__ = [
    "format_duration",
    "pretraining_plan",
]
