"""Streamed generation on the tiny model: no Django, no worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.ml import loading
from workers.ml.errors import GenerationError
from workers.ml.generation.stream import generate
from workers.ml.generation.streaming import first_stop, held_back, stream_generate
from workers.ml.params import GenerateParams, GenerationSettings

PROMPT = "Summarize the dialogue: A: hello there. B: hi, how are you?"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> loading.LoadedModel:
    models_dir: Path = tmp_path_factory.mktemp("models")
    return loading.load(loading.ModelSpec("tiny"), models_dir, device="cpu")


def run(tiny: loading.LoadedModel, **kw: object) -> tuple[list[str], object]:
    stop = kw.pop("stop", None)
    should_stop = kw.pop("should_stop", None)
    deltas: list[str] = []
    settings = GenerationSettings(**({"max_new_tokens": 24} | kw))  # type: ignore[arg-type]
    result = stream_generate(
        tiny,
        PROMPT,
        settings,
        deltas.append,
        should_stop=should_stop,  # type: ignore[arg-type]
        stop=stop,  # type: ignore[arg-type]
    )
    return deltas, result


def test_greedy_stream_matches_generate_token_for_token(tiny: loading.LoadedModel) -> None:
    deltas, result = run(tiny)
    reference = generate(
        tiny,
        GenerateParams(model_ref="tiny", prompt=PROMPT, max_new_tokens=24, use_chat_template=False),
    )
    assert result.text == reference.text  # type: ignore[attr-defined]
    assert "".join(deltas) == result.text  # type: ignore[attr-defined]
    assert result.completion_tokens == reference.output_tokens  # type: ignore[attr-defined]
    assert result.prompt_tokens == reference.prompt_tokens  # type: ignore[attr-defined]
    assert len(deltas) > 1
    assert 0 < result.ttft_s <= result.seconds  # type: ignore[attr-defined]


def test_it_reports_length_when_the_token_budget_runs_out(tiny: loading.LoadedModel) -> None:
    _, result = run(tiny, max_new_tokens=5, repetition_penalty=1.0)
    if result.finish_reason == "length":  # type: ignore[attr-defined]
        assert result.completion_tokens == 5  # type: ignore[attr-defined]
    else:  # the tiny model may pick its end token early: then fewer tokens, "stop"
        assert result.completion_tokens < 5  # type: ignore[attr-defined]


def test_sampling_is_reproducible_with_a_seed(tiny: loading.LoadedModel) -> None:
    kw = {"decoding": "sampling", "temperature": 1.5, "top_p": 0.9, "top_k": 0}
    _, a = run(tiny, seed=3, **kw)
    _, b = run(tiny, seed=3, **kw)
    texts = {run(tiny, seed=s, **kw)[1].text for s in range(4)}  # type: ignore[attr-defined]
    assert a.text == b.text  # type: ignore[attr-defined]
    assert len(texts) > 1  # the seed matters


def test_a_stop_string_split_across_deltas_is_never_emitted(tiny: loading.LoadedModel) -> None:
    deltas, full = run(tiny, repetition_penalty=1.0, max_new_tokens=32)
    text = full.text  # type: ignore[attr-defined]
    # A stop string made of the end of one delta and the start of the next.
    i = next(i for i in range(1, len(deltas) - 1) if deltas[i].strip() and deltas[i + 1].strip())
    stop = deltas[i][-2:] + deltas[i + 1][:2]
    expected = text[: text.index(stop)]
    got, result = run(tiny, repetition_penalty=1.0, max_new_tokens=32, stop=["never-there", stop])
    assert "".join(got) == result.text == expected  # type: ignore[attr-defined]
    assert result.finish_reason == "stop"  # type: ignore[attr-defined]
    assert stop not in "".join(got)


def test_should_stop_ends_the_stream_within_one_token(tiny: loading.LoadedModel) -> None:
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    _, result = run(tiny, should_stop=stop_after_three, max_new_tokens=40, repetition_penalty=1.0)
    assert result.cancelled  # type: ignore[attr-defined]
    assert result.completion_tokens <= 3  # type: ignore[attr-defined]


def test_it_refuses_a_prompt_over_the_context_window(tiny: loading.LoadedModel) -> None:
    with pytest.raises(GenerationError, match="context window"):
        stream_generate(
            tiny,
            "word " * (tiny.context_length + 5),
            GenerationSettings(max_new_tokens=4),
            lambda _: None,
        )


def test_held_back_keeps_a_possible_stop_prefix() -> None:
    assert held_back("Hello ##", ["###"]) == 2
    assert held_back("Hello", ["###"]) == 0
    assert held_back("ab\ufffd", []) == 1
    assert first_stop("a END b", ["END", " b"]) == 2
    assert first_stop("abc", ["x"]) == -1


def test_the_serving_prompt_puts_the_user_text_into_the_models_template(
    tiny: loading.LoadedModel,
) -> None:
    from workers.ml.params import TemplateSnapshot
    from workers.ml.prompts import PromptKit, TemplateSpec
    from workers.ml.serving import chat_prompt

    snap = TemplateSnapshot(
        id=1,
        name="t",
        version=1,
        instruction="Summarize.",
        example_format="",
        body="{instruction}\n{input}\nSummary:",
        use_chat_template=False,
        shot_style="inline",
    )
    messages = [{"role": "user", "content": "A: hi. B: bye."}]
    spec = TemplateSpec("Summarize.", "", "{instruction}\n{input}\nSummary:", False, "inline")
    kit = PromptKit(tiny.tokenizer, None, {}, tiny.context_length)

    assert (
        chat_prompt(tiny.tokenizer, messages, snap)
        == kit.prompt(spec, [], messages[0]["content"])[0]
    )
    assert chat_prompt(tiny.tokenizer, messages, None) != chat_prompt(
        tiny.tokenizer, messages, snap
    )


def test_stream_chat_emits_deltas_then_one_done_with_usage(tiny: loading.LoadedModel) -> None:
    from workers.ml.serving import ChatPayload, stream_chat

    events: list[dict[str, object]] = []
    payload = ChatPayload(messages=[{"role": "user", "content": "Hello"}], max_tokens=6)

    result = stream_chat(tiny, payload, events.append)

    assert [e["type"] for e in events][-1] == "done"
    assert all(e["type"] == "delta" for e in events[:-1])
    done = events[-1]
    assert done["answer"] == "".join(str(e["text"]) for e in events[:-1]) == result.text
    assert done["usage"] == {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }
    assert done["citations"] == []
