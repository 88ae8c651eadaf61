"""The one prompt builder (issue 19): chat-turn shots, similarity shots, and token counts
that agree with what the worker sends.

Chat-turn rendering is checked against transformers' own `apply_chat_template` on the tiny
model (with a chat template added) and on the bundled SmolLM2's real chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from transformers import AutoTokenizer

from workers.ml.prompts import (
    PromptKit,
    TemplateSpec,
    build_messages,
    build_prompts,
    load_kit,
    render_user_text,
    shots_per_row,
)
from workers.ml.shots import similar_shots

from .test_prompts import with_chat_template

SPEC = TemplateSpec(
    instruction="Summarize the dialogue.",
    example_format="In: {input}\nOut: {target}",
    body="{instruction}\n\n{examples}In: {input}\nOut:",
)
TRAIN: list[dict[str, Any]] = [
    {"line": 1, "input": "The printer on floor 3 jammed again.", "target": "Printer jammed."},
    {"line": 2, "input": "I was charged twice for my invoice.", "target": "Double charge."},
    {"line": 3, "input": "My laptop battery dies in an hour.", "target": "Weak battery."},
    {"line": 4, "input": "The printer prints blank pages.", "target": "Blank prints."},
    {"line": 5, "input": "Refund my invoice, it was charged twice.", "target": "Refund."},
    {"line": 6, "input": "The wifi drops every evening.", "target": "Wifi drops."},
    {"line": 7, "input": "the printer on floor 3  jammed again.", "target": "Copy of 1."},
]
ROWS: list[dict[str, Any]] = [
    {"line": 20, "input": "Printer jammed, floor 3, again!", "target": "Jam."},
    {"line": 21, "input": "Invoice charged twice, please refund.", "target": "Refund."},
    {"line": 22, "input": "Battery of my laptop dies quickly.", "target": "Battery."},
]


@pytest.fixture(scope="module")
def chat_folder(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_chat_template(tiny_folder, tmp_path_factory.mktemp("chat") / "tokenizer")


@pytest.fixture(scope="module")
def bundled_folder() -> Path:
    from workers.ml import bundled

    return bundled.convert_bundled(Path(settings.MODELS_DIR) / bundled.BUNDLED_DIRNAME)


def test_chat_turn_shots_are_user_and_assistant_turns_with_the_row_last() -> None:
    messages = build_messages(SPEC, TRAIN[:2], "New row.", chat=True)

    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert (
        messages[0]["content"] == "Summarize the dialogue.\n\nIn: " + TRAIN[0]["input"] + "\nOut:"
    )
    assert messages[1]["content"] == "Printer jammed."
    assert messages[-1]["content"] == render_user_text(SPEC, [], "New row.")
    inline = build_messages(SPEC, TRAIN[:2], "New row.", chat=False)
    assert inline == [{"role": "user", "content": render_user_text(SPEC, TRAIN[:2], "New row.")}]


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_chat_turn_shots_render_exactly_as_apply_chat_template(
    which: str, chat_folder: Path, request: pytest.FixtureRequest
) -> None:
    folder = chat_folder if which == "tiny" else request.getfixturevalue("bundled_folder")
    kit = load_kit(folder, 8192)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    (built,), _ = build_prompts(kit, SPEC, ROWS[:1], TRAIN[:3], max_new_tokens=16)

    expected_messages: list[dict[str, str]] = []
    for shot in TRAIN[:3]:
        expected_messages += [
            {"role": "user", "content": render_user_text(SPEC, [], shot["input"])},
            {"role": "assistant", "content": shot["target"]},
        ]
    expected_messages.append(
        {"role": "user", "content": render_user_text(SPEC, [], ROWS[0]["input"])}
    )
    expected = tokenizer.apply_chat_template(
        expected_messages, tokenize=False, add_generation_prompt=True
    )
    assert built.chat_shots
    assert built.messages == expected_messages
    assert built.text == expected
    # The worker tokenizes the text as it is (no special tokens added): same count.
    sent = tokenizer(built.text, add_special_tokens=False)["input_ids"]
    assert built.tokens == len(sent)


def test_inline_stays_an_option_of_the_template(chat_folder: Path) -> None:
    kit = load_kit(chat_folder, 8192)
    inline = TemplateSpec(SPEC.instruction, SPEC.example_format, SPEC.body, True, "inline")
    (built,), _ = build_prompts(kit, inline, ROWS[:1], TRAIN[:2], max_new_tokens=16)

    assert not built.chat_shots
    assert built.text == kit.apply_chat(render_user_text(inline, TRAIN[:2], ROWS[0]["input"]), True)


def test_a_plain_model_gets_inline_shots_whatever_the_template_says(tiny_folder: Path) -> None:
    kit = load_kit(tiny_folder, 8192)  # the tiny model has no chat template
    (built,), _ = build_prompts(kit, SPEC, ROWS[:1], TRAIN[:2], max_new_tokens=16)

    assert not kit.has_chat_template and not built.chat_shots
    assert built.text == render_user_text(SPEC, TRAIN[:2], ROWS[0]["input"])


def test_the_context_check_and_truncation_count_what_the_worker_sends(chat_folder: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(chat_folder))
    full = load_kit(chat_folder, 8192)
    (whole,), _ = build_prompts(full, SPEC, ROWS[:1], TRAIN[:3], max_new_tokens=8)
    long_row = [{"line": 30, "input": " ".join(["printer jammed"] * 200), "target": "x"}]
    (long_built,), _ = build_prompts(full, SPEC, long_row, TRAIN[:3], max_new_tokens=8)
    small = PromptKit(full.tokenizer, full.chat_template, full.special_tokens, whole.tokens + 40)

    (cut,), report = build_prompts(
        small, SPEC, long_row, TRAIN[:3], max_new_tokens=8, overflow="truncate"
    )

    assert report.rows_over == 1
    assert report.max_over_by == long_built.tokens - (small.context_length - 8)
    assert cut.truncated and cut.chat_shots
    assert cut.tokens == len(tokenizer(cut.text, add_special_tokens=False)["input_ids"])
    assert cut.tokens <= small.context_length - 8
    # Only the row's input was cut: the shots' turns are all there.
    assert cut.messages[:-1] == whole.messages[:-1]


def test_similar_shots_never_include_the_row_or_a_duplicate_of_it() -> None:
    train_and_row = [*TRAIN, {"line": 20, "input": ROWS[0]["input"], "target": "Jam."}]
    picked = similar_shots(train_and_row, ROWS, 2, seed=0)

    for row, shots in zip(ROWS, picked, strict=True):
        assert len(shots) == 2
        assert all(s["line"] != row["line"] for s in shots)
        assert all(s["input"].lower() != row["input"].lower() for s in shots)
        keys = {" ".join(s["input"].lower().split()) for s in shots}
        assert len(keys) == 2  # line 7 is line 1 again: never both
    # A row that is itself a train row never gets itself back.
    (own,) = similar_shots(TRAIN, TRAIN[:1], 2, seed=0)
    assert all(
        " ".join(s["input"].lower().split()) != "the printer on floor 3 jammed again." for s in own
    )


def test_similar_shots_are_the_most_similar_reproducible_and_differ_across_rows() -> None:
    first = similar_shots(TRAIN, ROWS, 1, seed=3)
    again = similar_shots(TRAIN, ROWS, 1, seed=3)

    assert first == again
    assert first[0][0]["line"] in (1, 7)  # the printer jam
    assert first[1][0]["line"] in (2, 5)  # the invoice charged twice
    assert first[2][0]["line"] == 3  # the battery
    assert len({tuple(s["line"] for s in shots) for shots in first}) == 3


def test_similar_shots_reach_each_rows_prompt_and_record_their_lines(chat_folder: Path) -> None:
    kit = load_kit(chat_folder, 8192)
    per_row = shots_per_row(TRAIN, ROWS, 2, mode="similar", seed=0)
    built, _ = build_prompts(kit, SPEC, ROWS, max_new_tokens=8, row_shots=per_row)

    for prompt, shots in zip(built, per_row, strict=True):
        assert prompt.shot_lines == [s["line"] for s in shots]
        assert all(s["target"] in prompt.text for s in shots)
    assert built[0].shot_lines != built[2].shot_lines


def test_ties_are_broken_by_the_seed() -> None:
    unrelated = [{"line": 40, "input": "Zebra quantum xylophone.", "target": "?"}]
    picks = {
        tuple(s["line"] for s in similar_shots(TRAIN, unrelated, 2, seed=s)[0]) for s in range(8)
    }

    assert len(picks) > 1  # no word in common: the seed decides, and seeds differ
    assert similar_shots(TRAIN, unrelated, 2, seed=5) == similar_shots(TRAIN, unrelated, 2, seed=5)


def test_asking_for_more_distinct_shots_than_the_train_split_has_is_refused() -> None:
    with pytest.raises(ValueError, match="distinct inputs"):
        similar_shots(TRAIN, ROWS, 7, seed=0)
