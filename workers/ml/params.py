"""Validated job parameters, shared by the web side (validation) and the workers (use).

No torch import here: the web process imports this module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS_LIMIT = 2048


class GenerateParams(BaseModel):
    """Settings of one "generate" job, stored as JSON on the Job row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_ref: str = Field(min_length=1, description="catalog slug of the base model")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    max_new_tokens: int = Field(default=64, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    decoding: Literal["greedy", "sampling"] = "greedy"
    temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    top_k: int = Field(default=50, ge=0, le=1000)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Small models loop on greedy decoding without it ("sorry, sorry, sorry, ...").
    repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    use_chat_template: bool = True

    @model_validator(mode="after")
    def _prompt_not_blank(self) -> GenerateParams:
        if not self.prompt.strip():
            raise ValueError("The prompt is empty.")
        return self
