"""The memory planner (workers/ml/planner/memory.py) checked against measured peaks.

Runs standalone: `.venv/bin/python bench/planner_memory.py`. For the tiny model and the
bundled SmolLM2-135M it measures, each in a FRESH subprocess so peaks never mix:
(1) inference: one forward pass at batch 1 x seq 128 (no grad);
(2) LoRA: r=8 on q_proj/v_proj, AdamW, batch 4 x seq 128;
(3) full fine-tuning: AdamW, batch 4 x seq 128.
Training children run a warm-up step and then the measured step, so the peak is the steady
state the plan describes (Adam's states exist from the first `step()` on; a run lasts many
steps). Each child reports `ru_maxrss` at the end (and `torch.cuda.max_memory_allocated`
when CUDA is available, compared with the plan minus its runtime overhead).

An "imports only" child (torch, transformers, the Llama modelling code and peft: everything
the other children import) measures the process baseline; that measured value is fed into
every plan as `runtime_overhead` (the planner's default constant came from this number).
The parent never imports torch: Linux keeps a process's peak RSS across fork and exec,
so a parent with torch loaded starts every child's ru_maxrss at its own peak.
Target: every case within 25% (|predicted/measured - 1| <= 0.25).

Remaining gaps (measured on the 2-core CPU machine, see the report): the plan's activation
term is computed from the transformer layer's saved tensors (planner docstring), not fitted.
- LoRA is under-predicted by 10-17%, and varies by ~100 MB run to run: glibc's heap keeps
  freed activation blocks between the two steps (one step alone peaks ~250 MB lower), and
  the plan does not count allocator slack.
- Full fine-tuning is over-predicted by ~8%: the plan adds gradients and activations at
  their maxima, while backward frees activations as gradients appear; CPU AdamW runs per
  tensor (no foreach scratch), so the rule of thumb's temporaries go unused.
- Tiny-model cases are almost all runtime baseline; the small misses are allocator pages.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Plain arithmetic; imports no torch.
from workers.ml.planner.memory import DEFAULT_RUNTIME_OVERHEAD, MB, memory_plan  # noqa: E402
from workers.ml.planner.shape import ModelShape, shape_from_model  # noqa: E402

MODELS_DIR = ROOT / "var" / "models"
MODELS = {"tiny": "tiny-llama", "bundled": "smollm2-135m-instruct"}
CASES: dict[str, dict[str, Any]] = {
    "inference": {"method": "inference", "batch_size": 1, "seq_len": 128},
    "lora": {"method": "lora", "batch_size": 4, "seq_len": 128, "lora_r": 8},
    "full": {"method": "full", "batch_size": 4, "seq_len": 128},
}
TARGETS = ("q_proj", "v_proj")


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def child(case: str, which: str) -> dict[str, Any]:
    """Runs in a fresh interpreter; returns what the parent needs as JSON."""
    import torch
    import transformers
    from transformers.models.llama import modeling_llama  # noqa: F401

    if case == "imports":
        import peft  # noqa: F401

        return {"rss": _peak_rss()}
    from workers.ml import bundled

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if which == "tiny":
        path = bundled.build_tiny(MODELS_DIR / bundled.TINY_DIRNAME)
    else:
        path = bundled.convert_bundled(MODELS_DIR / bundled.BUNDLED_DIRNAME)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, local_files_only=True
    )
    model.to(device)  # type: ignore[arg-type]
    shape = shape_from_model(model)
    spec = CASES[case]
    batch, seq = int(spec["batch_size"]), int(spec["seq_len"])
    torch.manual_seed(0)
    ids = torch.randint(0, shape.vocab_size, (batch, seq), device=device)
    start = time.perf_counter()
    if case == "inference":
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
    else:
        if case == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=8, target_modules=list(TARGETS)))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        for _ in range(2):  # warm-up step (creates Adam's states), then the measured one
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return {
        "rss": _peak_rss(),
        "cuda_peak": int(torch.cuda.max_memory_allocated()) if cuda else None,
        "shape": shape.to_json(),
        "seconds": time.perf_counter() - start,
    }


def run_child(case: str, which: str) -> dict[str, Any]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", case, which],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {case}/{which} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    assert "torch" not in sys.modules, "the parent must not import torch"
    began = time.perf_counter()
    baseline = int(run_child("imports", "-")["rss"])
    print(
        f"runtime overhead (imports-only child, peak RSS): {baseline / MB:.0f} MB "
        f"(planner default {DEFAULT_RUNTIME_OVERHEAD / MB:.0f} MB); "
        "the measured value is used in every plan below"
    )
    rows: list[tuple[str, float, float, float]] = []
    gpu_rows: list[tuple[str, float, float, float]] = []
    for which in MODELS:
        for case, spec in CASES.items():
            measured = run_child(case, which)
            shape = ModelShape.from_json(measured["shape"])
            kwargs: dict[str, Any] = {**spec, "lora_targets": TARGETS}
            plan = memory_plan(shape, dtype="fp32", runtime_overhead=baseline, **kwargs)
            name = f"{which}/{case}"
            rows.append((name, plan.total, float(measured["rss"]), plan.total / measured["rss"]))
            if measured.get("cuda_peak"):
                cuda_peak = float(measured["cuda_peak"])
                gpu_rows.append((name, plan.cuda_total, cuda_peak, plan.cuda_total / cuda_peak))
    print(f"\n{'case':<20}{'predicted MB':>14}{'measured MB':>14}{'ratio':>8}   (CPU peak RSS)")
    for name, pred, meas, ratio in rows:
        print(f"{name:<20}{pred / MB:>14.0f}{meas / MB:>14.0f}{ratio:>8.3f}")
    if gpu_rows:
        print(
            f"\n{'case':<20}{'predicted MB':>14}{'measured MB':>14}{'ratio':>8}   "
            "(CUDA max_memory_allocated vs plan without runtime overhead)"
        )
        for name, pred, meas, ratio in gpu_rows:
            print(f"{name:<20}{pred / MB:>14.0f}{meas / MB:>14.0f}{ratio:>8.3f}")
    errors = {name: abs(ratio - 1) for name, _, _, ratio in rows + gpu_rows}
    worst = max(errors.values())
    print(
        f"\ntarget |ratio - 1| <= 0.25: {'met' if worst <= 0.25 else 'NOT met'}; "
        f"bench took {time.perf_counter() - began:.0f} s"
    )
    per_case = " ".join(f"{name.replace('/', '_')}={err:.3f}" for name, err in errors.items())
    print(f"RESULT worst_error={worst:.3f} overhead_mb={baseline / MB:.0f} {per_case}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()
