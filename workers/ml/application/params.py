"""Parameters of an app-evaluation job ("jobs.app_evaluate"), stored as JSON on the Job
row: what ran is a snapshot (each version's settings and model folder, the questions),
so the row still says what was measured after a version or a question is gone."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EvalVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version_id: int
    label: str
    model_path: str
    config: dict[str, Any]  # AppConfig.to_dict()


class EvalQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    question: str
    reference: str
    document_name: str = ""
    passage: str = ""


class AppEvalParams(BaseModel):
    """mode "evaluate": every version over `questions`, with and without retrieval, plus
    recall@k and MRR of each retriever over the index. mode "draft": the first version's
    model drafts `n_draft` questions from chunks of the index into set `eval_set_id`
    (pending review)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["evaluate", "draft"] = "evaluate"
    eval_set_id: int
    versions: list[EvalVersion] = Field(min_length=1)
    questions: list[EvalQuestion] = Field(default_factory=list)
    index_folder: str | None = None
    embedder_path: str | None = None
    k: int = Field(default=5, ge=1, le=20)
    n_draft: int = Field(default=0, ge=0, le=200)
    seed: int = 0
