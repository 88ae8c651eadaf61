"""A memory planner for choosing a model, checked against measurement.

Plain arithmetic on a `ModelShape` (see `shape`), so the web process can call it: no
Django, no torch.

The memory plan follows the course's rules of thumb (FACTS.md "reference numbers"): 4 bytes
per FP32 parameter, 2 for FP16/BF16, 1 for INT8; full training with Adam adds about 20
bytes per parameter (gradients 4, Adam states 8, activations and temporaries up to 8). On
top of that it counts what the rule of thumb leaves out for small models: the logits
(batch x seq x vocab, in FP32) and the process's runtime baseline (torch + transformers
loaded, about 340 MB RSS on CPU). `bench/planner_memory.py` measures real peaks in fresh
processes and compares them with these plans, on a grid of methods, LoRA targets and ranks,
batches and sequence lengths.

What a training step keeps depends on the method. Full fine-tuning keeps every layer's
activations (`activation_elements_per_token_layer`). A frozen base (LoRA, prompt tuning)
keeps fewer: a frozen linear layer needs no input to compute its weight's gradient, so the
attention output (o_proj's input) and the MLP product (down_proj's input) are not kept.
LoRA then adds, per adapted module and token: its dropout's output and mask (when dropout
is on), the module's input where the frozen base does not keep it, and the r-wide output of
A. On top of the activations, the backward pass allocates their gradients and the CPU
allocator keeps freed blocks between steps: measured, the peak holds about as much again as
the activations, except what the weight gradients and optimizer states later reuse of it
(the `backward` term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from workers.ml.planner.shape import (
    ModelShape,
    lora_trainable_params,
    prompt_tuning_trainable_params,
)

DType = Literal["fp32", "fp16", "bf16", "int8"]
Method = Literal["inference", "full", "lora", "prompt_tuning"]
Optimizer = Literal["adamw", "sgd"]

MB = 2**20
GB = 2**30

# Bytes per stored weight.
WEIGHT_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Bytes per activation element: INT8 is a weight-only storage format; the matmuls run in
# 16-bit, so activations (and the KV cache) are 2 bytes as for FP16/BF16.
ACTIVATION_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 2}

# The process baseline: `import torch, transformers` plus the Llama modelling code and peft
# (everything a training child imports before it touches a weight). Measured on this
# 2-core CPU machine with torch 2.13 (CPU build), transformers 5.24 and peft 0.21 by the
# "imports only" child of bench/planner_memory.py: 342 MB peak RSS (torch + transformers
# alone: 236 MB). A GPU process adds the CUDA context on the device (not counted here).
DEFAULT_RUNTIME_OVERHEAD = 340 * MB

# The rule of thumb's allowance for "activations and temporaries" in full training, per
# trainable parameter (FACTS.md: up to 8 bytes). Activations and the optimizer's scratch
# buffers do not coexist (activations are freed by the end of backward, the optimizer's
# temporaries live only inside `step()`), so the plan counts max(allowance, activations +
# logits): the `temporaries` term is what the activation terms leave of the allowance.
TEMPORARIES_ALLOWANCE_PER_PARAM = 8

# cuBLAS workspace per handle on a CUDA device (see MemoryPlan.cuda_total).
CUBLAS_WORKSPACE_PER_HANDLE = 32 * MB

# Optimizer states per trainable parameter, in FP32: AdamW keeps two moments (m and v);
# "sgd" is SGD with momentum, one buffer.
OPTIMIZER_STATES = {"adamw": 2, "sgd": 1}


# --- memory ------------------------------------------------------------------------------


def activation_elements_per_token_layer(shape: ModelShape) -> int:
    """Elements one decoder layer keeps for backward, per token (Llama-style layer).

    Counted from what autograd saves in a pre-norm layer with SDPA attention and a gated
    (SwiGLU) MLP, following Korthikanti et al. 2022 ("Reducing activation recomputation"),
    whose GPT layer keeps 34*h + 5*a*s elements per token; without dropout masks, with
    fused/flash attention (no a*s*s score matrix) and a gated MLP it becomes:
      two RMSNorms, input and normalised output each       4*h
      q after RoPE, attention output, o_proj's input       3*q_dim
      k and v after RoPE (grouped-query: kv_dim each)      2*kv_dim
      MLP: gate, silu(gate), up, gate*up (down's input)    4*i
    For SmolLM2-135M (h=576, kv=192, i=1536) that is 10,560 elements, about 18*h.
    """
    q_dim = shape.n_heads * shape.head_dim
    kv_dim = shape.n_kv_heads * shape.head_dim
    return 4 * shape.hidden_size + 3 * q_dim + 2 * kv_dim + 4 * shape.intermediate_size


def frozen_elements_per_token_layer(shape: ModelShape) -> int:
    """Elements one decoder layer keeps for backward, per token, when its weights are frozen
    (LoRA's base model, prompt tuning): the layer of `activation_elements_per_token_layer`
    without the inputs only a weight gradient needs (o_proj's and down_proj's inputs, one
    RMSNorm output). For SmolLM2-135M 7,296 elements; measured with autograd's saved-tensor
    hooks: 7,287.
      RMSNorms (input only)                 2*h
      q and attention output                2*q_dim
      k and v                               2*kv_dim
      MLP: gate, silu(gate), up             3*i
    """
    q_dim = shape.n_heads * shape.head_dim
    kv_dim = shape.n_kv_heads * shape.head_dim
    return 2 * shape.hidden_size + 2 * q_dim + 2 * kv_dim + 3 * shape.intermediate_size


# Linear layers whose input a frozen base does not keep (it is not another layer's saved
# tensor): the attention output projection and the MLP's down projection, by their names in
# the common architectures.
OUTPUT_SIDE_MODULES = frozenset(
    {"o_proj", "down_proj", "out_proj", "c_proj", "fc2", "wo", "dense_4h_to_h", "fc_out"}
)
# Bytes of a dropout mask per element (torch keeps a bool mask).
DROPOUT_MASK_BYTES = 1


def lora_bytes_per_token(
    shape: ModelShape, r: int, targets: Any, dropout: float, activation_bytes: int
) -> int:
    """What LoRA's adapted modules keep for backward per token, all layers together:
    per module with input width d: dropout's output and mask (d x (bytes + 1), when dropout
    is on), the input itself for output-side modules (d x bytes), and A's output (r x 4, FP32)."""
    names = [targets] if isinstance(targets, str) else list(targets)
    total = 0
    for name in set(names):
        for d_in, _d_out, count in shape.linear_modules.get(name, []):
            per = r * 4
            if dropout > 0:
                per += d_in * (activation_bytes + DROPOUT_MASK_BYTES)
            if name in OUTPUT_SIDE_MODULES:
                per += d_in * activation_bytes
            total += per * count
    return total


@dataclass(frozen=True)
class MemoryPlan:
    """Estimated peak memory of one run, in bytes, term by term with explanations."""

    weights: int
    gradients: int
    optimizer_states: int
    temporaries: int
    activations: int
    backward: int
    logits: int
    kv_cache: int
    runtime_overhead: int
    trainable_params: int
    explanations: dict[str, str]
    shape: ModelShape
    settings: dict[str, Any]

    TERMS = (
        "weights",
        "gradients",
        "optimizer_states",
        "temporaries",
        "activations",
        "backward",
        "logits",
        "kv_cache",
        "runtime_overhead",
    )

    @property
    def total(self) -> int:
        return sum(int(getattr(self, name)) for name in self.TERMS)

    @property
    def device_total(self) -> int:
        """The total without the process's runtime baseline."""
        return self.total - self.runtime_overhead

    @property
    def cuda_total(self) -> int:
        """What `torch.cuda.max_memory_allocated` should peak at on a CUDA device.

        cuBLAS takes its workspace through PyTorch's caching allocator: 32 MiB per handle
        on Hopper (CUBLAS_WORKSPACE_CONFIG ":4096:8"), one handle for the forward thread
        and one more for autograd's backward thread. Checked on an H100: without this term
        a 107K-parameter model measured 33 MB for inference and 74-76 MB for a training step.
        """
        handles = 1 if self.settings.get("method") == "inference" else 2
        return self.device_total + handles * CUBLAS_WORKSPACE_PER_HANDLE

    def rows(self) -> list[tuple[str, int, str]]:
        return [(name, int(getattr(self, name)), self.explanations[name]) for name in self.TERMS]


def _mb(n: float) -> str:
    return f"{n / MB:,.0f} MB" if n < GB else f"{n / GB:,.2f} GB"


def memory_plan(
    shape: ModelShape,
    *,
    dtype: DType = "fp32",
    method: Method = "inference",
    batch_size: int = 1,
    seq_len: int = 512,
    lora_r: int = 8,
    lora_targets: Any = ("q_proj", "v_proj"),
    lora_dropout: float = 0.05,
    num_virtual_tokens: int = 20,
    optimizer: Optimizer = "adamw",
    gradient_checkpointing: bool = False,
    runtime_overhead: int | None = None,
) -> MemoryPlan:
    """Estimate the peak memory of inference or one training step (steady state)."""
    if dtype not in WEIGHT_BYTES:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {', '.join(WEIGHT_BYTES)}.")
    if method not in ("inference", "full", "lora", "prompt_tuning"):
        raise ValueError(f"Unknown method {method!r}.")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"Unknown optimizer {optimizer!r}; use adamw or sgd.")
    if method == "full" and dtype == "int8":
        raise ValueError(
            "INT8 weights cannot be fully fine-tuned; use LoRA on the INT8 model instead."
        )
    settings: dict[str, Any] = {
        "dtype": dtype,
        "method": method,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lora_r": lora_r,
        "lora_targets": tuple(lora_targets),
        "lora_dropout": lora_dropout,
        "num_virtual_tokens": num_virtual_tokens,
        "optimizer": optimizer,
        "gradient_checkpointing": gradient_checkpointing,
        "runtime_overhead": runtime_overhead,
    }
    wb = WEIGHT_BYTES[dtype]
    ab = ACTIVATION_BYTES[dtype]
    n = shape.n_params
    training = method != "inference"
    tokens_per_row = seq_len + (num_virtual_tokens if method == "prompt_tuning" else 0)
    tokens = batch_size * tokens_per_row
    ex: dict[str, str] = {}

    # Trainable parameters: peft keeps adapters in FP32 whatever the base dtype.
    if method == "full":
        trainable = n
    elif method == "lora":
        trainable = lora_trainable_params(shape, lora_r, lora_targets)
    elif method == "prompt_tuning":
        trainable = prompt_tuning_trainable_params(shape, num_virtual_tokens)
    else:
        trainable = 0
    adapter = trainable if method in ("lora", "prompt_tuning") else 0

    weights = n * wb + adapter * 4
    ex["weights"] = f"{n:,} parameters x {wb} bytes ({dtype})" + (
        f" + {adapter:,} FP32 adapter parameters" if adapter else ""
    )

    mixed = method == "full" and dtype in ("fp16", "bf16")
    if not training:
        gradients = optimizer_states = 0
        ex["gradients"] = "none: inference"
        ex["optimizer_states"] = "none: inference"
    else:
        grad_bytes = wb if method == "full" else 4
        gradients = trainable * grad_bytes
        ex["gradients"] = f"{trainable:,} trainable parameters x {grad_bytes} bytes"
        states = OPTIMIZER_STATES[optimizer]
        optimizer_states = trainable * 4 * states + (trainable * 4 if mixed else 0)
        ex["optimizer_states"] = f"{optimizer}: {states} FP32 state(s) per trainable parameter" + (
            " + an FP32 master copy of each weight (mixed precision)" if mixed else ""
        )

    # Activations kept for backward (training) or the transient working set (inference).
    frozen = method in ("lora", "prompt_tuning")
    per_layer = (
        frozen_elements_per_token_layer(shape)
        if frozen
        else activation_elements_per_token_layer(shape)
    )
    lora_extra = (
        tokens * lora_bytes_per_token(shape, lora_r, lora_targets, lora_dropout, ab)
        if method == "lora"
        else 0
    )
    if not training:
        activations = tokens * per_layer * ab
        ex["activations"] = (
            f"no gradients: about one layer's working set at a time, "
            f"{tokens:,} tokens x {per_layer:,} elements x {ab} bytes"
        )
    elif gradient_checkpointing:
        boundary = shape.n_layers * tokens * shape.hidden_size * ab
        activations = boundary + tokens * per_layer * ab + lora_extra
        ex["activations"] = (
            f"gradient checkpointing: each of {shape.n_layers} layers keeps its input "
            f"({tokens:,} tokens x {shape.hidden_size}) + one layer recomputed in full"
        )
    else:
        kept = "frozen layers (no weight-gradient inputs)" if frozen else "layers"
        activations = (
            shape.n_layers * tokens * per_layer * ab
            + 2 * tokens * shape.hidden_size * ab
            + lora_extra
        )
        ex["activations"] = (
            f"{shape.n_layers} {kept} x {tokens:,} tokens x {per_layer:,} elements "
            f"({per_layer / max(shape.hidden_size, 1):.1f} x hidden per layer) x {ab} bytes"
        )
        if method == "lora":
            ex["activations"] += (
                f" + LoRA on {', '.join(sorted(set(lora_targets)))}: {_mb(lora_extra)} "
                "(A's r-wide output"
                + (", dropout's output and mask" if lora_dropout > 0 else "")
                + ", and the input of output-side modules)"
            )

    # Logits are computed in the model dtype and upcast to FP32 for the loss; for small
    # models with big vocabularies they rival the weights.
    one_logits = tokens * shape.vocab_size * 4
    if training:
        logits = 3 * one_logits
        ex["logits"] = (
            f"{tokens:,} tokens x {shape.vocab_size:,} vocab x 4 bytes, three times: the "
            "logits, the log-softmax saved by the loss, and their gradient"
        )
    else:
        logits = one_logits
        ex["logits"] = (
            f"{tokens:,} tokens x {shape.vocab_size:,} vocab x 4 bytes (a full forward pass; "
            "generate() keeps only the last position's)"
        )

    if training:
        kv_cache = 0
        ex["kv_cache"] = "none: training does not cache keys and values"
    else:
        kv_dim = shape.n_kv_heads * shape.head_dim
        kv_cache = 2 * shape.n_layers * kv_dim * tokens * ab
        ex["kv_cache"] = (
            f"keys and values: 2 x {shape.n_layers} layers x {kv_dim} x {tokens:,} tokens "
            f"x {ab} bytes"
        )

    if training:
        allowance = TEMPORARIES_ALLOWANCE_PER_PARAM * trainable
        temporaries = max(0, allowance - activations - logits)
        # Backward allocates the activations' gradients, and the allocator keeps freed
        # blocks between steps: the peak holds about as much again as the activations.
        # Weight gradients, optimizer states and temporaries are allocated after the
        # activations are freed and reuse that memory, so only the rest adds up.
        backward = max(0, activations - gradients - optimizer_states - temporaries)
        ex["backward"] = (
            "activation gradients during backward and freed blocks the allocator keeps "
            f"between steps: about the activations again ({_mb(activations)}), less what "
            "the weight gradients, optimizer states and temporaries reuse of it"
        )
        ex["temporaries"] = (
            f"rule of thumb: {TEMPORARIES_ALLOWANCE_PER_PARAM} bytes per trainable parameter "
            f"({_mb(allowance)}) for activations and optimizer temporaries together; "
            "this is the part the activation and logits rows do not already use"
        )
    else:
        temporaries = backward = 0
        ex["temporaries"] = "none: inference"
        ex["backward"] = "none: inference"

    overhead = DEFAULT_RUNTIME_OVERHEAD if runtime_overhead is None else runtime_overhead
    ex["runtime_overhead"] = (
        "process baseline: torch + transformers (+ peft) imported, measured on CPU as "
        f"peak RSS ({_mb(overhead)})"
    )
    return MemoryPlan(
        weights=weights,
        gradients=gradients,
        optimizer_states=optimizer_states,
        temporaries=temporaries,
        activations=activations,
        backward=backward,
        logits=logits,
        kv_cache=kv_cache,
        runtime_overhead=overhead,
        trainable_params=trainable,
        explanations=ex,
        shape=shape,
        settings=settings,
    )


