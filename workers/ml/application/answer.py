"""Answer one question with an application (contract 3 of the application stage).

Events, in order: {"type": "retrieval"}, {"type": "prompt"}, many {"type": "delta"},
then {"type": "done"}. A human fallback sends no prompt: retrieval, one delta with the
polite refusal, done with `fallback: true`.

The calculator aid runs the model in rounds: generation stops as soon as a complete
CALC(...) appears, the tool's result is appended, and the model continues from there
(at most MAX_CALC_CALLS calls; the new-token budget is shared by all rounds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.ml.application import calculator, reasoning
from workers.ml.application.citations import citations as find_citations
from workers.ml.application.compose import compose, count
from workers.ml.application.config import AppConfig
from workers.ml.params import GenerationSettings

Emit = Callable[[dict[str, Any]], None]
MAX_CALC_CALLS = 4
FALLBACK_ANSWER = (
    "I'm sorry, I don't know the answer to that from the documents I have. "
    "I have passed your question on to a person who can help."
)


@dataclass
class AppAnswer:
    answer: str
    text: str  # everything the model wrote (with reasoning and tool results)
    prompt: str
    hits: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    fallback: bool
    fallback_reason: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str = "stop"
    context_truncated: bool = False
    calc_calls: int = 0
    ttft_s: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hit_dict(number: int, hit: Any) -> dict[str, Any]:
    c = hit.chunk
    return {
        "number": number,
        "chunk_id": c.chunk_id,
        "document_id": c.document_id,
        "document_name": c.document_name,
        "position": c.position,
        "text": c.text,
        "score": float(hit.score),
        "scores": {k: float(v) for k, v in (hit.scores or {}).items()},
        "ranks": {k: int(v) for k, v in (hit.ranks or {}).items()},
    }


def confidence(hit: Any, mode: str) -> float:
    """What the fallback rule compares with `fallback_min_score`: the BM25 score for
    BM25, the cosine similarity (0..1) for dense and hybrid (hybrid's own RRF score only
    says rank, not how well the passage matches)."""
    scores = hit.scores or {}
    if mode == "bm25":
        return float(scores.get("bm25", hit.score))
    return float(scores.get("dense", hit.score))


def fallback_reason(config: AppConfig, hits: Sequence[Any]) -> str:
    if config.retrieval == "off":
        return ""
    if not hits:
        return "Nothing relevant was found in the documents."
    if config.fallback_min_score is not None:
        best = max(confidence(h, config.retrieval) for h in hits)
        if best < config.fallback_min_score:
            return (
                f"The best passage scored {best:.3f}, below the fallback threshold "
                f"{config.fallback_min_score:g}."
            )
    return ""


def load_index(config: AppConfig) -> Any:
    from pathlib import Path

    from workers.ml.retrieval import KnowledgeIndex, load_embedder

    assert config.index_folder
    return KnowledgeIndex.load(Path(config.index_folder), load_embedder(config.embedder_path))


def _safe_end(buf: str, start: int) -> int:
    """How far streamed text can be shown in calculator mode: not into a CALC( call that
    is still being written (it is cut and answered when it closes)."""
    match = calculator.CALL.search(buf, start)
    if match:
        return match.end()
    i = buf.find("CALC(", start)
    if i >= 0:
        return i
    for k in range(4, 0, -1):
        if buf.endswith("CALC("[:k]):
            return len(buf) - k
    return len(buf)


def answer_question(
    loaded: Any,
    config: AppConfig,
    question: str,
    settings: GenerationSettings,
    emit: Emit,
    should_stop: Callable[[], bool] | None = None,
    index: Any = None,
) -> AppAnswer:
    """Answer `question`; `settings.max_new_tokens` bounds the answer (callers usually
    pass the app's `max_new_tokens`)."""
    import time

    from workers.ml.generation.streaming import stream_generate

    began = time.perf_counter()
    question = question.strip()
    hits: list[Any] = []
    if config.retrieval != "off":
        index = index if index is not None else load_index(config)
        hits = list(index.search(question, config.retrieval, config.top_k, config.threshold))
    hit_rows = [hit_dict(i + 1, h) for i, h in enumerate(hits)]
    emit({"type": "retrieval", "mode": config.retrieval, "hits": hit_rows})

    reason = fallback_reason(config, hits)
    if reason:
        emit({"type": "delta", "text": FALLBACK_ANSWER})
        done = AppAnswer(
            answer=FALLBACK_ANSWER,
            text=FALLBACK_ANSWER,
            prompt="",
            hits=hit_rows,
            citations=[],
            fallback=True,
            fallback_reason=reason,
            usage={"prompt_tokens": 0, "completion_tokens": 0},
            seconds=round(time.perf_counter() - began, 4),
        )
        emit(_done_event(done))
        return done

    chunks = [h.chunk for h in hits]
    composed = compose(
        loaded.tokenizer,
        template=config.template,
        question=question,
        chunks=chunks,
        cite=config.cite,
        instructions=reasoning.instructions(config.reasoning, config.cite, bool(chunks)),
        context_length=loaded.context_length,
        max_new_tokens=settings.max_new_tokens,
    )
    emit(
        {
            "type": "prompt",
            "text": composed.text,
            "prompt_tokens": composed.prompt_tokens,
            "chunks_used": composed.chunks_used,
            "context_truncated": composed.context_truncated,
        }
    )

    calc = config.reasoning == "calculator"
    generated = ""
    remaining = settings.max_new_tokens
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    finish = "stop"
    calls = 0
    ttft: float | None = None
    user_stopped = False
    while True:
        # The tool is offered while calls are left: a CALC( being written is held back.
        state: dict[str, Any] = {"buf": "", "shown": 0, "tool": calc and calls < MAX_CALC_CALLS}

        def on_delta(text: str, state: dict[str, Any] = state) -> None:
            state["buf"] += text
            end = _safe_end(state["buf"], 0) if state["tool"] else len(state["buf"])
            if end > state["shown"]:
                emit({"type": "delta", "text": state["buf"][state["shown"] : end]})
                state["shown"] = end

        def stop_now(state: dict[str, Any] = state) -> bool:
            nonlocal user_stopped
            if should_stop is not None and should_stop():
                user_stopped = True
                return True
            return bool(state["tool"] and calculator.CALL.search(state["buf"]))

        prompt_text = composed.text + generated
        if generated and loaded.context_length:
            # Tool results add tokens: never ask past the context window.
            room = loaded.context_length - count(loaded.tokenizer, prompt_text)
            remaining = min(remaining, room)
            if remaining <= 0:
                finish = "length"
                break
        result = stream_generate(
            loaded,
            prompt_text,
            settings.model_copy(update={"max_new_tokens": remaining}),
            on_delta,
            should_stop=stop_now,
        )
        if ttft is None:
            ttft = result.ttft_s
        usage["prompt_tokens"] += result.prompt_tokens
        usage["completion_tokens"] += result.completion_tokens
        remaining -= result.completion_tokens
        finish = result.finish_reason
        piece = result.text
        match = calculator.CALL.search(piece) if state["tool"] else None
        if match and not user_stopped:
            piece = piece[: match.end()]
            if len(piece) > state["shown"]:
                emit({"type": "delta", "text": piece[state["shown"] :]})
            tool = calculator.result_text(match.group(1))
            emit({"type": "delta", "text": tool})
            generated += piece + tool
            calls += 1
            if remaining > 0:
                continue
            finish = "length"
            break
        if len(piece) > state["shown"]:
            emit({"type": "delta", "text": piece[state["shown"] :]})
        generated += piece
        break

    answer = reasoning.extract_answer(generated) if config.reasoning == "step_by_step" else ""
    answer = answer or generated.strip()
    done = AppAnswer(
        answer=answer,
        text=generated,
        prompt=composed.text,
        hits=hit_rows,
        citations=find_citations(generated, chunks[: composed.chunks_used]) if config.cite else [],
        fallback=False,
        usage=usage,
        finish_reason=finish,
        context_truncated=composed.context_truncated,
        calc_calls=calls,
        ttft_s=ttft,
        seconds=round(time.perf_counter() - began, 4),
    )
    emit(_done_event(done))
    return done


def _done_event(done: AppAnswer) -> dict[str, Any]:
    return {
        "type": "done",
        "answer": done.answer,
        "text": done.text,
        "citations": done.citations,
        "fallback": done.fallback,
        "fallback_reason": done.fallback_reason,
        "usage": done.usage,
        "finish_reason": done.finish_reason,
        "calc_calls": done.calc_calls,
        "context_truncated": done.context_truncated,
    }
