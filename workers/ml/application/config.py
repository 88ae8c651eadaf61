"""An application version's settings as the worker sees them (JSON on the wire)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Retrieval = Literal["off", "bm25", "dense", "hybrid"]
Reasoning = Literal["none", "step_by_step", "calculator"]
RETRIEVAL_MODES: tuple[str, ...] = ("off", "bm25", "dense", "hybrid")
REASONING_AIDS: tuple[str, ...] = ("none", "step_by_step", "calculator")
MAX_TOP_K = 20

DEFAULT_TEMPLATE = (
    "Answer the question using the context below.\n\nContext:\n{context}\n\nQuestion: {input}"
)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AppConfig:
    """`template` holds `{context}` (the retrieved chunks) and `{input}` (the question),
    replaced literally. `fallback_min_score`: below it (see `answer.confidence`) the app
    answers "I don't know" instead of asking the model; None: only empty retrieval falls
    back."""

    template: str = DEFAULT_TEMPLATE
    retrieval: Retrieval = "hybrid"
    top_k: int = 4
    threshold: float | None = None
    cite: bool = True
    reasoning: Reasoning = "none"
    fallback_min_score: float | None = None
    max_new_tokens: int = 96
    index_folder: str | None = None
    embedder_path: str | None = None

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ConfigError(" ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown application settings: {', '.join(unknown)}.")
        return cls(**data)


def config_problems(config: AppConfig) -> list[str]:
    problems = []
    for slot in ("{context}", "{input}"):
        if slot not in config.template:
            problems.append(f"The template must contain {slot}.")
    if config.retrieval not in RETRIEVAL_MODES:
        problems.append(f"Retrieval must be one of {', '.join(RETRIEVAL_MODES)}.")
    if config.reasoning not in REASONING_AIDS:
        problems.append(f"The reasoning aid must be one of {', '.join(REASONING_AIDS)}.")
    if not 1 <= config.top_k <= MAX_TOP_K:
        problems.append(f"top_k must be between 1 and {MAX_TOP_K}.")
    if config.max_new_tokens < 1:
        problems.append("max_new_tokens must be at least 1.")
    if config.retrieval != "off" and not config.index_folder:
        problems.append("Retrieval is on but no index folder was given.")
    return problems
