"""Prompt templates in the ML core: rendering, placeholder checks, shots, the context-window
check (ask / skip / truncate) and chat templates. No Django database, no torch for the kit.

Token counts the tests expect are measured with the `tokenizers` package directly, not
through the prompt kit, so a kit that counts wrongly fails them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from workers.ml.prompts import (
    DEFAULT_TEMPLATE,
    KitUnavailable,
    PromptKit,
    TemplateSpec,
    build_prompts,
    load_kit,
    render_shots,
    render_user_text,
    select_shots,
    template_problems,
)

SPEC = TemplateSpec(
    instruction="Summarize the dialogue.",
    example_format="In: {input}\nOut: {target}",
    body="{instruction}\n\n{examples}In: {input}\nOut:",
    use_chat_template=False,
)
SHOTS = [
    {"line": 3, "input": "Printer jammed on floor 3.", "target": "Printer jammed."},
    {"line": 8, "input": "Invoice charged twice.", "target": "Double charge."},
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
WORDS = "the quick brown fox jumps over the lazy dog while the cat sleeps "


def rows(*inputs: str) -> list[dict[str, Any]]:
    return [
        {"line": 100 + i, "input": text, "target": f"reference {i}"}
        for i, text in enumerate(inputs)
    ]


def count(folder: Path, text: str) -> int:
    """Tokens of `text`, measured without the prompt kit."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def with_chat_template(source: Path, target: Path, template: Any = CHAT_TEMPLATE) -> Path:
    """A copy of the tiny model's tokenizer files whose config carries a chat template."""
    target.mkdir()
    shutil.copy(source / "tokenizer.json", target / "tokenizer.json")
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = template
    (target / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def kit(tiny_folder: Path) -> PromptKit:
    return load_kit(tiny_folder, 4096)


@pytest.fixture(scope="module")
def chat_folder(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_chat_template(tiny_folder, tmp_path_factory.mktemp("chat") / "tokenizer")


# --- Rendering ----------------------------------------------------------------------------


def test_it_renders_the_instruction_the_shots_and_the_input_into_the_body() -> None:
    text = render_user_text(SPEC, SHOTS, "The app logs me out.")

    assert text == (
        "Summarize the dialogue.\n\n"
        "In: Printer jammed on floor 3.\nOut: Printer jammed.\n\n"
        "In: Invoice charged twice.\nOut: Double charge.\n\n"
        "In: The app logs me out.\nOut:"
    )


def test_zero_shot_leaves_no_trace_of_the_examples() -> None:
    text = render_user_text(SPEC, [], "The app logs me out.")

    assert text == "Summarize the dialogue.\n\nIn: The app logs me out.\nOut:"


def test_shots_are_separated_by_a_blank_line_and_followed_by_one() -> None:
    assert render_shots(SPEC, SHOTS) == (
        "In: Printer jammed on floor 3.\nOut: Printer jammed.\n\n"
        "In: Invoice charged twice.\nOut: Double charge.\n\n"
    )
    assert render_shots(SPEC, SHOTS[:1]).endswith("Out: Printer jammed.\n\n")
    assert render_shots(SPEC, []) == ""


def test_braces_and_placeholders_in_data_are_kept_literally() -> None:
    spec = TemplateSpec(
        instruction="Answer {input} with {target} and {examples}; {0} {{x}} {",
        example_format=SPEC.example_format,
        body=SPEC.body,
    )
    shots = [{"input": "dict {'a': 1} and {target}", "target": "{input} {instruction}"}]
    row_input = 'print(f"{x}") {instruction} {examples} {}'

    text = render_user_text(spec, shots, row_input)

    assert text == (
        "Answer {input} with {target} and {examples}; {0} {{x}} {\n\n"
        "In: dict {'a': 1} and {target}\nOut: {input} {instruction}\n\n"
        'In: print(f"{x}") {instruction} {examples} {}\nOut:'
    )


def test_the_default_template_has_no_problems() -> None:
    assert template_problems(DEFAULT_TEMPLATE) == {}
    assert template_problems(SPEC) == {}


def test_an_unknown_placeholder_in_the_body_is_named() -> None:
    spec = TemplateSpec("Do it.", SPEC.example_format, "{instruction} {dialogue} {input}")

    problems = template_problems(spec)

    assert list(problems) == ["body"]
    assert problems["body"] == [
        "Unknown placeholder {dialogue}: use {instruction}, {examples}, {input}."
    ]


def test_a_body_without_input_is_refused() -> None:
    spec = TemplateSpec("Do it.", SPEC.example_format, "{instruction}\n\n{examples}")

    assert template_problems(spec) == {"body": ["Put {input} where the row's input goes."]}


def test_the_example_format_needs_input_and_target_and_nothing_else() -> None:
    spec = TemplateSpec("Do it.", "Q: {input}\nA: {answer}", SPEC.body)

    problems = template_problems(spec)

    assert list(problems) == ["example_format"]
    assert "Unknown placeholder {answer}: use {input}, {target}." in problems["example_format"]
    assert "Put {target} where the row's target goes." in problems["example_format"]


def test_a_zero_shot_only_template_needs_no_example_format() -> None:
    spec = TemplateSpec("Do it.", "", "{instruction}\n{input}")

    assert template_problems(spec) == {}
    # ...but one that places {examples} does.
    problems = template_problems(TemplateSpec("Do it.", "", "{examples}{input}"))
    assert list(problems) == ["example_format"]


# --- Shots --------------------------------------------------------------------------------

TRAIN = [{"line": n, "input": f"in {n}", "target": f"out {n}"} for n in range(2, 42)]


def test_first_mode_takes_the_first_rows_in_order() -> None:
    assert select_shots(TRAIN, 3) == TRAIN[:3]
    assert select_shots(TRAIN, 0) == []


def test_random_mode_follows_its_seed() -> None:
    picked = select_shots(TRAIN, 4, mode="random", seed=11)

    assert picked == select_shots(TRAIN, 4, mode="random", seed=11)
    assert picked != select_shots(TRAIN, 4, mode="random", seed=12)
    assert picked != TRAIN[:4]
    assert len({r["line"] for r in picked}) == 4
    assert all(r in TRAIN for r in picked)


def test_manual_mode_picks_rows_by_line_in_the_order_given() -> None:
    picked = select_shots(TRAIN, 3, mode="manual", lines=[17, 4, 30])

    assert [r["line"] for r in picked] == [17, 4, 30]
    assert picked[0] == {"line": 17, "input": "in 17", "target": "out 17"}


def test_manual_mode_names_lines_that_are_not_in_the_train_split() -> None:
    with pytest.raises(ValueError, match=r"^Line 1, 99 is not in the train split"):
        select_shots(TRAIN, 3, mode="manual", lines=[1, 5, 99])


@pytest.mark.parametrize("mode", ["first", "random"])
def test_asking_for_more_shots_than_train_rows_is_an_error(mode: Any) -> None:
    with pytest.raises(ValueError, match="5 examples were asked for but the train split has 4"):
        select_shots(TRAIN[:4], 5, mode=mode)


# --- Counting and cutting -----------------------------------------------------------------


def test_the_kit_counts_tokens_like_the_tokenizer(kit: PromptKit, tiny_folder: Path) -> None:
    texts = ["Summarize the dialogue.", WORDS * 3, "Ünïcödé ✓ {braces}"]

    assert [kit.count(t) for t in texts] == [count(tiny_folder, t) for t in texts]
    assert kit.count_many(texts) == [count(tiny_folder, t) for t in texts]


def test_keep_tokens_returns_a_prefix_of_at_most_n_tokens(
    kit: PromptKit, tiny_folder: Path
) -> None:
    text = WORDS * 2
    total = count(tiny_folder, text)

    for n in (1, 5, 17, total - 1):
        kept = kit.keep_tokens(text, n)
        assert text.startswith(kept)
        assert 0 < count(tiny_folder, kept) <= n
    assert kit.keep_tokens(text, total) == text
    assert kit.keep_tokens(text, total + 10) == text
    assert kit.keep_tokens(text, 0) == ""


def test_a_folder_without_tokenizer_json_cannot_make_a_kit(tmp_path: Path) -> None:
    with pytest.raises(KitUnavailable, match=r"has no tokenizer\.json"):
        load_kit(tmp_path, 4096)


# --- Fitting the context window -----------------------------------------------------------

SHORT = "Printer jammed."
LONG = (WORDS + "Ünïcödé ✓ ") * 6  # far over the small budgets; multi-byte characters too


@pytest.fixture(scope="module")
def small_kit(tiny_folder: Path) -> PromptKit:
    return load_kit(tiny_folder, 80)


def test_prompts_that_fit_are_left_alone(kit: PromptKit, tiny_folder: Path) -> None:
    built, report = build_prompts(kit, SPEC, rows(SHORT, LONG), SHOTS, max_new_tokens=16)

    assert not report.any
    assert report.budget == 4096 - 16
    for prompt, row in zip(built, rows(SHORT, LONG), strict=True):
        expected = render_user_text(SPEC, SHOTS, row["input"])
        assert prompt.text == expected
        assert prompt.tokens == count(tiny_folder, expected)
        assert (prompt.line, prompt.input, prompt.reference) == (
            row["line"],
            row["input"],
            row["target"],
        )
        assert (prompt.over_by, prompt.truncated, prompt.skipped) == (0, False, "")
    assert [p.index for p in built] == [0, 1]


def test_ask_counts_the_rows_over_the_budget_and_changes_nothing(
    small_kit: PromptKit, tiny_folder: Path
) -> None:
    inputs = (SHORT, LONG, WORDS * 3, SHORT)
    full = [count(tiny_folder, render_user_text(SPEC, SHOTS[:1], t)) for t in inputs]
    budget = 80 - 8
    assert full[0] <= budget < min(full[1], full[2])  # the test's own premise

    built, report = build_prompts(small_kit, SPEC, rows(*inputs), SHOTS[:1], max_new_tokens=8)

    assert report.budget == budget
    assert report.rows_over == 2
    assert report.lines_over == [101, 102]
    assert report.max_over_by == max(full) - budget
    assert [p.over_by for p in built] == [0, full[1] - budget, full[2] - budget, 0]
    assert [p.tokens for p in built] == full
    assert all(p.text and not p.skipped and not p.truncated for p in built)
    assert report.describe(4) == (
        f"2 of 4 prompts exceed the model's budget of {budget} tokens (context window "
        f"minus max new tokens) by up to {max(full) - budget} tokens."
    )


def test_skip_leaves_the_rows_over_the_budget_out(small_kit: PromptKit) -> None:
    built, report = build_prompts(
        small_kit, SPEC, rows(SHORT, LONG), SHOTS[:1], max_new_tokens=8, overflow="skip"
    )

    assert report.rows_over == 1
    assert built[0].text == render_user_text(SPEC, SHOTS[:1], SHORT)
    assert built[0].skipped == ""
    assert built[1].text == ""
    assert built[1].skipped == f"Skipped: {built[1].over_by} tokens over the budget."
    assert built[1].over_by > 0


def test_truncate_cuts_only_the_input_until_the_prompt_fits(
    small_kit: PromptKit, tiny_folder: Path
) -> None:
    built, report = build_prompts(
        small_kit, SPEC, rows(SHORT, LONG), SHOTS[:1], max_new_tokens=8, overflow="truncate"
    )

    budget = 80 - 8
    assert report.rows_over == 1
    assert report.max_over_by == built[1].over_by > 0  # measured before the cut
    assert built[0].text == render_user_text(SPEC, SHOTS[:1], SHORT)
    assert not built[0].truncated
    cut = built[1]
    assert cut.truncated
    assert cut.skipped == ""
    assert cut.tokens == count(tiny_folder, cut.text) <= budget
    prefix = render_user_text(SPEC, SHOTS[:1], "").removesuffix("In: \nOut:")
    assert cut.text.startswith(prefix + "In: ")  # instruction and shot intact
    assert cut.text.endswith("\nOut:")
    kept = cut.text.removeprefix(prefix + "In: ").removesuffix("\nOut:")
    assert kept
    assert LONG.startswith(kept)
    assert len(kept) < len(LONG)
    assert cut.input == LONG  # the row keeps its whole input for the record


def test_truncate_skips_a_row_when_instruction_and_shots_alone_overflow(
    tiny_folder: Path,
) -> None:
    kit = load_kit(tiny_folder, 40)
    spec = TemplateSpec(WORDS * 4, SPEC.example_format, SPEC.body, use_chat_template=False)

    built, report = build_prompts(
        kit, spec, rows("Printer jammed again."), SHOTS, max_new_tokens=8, overflow="truncate"
    )

    assert report.rows_over == 1
    assert built[0].text == ""
    assert not built[0].truncated
    assert built[0].skipped.startswith("Skipped: the instruction and examples alone fill")


def test_a_model_without_a_known_context_window_never_overflows(tiny_folder: Path) -> None:
    kit = load_kit(tiny_folder, 0)

    built, report = build_prompts(kit, SPEC, rows(LONG * 40), SHOTS, max_new_tokens=64)

    assert not report.any
    assert built[0].text == render_user_text(SPEC, SHOTS, LONG * 40)


def test_a_row_without_a_line_number_is_numbered_by_its_position(kit: PromptKit) -> None:
    built, _ = build_prompts(
        kit, SPEC, [{"input": "a"}, {"input": "b", "target": "B"}], [], max_new_tokens=4
    )

    assert [(p.line, p.reference) for p in built] == [(0, ""), (1, "B")]


# --- Chat templates -----------------------------------------------------------------------


def test_the_chat_template_renders_as_transformers_renders_it(chat_folder: Path) -> None:
    from transformers import AutoTokenizer

    kit = load_kit(chat_folder, 4096)
    tokenizer = AutoTokenizer.from_pretrained(str(chat_folder))
    user_text = render_user_text(SPEC, SHOTS, "Ünïcode {input} </s> input")

    rendered = kit.apply_chat(user_text, use_chat_template=True)

    assert kit.has_chat_template
    assert rendered == tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == f"<|user|>\n{user_text}<|endoftext|>\n<|assistant|>\n"


def test_build_prompts_wraps_in_the_chat_template_only_when_asked(
    chat_folder: Path, tiny_folder: Path
) -> None:
    kit = load_kit(chat_folder, 4096)
    chat_spec = TemplateSpec(SPEC.instruction, SPEC.example_format, SPEC.body, True, "inline")
    plain = render_user_text(SPEC, SHOTS[:1], SHORT)

    (wrapped,), _ = build_prompts(kit, chat_spec, rows(SHORT), SHOTS[:1], max_new_tokens=8)
    (unwrapped,), _ = build_prompts(kit, SPEC, rows(SHORT), SHOTS[:1], max_new_tokens=8)
    # The tiny model itself has no chat template: the text goes in as it is.
    (as_is,), _ = build_prompts(
        load_kit(tiny_folder, 4096), chat_spec, rows(SHORT), SHOTS[:1], max_new_tokens=8
    )

    assert wrapped.text == f"<|user|>\n{plain}<|endoftext|>\n<|assistant|>\n"
    assert wrapped.tokens == count(chat_folder, wrapped.text)
    assert unwrapped.text == plain
    assert as_is.text == plain


def test_truncating_a_chat_prompt_keeps_the_template_and_fits(chat_folder: Path) -> None:
    kit = load_kit(chat_folder, 96)
    chat_spec = TemplateSpec(SPEC.instruction, SPEC.example_format, SPEC.body, True, "inline")

    (cut,), report = build_prompts(
        kit, chat_spec, rows(LONG), SHOTS[:1], max_new_tokens=16, overflow="truncate"
    )

    assert report.rows_over == 1
    assert cut.truncated
    assert cut.tokens == count(chat_folder, cut.text) <= 96 - 16
    assert cut.text.startswith("<|user|>\nSummarize the dialogue.\n\nIn: Printer jammed")
    assert cut.text.endswith("\nOut:<|endoftext|>\n<|assistant|>\n")


def test_a_chat_template_file_wins_over_the_config(tmp_path: Path, tiny_folder: Path) -> None:
    folder = with_chat_template(tiny_folder, tmp_path / "tok")
    (folder / "chat_template.jinja").write_text(
        "[{{ messages[0]['content'] }}]{% if add_generation_prompt %}>>{% endif %}",
        encoding="utf-8",
    )

    assert load_kit(folder, 4096).apply_chat("hi", use_chat_template=True) == "[hi]>>"


def test_named_chat_templates_use_the_default_one(tmp_path: Path, tiny_folder: Path) -> None:
    folder = with_chat_template(
        tiny_folder,
        tmp_path / "tok",
        [
            {"name": "tool_use", "template": "TOOLS {{ messages[0]['content'] }}"},
            {"name": "default", "template": "DEFAULT {{ messages[0]['content'] }}"},
        ],
    )

    assert load_kit(folder, 4096).apply_chat("hi", use_chat_template=True) == "DEFAULT hi"
