"""Validated job parameters, shared by the web side (validation) and the workers (use).

No torch import here: the web process imports this module.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS_LIMIT = 2048
MAX_TRIAL_ROWS = 1000
MAX_SHOTS = 8


class GenerationSettings(BaseModel):
    """How text is generated: the settings shared by the playground and prompt trials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=64, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    decoding: Literal["greedy", "sampling"] = "greedy"
    temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    top_k: int = Field(default=50, ge=0, le=1000)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Small models loop on greedy decoding without it ("sorry, sorry, sorry, ...").
    repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)

    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(**{k: getattr(self, k) for k in GenerationSettings.model_fields})


class GenerateParams(GenerationSettings):
    """Settings of one "generate" (playground) job, stored as JSON on the Job row."""

    model_ref: str = Field(min_length=1, description="catalog slug of the base model")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    use_chat_template: bool = True

    @model_validator(mode="after")
    def _prompt_not_blank(self) -> GenerateParams:
        if not self.prompt.strip():
            raise ValueError("The prompt is empty.")
        return self


class TemplateSnapshot(BaseModel):
    """The prompt template version a trial used, copied onto the job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    name: str
    version: int
    instruction: str
    example_format: str
    body: str
    use_chat_template: bool
    # Snapshots written before chat-turn shots existed ran their shots inline.
    shot_style: Literal["chat", "inline"] = "inline"


class TrialParams(GenerationSettings):
    """Settings of one prompt trial: a template over N rows of an evaluation split."""

    model_ref: str = Field(min_length=1)
    dataset_id: int
    # "train" only zero-shot (shots come from train): to collect answers to rate.
    split: Literal["validation", "test", "train"] = "validation"
    n_rows: int = Field(default=50, ge=1, le=MAX_TRIAL_ROWS)
    shots: int = Field(default=0, ge=0, le=MAX_SHOTS)
    shot_mode: Literal["first", "random", "manual", "similar"] = "first"
    shot_seed: int = Field(default=0, ge=0, le=2**31 - 1)
    shot_lines: list[int] = Field(default_factory=list, max_length=MAX_SHOTS)
    overflow: Literal["ask", "truncate", "skip"] = "ask"
    score_kind: Literal["rouge", "label"] = "rouge"
    template: TemplateSnapshot
    # None: sized to memory by the worker.
    batch_size: int | None = Field(default=None, ge=1, le=256)

    @model_validator(mode="after")
    def _shots_consistent(self) -> TrialParams:
        if self.shot_mode == "manual" and len(self.shot_lines) != self.shots:
            raise ValueError(
                f"{self.shots} examples were asked for but {len(self.shot_lines)} rows were picked."
            )
        return self


# --- fine-tuning -----------------------------------------------------------------------

MAX_TRAIN_STEPS = 100_000
# What each method trains when no learning rate is given. LoRA's 2e-4 and full
# fine-tuning's 2e-5 are the usual starting points; a soft prompt has few parameters and
# starts from random vectors, so it needs a much larger rate (peft's examples use 3e-2).
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "prompt_tuning": 3e-2, "full": 2e-5}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class TrainParams(BaseModel):
    """Settings of one fine-tuning job, stored as JSON on the Job row and written beside
    the trained weights (`training_config.json`).

    The defaults train LoRA on the bundled SmolLM2-135M on a CPU in minutes: 30 optimizer
    steps of 4 rows at up to 256 tokens, checked every 10 steps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_ref: str = Field(min_length=1, description="catalog slug of the base model")
    dataset_id: int
    method: Literal["full", "lora", "prompt_tuning"] = "lora"
    # LoRA
    lora_r: int = Field(default=8, ge=1, le=256)
    lora_alpha: int = Field(default=16, ge=1, le=1024)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], max_length=32)
    # Prompt tuning
    num_virtual_tokens: int = Field(default=16, ge=1, le=512)
    # Schedule: max_steps wins when set; otherwise `epochs` passes over the train split.
    epochs: float = Field(default=1.0, gt=0.0, le=100.0)
    max_steps: int | None = Field(default=30, ge=1, le=MAX_TRAIN_STEPS)
    learning_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = Field(default=0, ge=0, le=MAX_TRAIN_STEPS)
    batch_size: int = Field(default=4, ge=1, le=256)
    grad_accum: int = Field(default=1, ge=1, le=256)
    max_seq_len: int = Field(default=256, ge=16, le=32768)
    # 0 turns periodic evaluation / checkpoints off (the end of training is still evaluated).
    eval_every: int = Field(default=10, ge=0, le=MAX_TRAIN_STEPS)
    checkpoint_every: int = Field(default=10, ge=0, le=MAX_TRAIN_STEPS)
    eval_rows: int = Field(default=32, ge=0, le=MAX_TRIAL_ROWS)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Data-parallel processes (torch.distributed); the worker caps it at its GPUs (or CPU
    # cores) and at batch_size. batch_size stays the global micro-batch: each process
    # takes its share, so the loss curve does not depend on this setting.
    processes: int = Field(default=1, ge=1, le=64)
    template: TemplateSnapshot

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate this run uses: the one given, or the method's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES[self.method]

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        if self.method == "lora":
            if not self.target_modules:
                raise ValueError(
                    "LoRA needs at least one target module (for example q_proj and v_proj)."
                )
            bad = [m for m in self.target_modules if not _MODULE_NAME.match(m)]
            if bad:
                raise ValueError(
                    f"Target module names are layer names such as q_proj; "
                    f"{', '.join(repr(m) for m in bad)} is not one."
                )
            if len(set(self.target_modules)) != len(self.target_modules):
                raise ValueError("A LoRA target module is listed twice.")
        if self.max_steps is not None and self.warmup_steps > self.max_steps:
            raise ValueError(
                f"Warmup ({self.warmup_steps} steps) is longer than the run "
                f"({self.max_steps} steps)."
            )
        return self


def heldout_count(pairs: int, fraction: float) -> int:
    """Pairs held out of alignment training: the share asked for, at least one when any
    share is asked for, and never all of them."""
    n = round(pairs * fraction)
    if fraction > 0 and pairs >= 2:
        n = min(max(n, 1), pairs - 1)
    return n


class AlignParams(BaseModel):
    """Settings of one alignment (DPO) job, stored on the Job row and beside the adapter.

    The defaults run on the bundled SmolLM2-135M on a CPU in minutes: 30 steps of 4 pairs
    with LoRA r=8 on q_proj and v_proj, beta 0.1, a fifth of the pairs held out to measure
    preference accuracy before and after.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_ref: str = Field(min_length=1, description="catalog slug of the starting model")
    preference_set_id: int
    beta: float = Field(default=0.1, gt=0.0, le=10.0)
    learning_rate: float = Field(default=5e-5, gt=0.0, le=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = Field(default=0, ge=0, le=MAX_TRAIN_STEPS)
    max_steps: int = Field(default=30, ge=1, le=MAX_TRAIN_STEPS)
    batch_size: int = Field(default=4, ge=1, le=256)
    grad_accum: int = Field(default=1, ge=1, le=256)
    max_length: int = Field(default=512, ge=16, le=32768)
    lora_r: int = Field(default=8, ge=1, le=256)
    lora_alpha: int = Field(default=16, ge=1, le=1024)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], max_length=32)
    heldout_fraction: float = Field(default=0.2, ge=0.0, le=0.5)
    # Data-parallel processes, as for fine-tuning (TrainParams.processes).
    processes: int = Field(default=1, ge=1, le=64)
    checkpoint_every: int = Field(default=10, ge=0, le=MAX_TRAIN_STEPS)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _consistent(self) -> AlignParams:
        if not self.target_modules:
            raise ValueError("LoRA needs at least one target module (for example q_proj).")
        bad = [m for m in self.target_modules if not _MODULE_NAME.match(m)]
        if bad:
            raise ValueError(f"{', '.join(repr(m) for m in bad)} is not a layer name.")
        if self.warmup_steps > self.max_steps:
            raise ValueError(
                f"Warmup ({self.warmup_steps} steps) is longer than the run "
                f"({self.max_steps} steps)."
            )
        return self


# --- export and serving ------------------------------------------------------------------

MAX_EXPORT_ROWS = 200
MAX_SERVE_TOKENS = 512


class ExportParams(BaseModel):
    """One export job: which variant of which model, and how its trade-off is measured.

    Quality is ROUGE (or label accuracy) on the first `eval_rows` rows of the dataset's
    test split, for the variant and its parent alike: zero-shot with `template`, greedy,
    `max_new_tokens` new tokens. No dataset: size and speed only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["safetensors", "int8", "int8_weight", "onnx", "onnx_int8"]
    model_ref: str = Field(min_length=1)
    dataset_id: int | None = None
    eval_rows: int = Field(default=20, ge=1, le=MAX_EXPORT_ROWS)
    max_new_tokens: int = Field(default=32, ge=1, le=256)
    score_kind: Literal["rouge", "label"] = "rouge"
    template: TemplateSnapshot | None = None


class ServeRequest(BaseModel):
    """One API generation, validated by the web and answered by the serving worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[dict[str, str]] = Field(min_length=1, max_length=64)
    max_tokens: int = Field(default=64, ge=1, le=MAX_SERVE_TOKENS)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _messages_well_formed(self) -> ServeRequest:
        for m in self.messages:
            if set(m) - {"role", "content"} or m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(
                    'Each message is {"role": "system" | "user" | "assistant", "content": "..."}.'
                )
            if not isinstance(m.get("content"), str):
                raise ValueError("Each message needs a string 'content'.")
        if not any(m["content"].strip() for m in self.messages):
            raise ValueError("The messages are empty.")
        return self


# --- evaluation ------------------------------------------------------------------------

MAX_CANDIDATES = 8


class CandidateSpec(BaseModel):
    """One candidate of an evaluation: which model runs, with which prompt and settings.

    `kind` says where it came from ("base": a catalog model zero-shot; "trial": a prompt
    trial's settings; "finetuned": a project's fine-tuned model). Later stages (aligned,
    exported models) add kinds; the worker only needs `model_ref` and the prompt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=20)
    model_ref: str = Field(min_length=1)
    template: TemplateSnapshot
    shots: int = Field(default=0, ge=0, le=MAX_SHOTS)
    shot_mode: Literal["first", "random", "manual", "similar"] = "first"
    shot_seed: int = Field(default=0, ge=0, le=2**31 - 1)
    shot_lines: list[int] = Field(default_factory=list, max_length=MAX_SHOTS)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    source_job_id: int | None = None


class EvaluateParams(BaseModel):
    """Settings of one evaluation job: candidates over the same rows of one split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset_id: int
    split: Literal["validation", "test"] = "test"
    # None: every row of the split; else a seeded sample of that many rows.
    n_rows: int | None = Field(default=50, ge=1, le=MAX_TRIAL_ROWS)
    sample_seed: int = Field(default=0, ge=0, le=2**31 - 1)
    task: Literal["text", "label"] = "text"
    general_check: bool = True
    candidates: list[CandidateSpec] = Field(min_length=1, max_length=MAX_CANDIDATES)
    batch_size: int | None = Field(default=None, ge=1, le=256)