def per_process(batch_size: int, processes: int) -> tuple[int, int]:
    """Data-parallel training: (processes, rows per process per micro-batch). Each process
    holds a full replica (weights, gradients, optimizer states) and the activations of its
    share of the micro-batch, so a run's memory verdict is per process. A process with no
    rows would only add communication, so there are at most `batch_size` of them."""
    n = max(1, min(processes, batch_size))
    return n, math.ceil(batch_size / n)


def _replan(plan: MemoryPlan, **changes: Any) -> MemoryPlan:
    settings = {**plan.settings, **changes}
    return memory_plan(plan.shape, **settings)


def verdict(plan: MemoryPlan, available_bytes: int) -> tuple[bool, list[str]]:
    """Whether `plan` fits in `available_bytes`, and if not, what would help, biggest first.

    Each suggestion changes one thing from the plan and states the new estimate; a last
    line says whether all of them together fit.
    """
    if plan.total <= available_bytes:
        return True, []
    s = plan.settings
    options: list[tuple[str, MemoryPlan, dict[str, Any]]] = []
    change: dict[str, Any]
    if s["method"] == "full":
        change = {"method": "lora"}
        targets = ", ".join(s["lora_targets"])
        options.append(
            (f"Use LoRA (r={s['lora_r']} on {targets})", _replan(plan, **change), change)
        )
    lower = {"fp32": "bf16", "fp16": "int8", "bf16": "int8"}.get(s["dtype"])
    if lower == "int8" and s["method"] == "full":
        lower = None
    if lower:
        change = {"dtype": lower}
        options.append((f"Load the weights in {lower.upper()}", _replan(plan, **change), change))
    if s["batch_size"] > 1:
        batch = s["batch_size"] // 2
        while batch > 1 and _replan(plan, batch_size=batch).total > available_bytes:
            batch //= 2
        change = {"batch_size": batch}
        options.append(
            (
                f"Use batch size {batch} (gradient accumulation keeps the effective batch)",
                _replan(plan, **change),
                change,
            )
        )
    if s["method"] != "inference" and not s["gradient_checkpointing"]:
        change = {"gradient_checkpointing": True}
        options.append(
            ("Turn on gradient checkpointing (about 30% slower)", _replan(plan, **change), change)
        )
    options.sort(key=lambda o: o[1].total)
    advice = [
        f"{label}: about {_mb(new.total)} (saves {_mb(plan.total - new.total)})"
        + ("; fits" if new.total <= available_bytes else "")
        for label, new, _ in options
        if new.total < plan.total
    ]
    if options:
        combined: dict[str, Any] = {}
        for _, _, change in options:
            combined.update(change)
        together = _replan(plan, **combined)
        if together.total <= available_bytes:
            advice.append(f"All of these together: about {_mb(together.total)}; fits.")
        else:
            advice.append(
                f"Even all of these together need about {_mb(together.total)} of "
                f"{_mb(available_bytes)} available: choose a smaller model or a bigger machine."
            )
    else:
        advice.append("Choose a smaller model or a bigger machine.")
    return False, advice


__all__ = [
    "DEFAULT_RUNTIME_OVERHEAD",
    "MemoryPlan",
    "activation_elements_per_token_layer",
    "frozen_elements_per_token_layer",
    "lora_bytes_per_token",
    "memory_plan",
    "per_process",
    "verdict",
]
