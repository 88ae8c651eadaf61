"""The application pipeline (workers/ml/application) on the tiny model with a stand-in
index: no Django, no worker, no embedding model."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from workers.ml import loading
from workers.ml.application import calculator
from workers.ml.application.answer import FALLBACK_ANSWER, answer_question
from workers.ml.application.citations import citations, cited_numbers
from workers.ml.application.compose import QuestionTooLong, compose, count
from workers.ml.application.config import AppConfig, ConfigError
from workers.ml.application.reasoning import extract_answer
from workers.ml.generation.streaming import StreamResult
from workers.ml.params import GenerationSettings

# --- stand-ins for the retrieval core (contract 1): same attributes, no embedder -------


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    document_id: int
    document_name: str
    position: int
    text: str


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)


class WordIndex:
    """Ranks chunks by shared words; "dense" score = overlap share (0..1)."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self.calls: list[tuple[str, str, int, float | None]] = []

    def search(self, query: str, mode: str, k: int, threshold: float | None = None) -> list[Hit]:
        self.calls.append((query, mode, k, threshold))
        words = set(query.lower().split())
        hits = []
        for c in self.chunks:
            overlap = len(words & set(c.text.lower().split())) / max(len(words), 1)
            if overlap > 0 and (threshold is None or overlap >= threshold):
                hits.append(
                    Hit(
                        c, overlap, {"bm25": overlap * 5, "dense": overlap}, {"bm25": 1, "dense": 1}
                    )
                )
        hits.sort(key=lambda h: -h.score)
        return hits[:k]


CHUNKS = [
    Chunk("d1-0", 1, "office.md", 0, "the office opens at nine in the morning"),
    Chunk("d2-0", 2, "lunch.md", 0, "lunch is served at noon in the canteen"),
    Chunk("d2-1", 2, "lunch.md", 1, "the canteen closes at two"),
]
CONFIG = AppConfig(index_folder="unused", top_k=3, max_new_tokens=12)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> loading.LoadedModel:
    models_dir: Path = tmp_path_factory.mktemp("models")
    return loading.load(loading.ModelSpec("tiny"), models_dir, device="cpu", keep_warm=False)


def ask(tiny: Any, config: AppConfig, question: str, **kw: Any) -> tuple[list[dict], Any]:
    events: list[dict[str, Any]] = []
    answer = answer_question(
        tiny,
        config,
        question,
        GenerationSettings(max_new_tokens=config.max_new_tokens),
        events.append,
        index=kw.pop("index", WordIndex(CHUNKS)),
        **kw,
    )
    return events, answer


# --- config ---------------------------------------------------------------------------


def test_config_round_trips_through_json_and_names_its_problems() -> None:
    assert AppConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(ConfigError, match=r"\{context\}"):
        AppConfig(template="Q: {input}", retrieval="off")
    with pytest.raises(ConfigError, match="top_k"):
        replace(CONFIG, top_k=0)
    with pytest.raises(ConfigError, match="Unknown application settings: colour"):
        AppConfig.from_dict({**CONFIG.to_dict(), "colour": "red"})


# --- calculator -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2+3*4", 14), ("(2+3)*4", 20), ("-3**2", -9), ("7/2", 3.5), ("2^10", 1024), ("1,200/4", 300)],
)
def test_the_calculator_does_arithmetic(expression: str, value: float) -> None:
    assert calculator.evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "a+1",
        "[1,2][0]",
        "2**100000",
        "9**9**9",
        "1/0",
        "1" * 200,
        "-" * 50 + "1",
        "lambda: 1",
        "1 if 1 else 2",
        "10**20*10**20",
        "True + 1",
    ],
)
def test_the_calculator_refuses_anything_but_bounded_arithmetic(expression: str) -> None:
    with pytest.raises(calculator.CalcError):
        calculator.evaluate(expression)


def test_the_calculator_never_calls_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def forbidden(*a: Any, **k: Any) -> Any:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert calculator.result_text("6*7") == " = 42"
    assert calculator.result_text("os.getcwd()").startswith(" = error (")


def test_calc_calls_are_found_with_nested_parentheses() -> None:
    m = calculator.CALL.search("so CALC((2+3)*(4-1)) apples")
    assert m and m.group(1) == "(2+3)*(4-1)"
    assert calculator.CALL.search("CALC(2+3") is None


