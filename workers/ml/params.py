"""Validated job parameters, shared by the web side (validation) and the workers (use).

No torch import here: the web process imports this module.
"""

from __future__ import annotations

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


class TrialParams(GenerationSettings):
    """Settings of one prompt trial: a template over N rows of an evaluation split."""

    model_ref: str = Field(min_length=1)
    dataset_id: int
    split: Literal["validation", "test"] = "validation"
    n_rows: int = Field(default=50, ge=1, le=MAX_TRIAL_ROWS)
    shots: int = Field(default=0, ge=0, le=MAX_SHOTS)
    shot_mode: Literal["first", "random", "manual"] = "first"
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
