"""The model being trained: a float32 copy of the base model with the method's trainable
parts (LoRA, prompt tuning, or every weight for full fine-tuning), and how the loop runs
it (the target-only loss, precision, learning-rate schedule, peak memory).

- Loss. Only positions that predict a target token go through the output layer: a
  pre-hook on the output embeddings selects them, so the model's (and peft's) own forward
  runs unchanged and the vocabulary-sized logits of prompt tokens are never built.
- `workers.ml.loading.load` keeps one inference model warm per worker; training loads its
  own float32 copy, so trials in the same worker keep the base weights. On CUDA the
  weights stay float32 and the forward runs under bf16 autocast where the GPU supports it.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path
from typing import Any

from workers.ml.loading import LoadedModel
from workers.ml.params import TrainParams
from workers.ml.training.common import TrainingError

# --- model -------------------------------------------------------------------------------


def load_base_copy(path: str) -> Any:
    """A float32 copy of the base model, apart from any copy kept warm for inference.

    The bundled model's converted folder holds plain float32 weights but its config still
    names the GGUF file it came from; left in, transformers treats the model as
    GGUF-quantized, and Trainer refuses to train it and save_pretrained refuses to save it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    quantization = getattr(config, "quantization_config", None) or {}
    if isinstance(quantization, dict) and quantization.get("quant_method") == "gguf":
        del config.quantization_config
    config.use_cache = False
    return AutoModelForCausalLM.from_pretrained(
        path, config=config, local_files_only=True, dtype=torch.float32
    )


def build_training_model(loaded: LoadedModel, params: TrainParams) -> Any:
    """A fresh float32 copy of the base model with the method's trainable parts, in
    train mode on the loaded model's device. Initialisation follows the torch seed."""
    model = load_base_copy(loaded.path)
    if params.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=params.lora_r,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules=list(params.target_modules),
        )
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:
            raise TrainingError(
                f"LoRA target modules {', '.join(params.target_modules)} do not all exist "
                f"in this model: {exc}"
            ) from exc
    elif params.method == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        # Vectors sampled from the vocabulary's embeddings start at the right scale;
        # random N(0, 1) vectors are far larger than word embeddings and learn slower.
        model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=params.num_virtual_tokens,
                prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
            ),
        )
    model.to(loaded.device)
    model.train()
    return model


def _unwrapped(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def target_loss(model: Any, batch: dict[str, Any], n_virtual: int = 0) -> Any:
    """Sum of the cross-entropy over the batch's target tokens (a 0-d tensor)."""
    import torch.nn.functional as F

    following = batch["labels"][:, 1:]
    predicts = following != -100  # position p predicts token p + 1
    positions = F.pad(predicts, (n_virtual, 1), value=False)
    head = _unwrapped(model).get_output_embeddings()

    def select(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0][positions], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        )
    finally:
        handle.remove()
    return F.cross_entropy(out.logits.float(), following[predicts], reduction="sum")


def precision(device: str) -> str:
    """How the forward pass computes: bf16 autocast on a GPU that supports it (weights and
    optimizer stay float32), float32 otherwise."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _autocast(device: str) -> Any:
    import torch

    if precision(device) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _scheduler(optimizer: Any, params: TrainParams, total_steps: int) -> Any:
    from transformers import optimization

    if params.lr_scheduler == "constant":
        return optimization.get_constant_schedule_with_warmup(optimizer, params.warmup_steps)
    if params.lr_scheduler == "cosine":
        return optimization.get_cosine_schedule_with_warmup(
            optimizer, params.warmup_steps, total_steps
        )
    return optimization.get_linear_schedule_with_warmup(optimizer, params.warmup_steps, total_steps)


PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: str) -> None:
    """Start this run's peak-memory count from now.

    A worker process runs many jobs, and `ru_maxrss` is the process's lifetime maximum: a
    DPO run would report the peak of an earlier fine-tune. On Linux writing "5" to
    /proc/self/clear_refs resets the peak resident size (VmHWM) to the current one; on CUDA
    the allocator's peak statistics are reset."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    # Not Linux, or a kernel without it: the lifetime peak is all there is.
    with contextlib.suppress(OSError):
        PROC_CLEAR_REFS.write_text("5")


def peak_memory_bytes(device: str) -> int:
    """Peak allocated CUDA memory, or this process's peak resident size on CPU since the
    last `reset_peak_memory` (VmHWM; `ru_maxrss`, the lifetime peak, where there is none)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