# --- reasoning and citations ----------------------------------------------------------


def test_step_by_step_answer_is_read_after_the_marker_or_the_last_line() -> None:
    assert extract_answer("First 2 apples.\nThen 3 more.\nAnswer: 5 apples") == "5 apples"
    assert extract_answer("answer: wrong\nthinking\nFinal answer: 7") == "7"
    assert extract_answer("Some steps.\n\nThe total is 5.\n") == "The total is 5."
    assert extract_answer("") == ""


def test_citations_map_numbers_to_chunks_and_ignore_others() -> None:
    assert cited_numbers("Noon [2], and [1, 2]; not [x] [9]") == [2, 1, 9]
    got = citations("At noon [2] [9].", CHUNKS[:2])
    assert got == [{"number": 2, "chunk_id": "d2-0", "document_name": "lunch.md", "position": 0}]


# --- prompt composition and budget ----------------------------------------------------


def test_the_prompt_numbers_chunks_with_document_names_when_citing(tiny: Any) -> None:
    composed = compose(
        tiny.tokenizer,
        template="Context:\n{context}\nQ: {input}",
        question="when is lunch?",
        chunks=CHUNKS[:2],
        cite=True,
        instructions="",
        context_length=4096,
        max_new_tokens=16,
    )
    assert "[1] (office.md) the office opens" in composed.text
    assert "[2] (lunch.md) lunch is served" in composed.text
    assert (
        composed.text.rstrip().endswith("Q: when is lunch?") or "Q: when is lunch?" in composed.text
    )
    assert composed.chunks_used == 2 and not composed.context_truncated


def test_a_long_context_is_cut_never_the_question(tiny: Any) -> None:
    long_chunks = [replace(c, text=(c.text + " ") * 40) for c in CHUNKS]
    question = "when does the canteen close on a very busy friday afternoon?"
    kw: dict[str, Any] = dict(
        template="{context}\nQ: {input}", question=question, cite=True, instructions=""
    )
    full = compose(tiny.tokenizer, chunks=long_chunks, context_length=0, max_new_tokens=8, **kw)
    limit = full.prompt_tokens // 2
    cut = compose(tiny.tokenizer, chunks=long_chunks, context_length=limit, max_new_tokens=8, **kw)
    assert cut.context_truncated
    assert cut.prompt_tokens <= limit - 8
    assert count(tiny.tokenizer, cut.text) == cut.prompt_tokens
    assert question in cut.text  # whole
    assert "[1] (office.md)" in cut.text


def test_a_question_that_alone_does_not_fit_is_a_clear_error(tiny: Any) -> None:
    with pytest.raises(QuestionTooLong, match="Ask a shorter question"):
        compose(
            tiny.tokenizer,
            template="{context}{input}",
            question="why " * 300,
            chunks=CHUNKS,
            cite=False,
            instructions="",
            context_length=128,
            max_new_tokens=16,
        )


# --- answer_question ------------------------------------------------------------------


def test_events_come_in_order_with_hits_prompt_deltas_and_done(tiny: Any) -> None:
    events, answer = ask(tiny, CONFIG, "when is lunch served?")
    types = [e["type"] for e in events]
    assert types[0] == "retrieval" and types[1] == "prompt" and types[-1] == "done"
    assert set(types[2:-1]) <= {"delta"}
    hit = events[0]["hits"][0]
    assert hit["document_name"] == "lunch.md" and hit["position"] == 0
    assert set(hit["scores"]) == {"bm25", "dense"} and hit["number"] == 1
    assert "lunch is served at noon" in events[1]["text"]
    streamed = "".join(e["text"] for e in events if e["type"] == "delta")
    done = events[-1]
    assert streamed == answer.text == done["text"]
    assert done["fallback"] is False
    assert done["usage"]["prompt_tokens"] == events[1]["prompt_tokens"]
    assert 0 < done["usage"]["completion_tokens"] <= CONFIG.max_new_tokens
    assert done["finish_reason"] in {"stop", "length"}


def test_retrieval_off_asks_no_index_and_has_empty_context(tiny: Any) -> None:
    index = WordIndex(CHUNKS)
    events, answer = ask(tiny, replace(CONFIG, retrieval="off"), "when is lunch?", index=index)
    assert index.calls == [] and events[0]["hits"] == []
    assert "lunch is served" not in answer.prompt
    assert answer.fallback is False


