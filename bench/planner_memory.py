"""The memory planner (workers/ml/planner/memory.py) checked against measured peaks.

Runs standalone: `.venv/bin/python bench/planner_memory.py` (`--quick` runs three cases).
For the bundled SmolLM2-135M in float32 with AdamW it measures a grid of the settings
people launch: full fine-tuning, LoRA (targets from q,v to all seven linear modules, ranks
8-64, dropout 0.05 as the fine-tuning form defaults, and 0) and prompt tuning, batches
1-16, sequences 128-1024. Each case runs in a FRESH subprocess (so peaks never mix) the way
the fine-tuning worker trains: right-padded rows of different lengths with their attention
mask, the loss on real tokens, two optimizer steps (the first creates Adam's states; the
second is the steady state a long run repeats). The child reports `ru_maxrss`.

An "imports only" child measures the process baseline; that value is fed into every plan
as `runtime_overhead`. The parent never imports torch: Linux keeps a process's peak RSS
across fork and exec, so a parent with torch loaded would start every child at its peak.
The grid leaves out the corners that would need more than ~12 GB (batch 16 x 1024), so it
can run on a shared 24 GB machine; cases run one at a time.
Target: every case within 25% (|predicted/measured - 1| <= 0.25); goal 10%.
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
from workers.ml.planner.shape import ModelShape  # noqa: E402

MODELS_DIR = Path(os.environ.get("LIFECYCLE_MODELS_DIR", ROOT / "var" / "models"))
QV = ["q_proj", "v_proj"]
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL7 = [*QKVO, "gate_proj", "up_proj", "down_proj"]


def _lora(
    r: int, targets: list[str], batch: int, seq: int, dropout: float = 0.05
) -> dict[str, Any]:
    return {
        "method": "lora",
        "lora_r": r,
        "lora_targets": targets,
        "lora_dropout": dropout,
        "batch_size": batch,
        "seq_len": seq,
    }


CASES: dict[str, dict[str, Any]] = {
    "full_b1x128": {"method": "full", "batch_size": 1, "seq_len": 128},
    "full_b4x512": {"method": "full", "batch_size": 4, "seq_len": 512},
    "full_b2x1024": {"method": "full", "batch_size": 2, "seq_len": 1024},
    "full_b16x128": {"method": "full", "batch_size": 16, "seq_len": 128},
    "lora_r8_qv_b4x128": _lora(8, QV, 4, 128),
    "lora_r8_qv_b1x1024": _lora(8, QV, 1, 1024),
    "lora_r64_qv_b8x256_nodrop": _lora(64, QV, 8, 256, dropout=0.0),
    "lora_r32_qkvo_b2x1024": _lora(32, QKVO, 2, 1024),
    "lora_r16_all7_b4x512": _lora(16, ALL7, 4, 512),
    "lora_r16_all7_b8x256": _lora(16, ALL7, 8, 256),
    "lora_r64_all7_b16x128": _lora(64, ALL7, 16, 128),
    "prompt_b4x512": {"method": "prompt_tuning", "batch_size": 4, "seq_len": 512},
    "prompt_b16x128": {"method": "prompt_tuning", "batch_size": 16, "seq_len": 128},
    "prompt_b1x1024": {"method": "prompt_tuning", "batch_size": 1, "seq_len": 1024},
}
QUICK = ("full_b4x512", "lora_r16_all7_b4x512", "prompt_b4x512")
VIRTUAL_TOKENS = 16


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _batch(spec: dict[str, Any], vocab: int) -> dict[str, Any]:
    """Right-padded rows: the first at full length, the others shorter (as a real batch)."""
    import torch

    batch, seq = int(spec["batch_size"]), int(spec["seq_len"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = torch.ones((batch, seq), dtype=torch.long)
    for row in range(1, batch):
        length = int(torch.randint(seq // 2, seq + 1, (1,), generator=g))
        mask[row, length:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def child(case: str) -> dict[str, Any]:
    """Runs in a fresh interpreter; returns what the parent needs as JSON."""
    import torch
    import transformers
    from transformers.models.llama import modeling_llama  # noqa: F401

    if case == "imports":
        import peft  # noqa: F401

        return {"rss": _peak_rss()}
    from workers.ml import bundled
    from workers.ml.planner.shape import shape_from_model

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    path = bundled.convert_bundled(MODELS_DIR / bundled.BUNDLED_DIRNAME)
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    config.use_cache = False
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), config=config, dtype=torch.float32, local_files_only=True
    )
    shape = shape_from_model(model)
    spec = CASES[case]
    torch.manual_seed(0)
    if spec["method"] == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.CAUSAL_LM,
                r=spec["lora_r"],
                lora_alpha=2 * spec["lora_r"],
                lora_dropout=spec["lora_dropout"],
                target_modules=list(spec["lora_targets"]),
            ),
        )
    elif spec["method"] == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=VIRTUAL_TOKENS,
                prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
            ),
        )
    batch = _batch(spec, shape.vocab_size)
    start = time.perf_counter()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    for _ in range(2):  # the first step creates Adam's states; the second is steady state
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {
        "rss": _peak_rss(),
        "shape": shape.to_json(),
        "seconds": time.perf_counter() - start,
    }


def run_child(case: str) -> dict[str, Any]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", case],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {case} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def plan_for(spec: dict[str, Any], shape: ModelShape, overhead: int) -> Any:
    return memory_plan(
        shape,
        dtype="fp32",
        method=spec["method"],
        batch_size=spec["batch_size"],
        seq_len=spec["seq_len"],
        lora_r=spec.get("lora_r", 8),
        lora_targets=tuple(spec.get("lora_targets", QV)),
        lora_dropout=spec.get("lora_dropout", 0.0),
        num_virtual_tokens=VIRTUAL_TOKENS,
        optimizer="adamw",
        runtime_overhead=overhead,
    )


def main() -> None:
    assert "torch" not in sys.modules, "the parent must not import torch"
    began = time.perf_counter()
    names = QUICK if "--quick" in sys.argv else tuple(CASES)
    baseline = int(run_child("imports")["rss"])
    print(
        f"runtime overhead (imports-only child, peak RSS): {baseline / MB:.0f} MB "
        f"(planner default {DEFAULT_RUNTIME_OVERHEAD / MB:.0f} MB)",
        flush=True,
    )
    print(f"{'case':<28}{'predicted MB':>14}{'measured MB':>14}{'ratio':>8}{'s':>7}", flush=True)
    errors: dict[str, float] = {}
    for name in names:
        measured = run_child(name)
        shape = ModelShape.from_json(measured["shape"])
        plan = plan_for(CASES[name], shape, baseline)
        ratio = plan.total / measured["rss"]
        errors[name] = abs(ratio - 1)
        print(
            f"{name:<28}{plan.total / MB:>14.0f}{measured['rss'] / MB:>14.0f}{ratio:>8.3f}"
            f"{measured['seconds']:>7.1f}",
            flush=True,
        )
    worst = max(errors.values())
    mean = sum(errors.values()) / len(errors)
    print(
        f"\ntarget |ratio - 1| <= 0.25: {'met' if worst <= 0.25 else 'NOT met'} "
        f"(goal 0.10); {len(errors)} cases; bench took {time.perf_counter() - began:.0f} s"
    )
    print(
        f"RESULT worst_error={worst:.3f} mean_error={mean:.3f} cases={len(errors)} "
        f"overhead_mb={baseline / MB:.0f}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
    else:
        main()
