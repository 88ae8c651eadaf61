"""The compute/memory planner: trainable counts match peft exactly; rules of thumb hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import CatalogModelFactory
from workers.ml import bundled, loading
from workers.ml.planner.memory import CUBLAS_WORKSPACE_PER_HANDLE, MemoryPlan, memory_plan, verdict
from workers.ml.planner.pretraining import format_duration, pretraining_plan
from workers.ml.planner.shape import (
    ModelShape,
    lora_trainable_params,
    prompt_tuning_trainable_params,
    shape_from_config,
)

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "var" / "models"
ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GB = 10**9


def model_path(which: str) -> Path:
    if which == "bundled":
        return bundled.convert_bundled(MODELS_DIR / bundled.BUNDLED_DIRNAME)
    return bundled.build_tiny(MODELS_DIR / bundled.TINY_DIRNAME)


def load(which: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(model_path(which)), dtype=torch.float32, local_files_only=True
    )


def peft_trainable(model, config) -> int:
    from peft import get_peft_model

    peft_model = get_peft_model(model, config)
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


MODEL_PARAMS = [
    pytest.param("tiny", id="tiny"),
    pytest.param("bundled", id="bundled", marks=pytest.mark.bundled_model),
]


@pytest.mark.parametrize("which", MODEL_PARAMS)
@pytest.mark.parametrize(("r", "targets"), [(8, ("q_proj", "v_proj")), (16, ALL_TARGETS)])
def test_lora_trainable_params_equal_peft(which: str, r: int, targets: tuple[str, ...]) -> None:
    from peft import LoraConfig

    shape = shape_from_config(str(model_path(which)))
    expected = peft_trainable(load(which), LoraConfig(r=r, target_modules=list(targets)))
    assert lora_trainable_params(shape, r, targets) == expected
    if which == "bundled" and r == 8:
        assert expected == 460_800  # FACTS.md


@pytest.mark.parametrize("which", MODEL_PARAMS)
def test_prompt_tuning_trainable_params_equal_peft(which: str) -> None:
    from peft import PromptTuningConfig

    shape = shape_from_config(str(model_path(which)))
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)
    expected = peft_trainable(load(which), config)
    assert prompt_tuning_trainable_params(shape, 20) == expected


@pytest.mark.bundled_model
def test_bundled_shape_matches_the_model_and_round_trips_json() -> None:
    shape = shape_from_config(str(model_path("bundled")))
    assert shape.n_params == loading.describe(str(model_path("bundled"))).n_params
    assert 134_000_000 < shape.n_params < 135_000_000  # tied embeddings counted once
    assert (shape.n_layers, shape.hidden_size, shape.n_kv_heads) == (30, 576, 3)
    assert shape.linear_modules["lm_head"] == [(576, 49152, 1)]
    assert "lm_head" not in shape.lora_targets
    assert shape.linear_modules["v_proj"] == [(576, 192, 30)]
    assert ModelShape.from_json(shape.to_json()) == shape


def test_planner_imports_neither_django_nor_torch() -> None:
    code = (
        "import sys; import workers.ml.planner.shape, workers.ml.planner.memory, "
        "workers.ml.planner.pretraining; "
        "bad = {'torch', 'transformers', 'django'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def synthetic_1b() -> ModelShape:
    """A Llama-like 1B shape (numbers chosen, not loaded), n_params exactly 1e9."""
    return ModelShape(
        n_params=1_000_000_000,
        n_layers=16,
        hidden_size=2048,
        intermediate_size=8192,
        n_heads=32,
        n_kv_heads=8,
        head_dim=64,
        vocab_size=32000,
        context_length=4096,
        tie_word_embeddings=True,
        linear_modules={
            "q_proj": [(2048, 2048, 16)],
            "k_proj": [(2048, 512, 16)],
            "v_proj": [(2048, 512, 16)],
            "o_proj": [(2048, 2048, 16)],
            "gate_proj": [(2048, 8192, 16)],
            "up_proj": [(2048, 8192, 16)],
            "down_proj": [(8192, 2048, 16)],
            "lm_head": [(2048, 32000, 1)],
        },
    )


def test_rules_of_thumb_for_a_1b_fp32_model() -> None:
    shape = synthetic_1b()
    inference = memory_plan(shape, dtype="fp32", method="inference", seq_len=1)
    assert inference.weights == 4 * GB
    for dtype, per_param in (("fp16", 2), ("bf16", 2), ("int8", 1)):
        plan = memory_plan(shape, dtype=dtype, method="inference", seq_len=1)  # type: ignore[arg-type]
        assert plan.weights == per_param * GB

    full = memory_plan(shape, dtype="fp32", method="full", batch_size=1, seq_len=1)
    assert (full.weights, full.gradients, full.optimizer_states) == (4 * GB, 4 * GB, 8 * GB)
    before_activations = full.weights + full.gradients + full.optimizer_states
    before_activations += full.temporaries + full.activations + full.logits
    assert before_activations == pytest.approx(24 * GB, rel=0.01)  # 4 + 20 bytes/param
    assert full.total == before_activations + full.runtime_overhead
    assert [name for name, _, _ in full.rows()] == list(MemoryPlan.TERMS)
    assert all(text for _, _, text in full.rows())


def test_training_terms_grow_with_batch_and_shrink_with_checkpointing() -> None:
    shape = synthetic_1b()
    small = memory_plan(shape, method="full", batch_size=1, seq_len=2048)
    big = memory_plan(shape, method="full", batch_size=8, seq_len=2048)
    ckpt = memory_plan(
        shape, method="full", batch_size=8, seq_len=2048, gradient_checkpointing=True
    )
    assert big.activations == pytest.approx(8 * small.activations, rel=0.01)
    assert big.logits == 3 * 8 * 2048 * 32000 * 4  # logits, log-softmax, gradient in FP32
    assert ckpt.activations < big.activations / 5
    mixed = memory_plan(shape, dtype="bf16", method="full", batch_size=1, seq_len=1)
    # BF16 weights and gradients, FP32 master copy and Adam states: 16 bytes/param.
    assert mixed.weights + mixed.gradients + mixed.optimizer_states == 16 * GB
    lora = memory_plan(shape, method="lora", batch_size=1, seq_len=1)
    assert lora.trainable_params == lora_trainable_params(shape, 8, ("q_proj", "v_proj"))
    assert lora.optimizer_states == 8 * lora.trainable_params


def test_pretraining_plan_for_1b() -> None:
    plan = pretraining_plan(1_000_000_000)
    assert plan["tokens"] == 20e9
    assert plan["flops"] == pytest.approx(1.2e20)
    assert plan["petaflop_s_days"] == pytest.approx(1.389, rel=1e-3)
    assert plan["seconds"] == pytest.approx(1.2e20 / (989e12 * 0.4))
    assert plan["duration"] == "3.5 days"
    eight = pretraining_plan(1_000_000_000, accelerator="a100", n_devices=8)
    assert eight["seconds"] == pytest.approx(1.2e20 / (312e12 * 0.4 * 8))
    assert format_duration(90) == "1.5 minutes"


def test_verdict_when_it_fits_and_when_it_does_not() -> None:
    shape = synthetic_1b()
    plan = memory_plan(shape, method="full", batch_size=8, seq_len=1024)
    assert verdict(plan, plan.total) == (True, [])

    # Short sequences: weights, gradients and Adam dominate, so LoRA helps most.
    short = memory_plan(shape, method="full", batch_size=2, seq_len=512)
    fits, advice = verdict(short, 16 * GB)
    assert not fits
    assert advice[0].startswith("Use LoRA") and advice[0].endswith("fits")

    # Long batches: activations dominate, so smaller batches and checkpointing lead.
    fits, advice = verdict(plan, 16 * GB)
    assert not fits
    joined = "\n".join(advice)
    for word in ("LoRA", "BF16", "batch size", "gradient checkpointing"):
        assert word in joined
    assert all("about" in line for line in advice)
    saves = [float(line.split("(saves ")[1].split()[0].replace(",", "")) for line in advice[:-1]]
    units = [line.split("(saves ")[1].split()[1].rstrip(")") for line in advice[:-1]]
    in_mb = [s * (1024 if u == "GB" else 1) for s, u in zip(saves, units, strict=True)]
    assert in_mb == sorted(in_mb, reverse=True)
    assert "together" in advice[-1]

    _, hopeless = verdict(plan, 1 * GB)
    assert "bigger machine" in hopeless[-1]


def test_unknown_lora_target_lists_the_available_ones() -> None:
    shape = synthetic_1b()
    with pytest.raises(ValueError) as info:
        lora_trainable_params(shape, 8, ["q_proj", "query"])
    message = str(info.value)
    assert "query" in message
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in message.split("Available:")[1]
    assert "lm_head" not in message.split("Available:")[1]
    with pytest.raises(ValueError, match="INT8"):
        memory_plan(shape, dtype="int8", method="full")


def test_the_cuda_total_adds_one_cublas_workspace_per_handle() -> None:
    shape = ModelShape.from_json(CatalogModelFactory.build().shape)
    infer = memory_plan(shape, method="inference", batch_size=1, seq_len=128)
    train = memory_plan(shape, method="lora", batch_size=4, seq_len=128)
    workspace = CUBLAS_WORKSPACE_PER_HANDLE
    assert infer.cuda_total == infer.device_total + workspace
    assert train.cuda_total == train.device_total + 2 * workspace