def test_top_k_and_threshold_reach_the_index(tiny: Any) -> None:
    index = WordIndex(CHUNKS)
    ask(tiny, replace(CONFIG, top_k=2, threshold=0.1, retrieval="bm25"), "lunch?", index=index)
    assert index.calls == [("lunch?", "bm25", 2, 0.1)]


def test_empty_retrieval_falls_back_to_a_polite_i_dont_know(tiny: Any) -> None:
    events, answer = ask(tiny, CONFIG, "zebra xylophone")
    assert [e["type"] for e in events] == ["retrieval", "delta", "done"]
    assert answer.fallback and events[-1]["fallback"] is True
    assert answer.answer == FALLBACK_ANSWER and "don't know" in answer.answer
    assert "Nothing relevant" in answer.fallback_reason


def test_a_low_confidence_hit_falls_back_too(tiny: Any) -> None:
    # "lunch" is one of four words: dense overlap 0.25 < 0.5
    _, low = ask(tiny, replace(CONFIG, fallback_min_score=0.5), "was lunch late today")
    assert low.fallback and "below the fallback threshold" in low.fallback_reason
    _, ok = ask(tiny, replace(CONFIG, fallback_min_score=0.2), "was lunch late today")
    assert not ok.fallback


def test_should_stop_ends_the_answer(tiny: Any) -> None:
    _, answer = ask(
        tiny, replace(CONFIG, max_new_tokens=20), "when is lunch", should_stop=lambda: True
    )
    assert not answer.fallback and answer.prompt
    assert answer.usage["completion_tokens"] == 0


def scripted(monkeypatch: pytest.MonkeyPatch, outputs: list[str]) -> list[str]:
    """Replace the model by scripted rounds; returns the prompts each round was given."""
    prompts: list[str] = []

    def fake(
        loaded: Any,
        prompt_text: str,
        settings: Any,
        on_delta: Any,
        should_stop: Any = None,
        stop: Any = None,
    ) -> StreamResult:
        prompts.append(prompt_text)
        text = ""
        for ch in outputs[len(prompts) - 1]:
            if should_stop is not None and should_stop():
                break
            text += ch
            on_delta(ch)
        return StreamResult(text, 10, len(text), "stop", 0.01, 0.02)

    monkeypatch.setattr("workers.ml.generation.streaming.stream_generate", fake)
    return prompts


def test_the_calculator_result_is_inserted_and_generation_continues(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = scripted(monkeypatch, ["We need CALC(12*(3+4)) extra", " so 84 [1].", "unused"])
    config = replace(CONFIG, reasoning="calculator", max_new_tokens=60)
    events, answer = ask(tiny, config, "lunch for 12 times 7?")
    assert answer.text == "We need CALC(12*(3+4)) = 84 so 84 [1]."
    assert answer.calc_calls == 1 and len(prompts) == 2
    assert prompts[1].endswith("CALC(12*(3+4)) = 84")
    assert "CALC(expression)" in prompts[0]  # the tool is explained in the prompt
    streamed = "".join(e["text"] for e in events if e["type"] == "delta")
    assert streamed == answer.text  # the cut-off " extra" was never shown
    assert [c["chunk_id"] for c in answer.citations] == ["d2-0"]


def test_the_calculator_stops_after_its_call_budget(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, ["CALC(1+1)"] * 5 + [" done"])
    _, answer = ask(
        tiny, replace(CONFIG, reasoning="calculator", max_new_tokens=90), "when is lunch"
    )
    assert answer.calc_calls == 4
    assert answer.text.count(" = 2") == 4 and answer.text.endswith("CALC(1+1)")


def test_step_by_step_streams_reasoning_and_answers_after_the_marker(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = scripted(monkeypatch, ["Lunch is at noon [1].\nAnswer: at noon"])
    _, answer = ask(tiny, replace(CONFIG, reasoning="step_by_step"), "when is lunch?")
    assert "step by step" in prompts[0] and "Answer:" in prompts[0]
    assert answer.answer == "at noon"
    assert answer.citations[0]["chunk_id"] == "d2-0"
