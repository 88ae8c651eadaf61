"""What the wizard suggests from the Scope answers: metrics and model families per task."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    label: str
    low: float
    high: float


METRICS: dict[str, Metric] = {
    "rouge_l": Metric("ROUGE-L", 0, 1),
    "rouge_1": Metric("ROUGE-1", 0, 1),
    "bleu": Metric("BLEU", 0, 100),
    "chrf": Metric("chrF", 0, 100),
    "accuracy": Metric("Accuracy", 0, 1),
    "f1": Metric("F1", 0, 1),
    "exact_match": Metric("Exact match", 0, 1),
    "human_rating": Metric("Human rating (1-5)", 1, 5),
}


@dataclass(frozen=True)
class TaskType:
    label: str
    metric: str
    families: tuple[str, ...]
    reason: str


TASK_TYPES: dict[str, TaskType] = {
    "summarization": TaskType(
        "Summarization",
        "rouge_l",
        ("encoder-decoder", "decoder-only"),
        "Encoder-decoders read the whole input before writing; instruct decoders also do well.",
    ),
    "classification": TaskType(
        "Classification",
        "f1",
        ("encoder-only", "decoder-only"),
        "Encoder-only models see the whole input in both directions and are cheap to serve.",
    ),
    "extraction": TaskType(
        "Extraction / NER",
        "f1",
        ("encoder-only",),
        "Token-level labels suit bidirectional encoders.",
    ),
    "question_answering": TaskType(
        "Question answering",
        "exact_match",
        ("decoder-only", "encoder-decoder"),
        "Free-form answers need a model that generates.",
    ),
    "translation": TaskType(
        "Translation",
        "chrf",
        ("encoder-decoder", "decoder-only"),
        "Sequence-to-sequence is the classic fit for translation.",
    ),
    "chat": TaskType(
        "Chat",
        "human_rating",
        ("decoder-only",),
        "Instruction-tuned decoders are built for multi-turn conversation.",
    ),
    "open_generation": TaskType(
        "Open generation",
        "human_rating",
        ("decoder-only",),
        "Decoder-only models are trained to continue text.",
    ),
}
