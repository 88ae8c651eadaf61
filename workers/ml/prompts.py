"""Prompt templates: render the exact text a model sees, pick shots, fit the context window.

One module renders prompts for the web preview, for prompt trials and (later) for training,
so every place sees the same text. It imports neither Django nor torch: the web process
uses it with the model's `tokenizer.json` (read by the `tokenizers` package) and its chat
template (rendered with transformers' own jinja renderer, which does not import torch).

A template has three parts:
- `instruction`: what to do ("Summarize the dialogue in one sentence.").
- `example_format`: how one worked example (a "shot") is written, with `{input}` and
  `{target}` placeholders.
- `body`: the whole prompt, with `{instruction}`, `{examples}` and `{input}` placeholders.
  `{examples}` becomes the shots written with `example_format`, separated by a blank line
  and followed by one (nothing at all for zero-shot).

Placeholders are replaced literally (no `str.format`), so braces in data are safe.

Shots are written one of two ways (`TemplateSpec.shot_style`):
- "chat" (the default where the model has a chat template): each shot is an earlier
  exchange, a user turn (the body filled with the shot's input and no examples) followed by
  an assistant turn (the shot's target); the real row is the last user turn. Chat models are
  trained on conversations, so a finished exchange reads as an example to follow.
- "inline": the shots are written with `example_format` into `{examples}` inside the one
  user message (what a plain model without a chat template needs).

`build_messages` + `PromptKit.render` are the one builder: the trial preview, the
context-window check, truncation, evaluation candidates, fine-tuning data and the serving
worker all turn messages into text through them.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

BODY_FIELDS = ("instruction", "examples", "input")
EXAMPLE_FIELDS = ("input", "target")
SHOT_SEPARATOR = "\n\n"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

ShotMode = Literal["first", "random", "manual", "similar"]
ShotStyle = Literal["chat", "inline"]
Overflow = Literal["ask", "truncate", "skip"]


@dataclass(frozen=True)
class TemplateSpec:
    instruction: str
    example_format: str
    body: str
    use_chat_template: bool = True
    shot_style: ShotStyle = "chat"


DEFAULT_TEMPLATE = TemplateSpec(
    instruction="Summarize the following dialogue in one or two sentences.",
    example_format="Dialogue:\n{input}\nSummary: {target}",
    body="{instruction}\n\n{examples}Dialogue:\n{input}\nSummary:",
)


def template_problems(spec: TemplateSpec) -> dict[str, list[str]]:
    """Field -> readable problems; empty when the template can be used."""
    problems: dict[str, list[str]] = {}

    def check(name: str, text: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
        found = _PLACEHOLDER.findall(text)
        unknown = sorted({p for p in found if p not in allowed})
        out = [
            f"Unknown placeholder {{{p}}}: use {', '.join('{' + a + '}' for a in allowed)}."
            for p in unknown
        ]
        out += [f"Put {{{r}}} where the row's {r} goes." for r in required if r not in found]
        if out:
            problems[name] = out

    check("body", spec.body, BODY_FIELDS, ("input",))
    if "{examples}" in spec.body or spec.example_format.strip():
        check("example_format", spec.example_format, EXAMPLE_FIELDS, EXAMPLE_FIELDS)
    return problems


def _fill(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def render_shots(spec: TemplateSpec, shots: Sequence[dict[str, Any]]) -> str:
    if not shots:
        return ""
    written = [
        _fill(spec.example_format, {"input": str(s["input"]), "target": str(s["target"])})
        for s in shots
    ]
    return SHOT_SEPARATOR.join(written) + SHOT_SEPARATOR


def render_user_text(spec: TemplateSpec, shots: Sequence[dict[str, Any]], row_input: str) -> str:
    """The template filled in for one row, before any chat template."""
    return _fill(
        spec.body,
        {
            "instruction": spec.instruction,
            "examples": render_shots(spec, shots),
            "input": row_input,
        },
    )


Message = dict[str, str]


def build_messages(
    spec: TemplateSpec, shots: Sequence[dict[str, Any]], row_input: str, *, chat: bool
) -> list[Message]:
    """The conversation one row sends. With `chat` (the template asks for chat-turn shots
    and the model has a chat template) each shot is a user turn and an assistant turn;
    otherwise the shots are written inline and there is one user message."""
    if chat and spec.shot_style == "chat" and spec.use_chat_template:
        messages: list[Message] = []
        for shot in shots:
            messages.append(
                {"role": "user", "content": render_user_text(spec, [], str(shot["input"]))}
            )
            messages.append({"role": "assistant", "content": str(shot["target"])})
        messages.append({"role": "user", "content": render_user_text(spec, [], row_input)})
        return messages
    return [{"role": "user", "content": render_user_text(spec, shots, row_input)}]


def render_conversation(
    messages: Sequence[Message], chat_template: str | None, special_tokens: dict[str, str]
) -> str:
    """The text a model sees for `messages`: its chat template with the generation prompt,
    or (no chat template) the messages' contents one per line."""
    if not chat_template:
        return "\n".join(m["content"] for m in messages)
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered: Any = render_jinja_template(
        conversations=[list(messages)],
        chat_template=chat_template,
        add_generation_prompt=True,
        **dict[str, Any](special_tokens),
    )
    return str(rendered[0][0])


# --- Shots ------------------------------------------------------------------------------


def select_shots(
    train_rows: Sequence[dict[str, Any]],
    k: int,
    *,
    mode: ShotMode = "first",
    seed: int = 0,
    lines: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Pick `k` examples from the train split: the first k, k at random (seeded), or the
    rows whose dataset line numbers are in `lines`, in that order."""
    if k <= 0 and mode != "manual":
        return []
    if mode == "similar":
        raise ValueError("Similarity picks shots per row: use shots_per_row.")
    if mode == "manual":
        by_line = {int(r["line"]): r for r in train_rows}
        missing = [n for n in lines if int(n) not in by_line]
        if missing:
            raise ValueError(
                f"Line {', '.join(map(str, missing))} is not in the train split; pick rows "
                "from the train split."
            )
        return [by_line[int(n)] for n in lines]
    if k > len(train_rows):
        raise ValueError(
            f"{k} examples were asked for but the train split has {len(train_rows)} rows."
        )
    if mode == "random":
        return random.Random(seed).sample(list(train_rows), k)
    return list(train_rows[:k])


def shots_per_row(
    train_rows: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    k: int,
    *,
    mode: ShotMode = "first",
    seed: int = 0,
    lines: Sequence[int] = (),
) -> list[list[dict[str, Any]]]:
    """The shots of each row: the same ones for every row, or (mode "similar") the k train
    rows most like each row's input (`workers.ml.shots`)."""
    if mode == "similar":
        from workers.ml.shots import similar_shots

        return similar_shots(train_rows, rows, k, seed=seed)
    same = select_shots(train_rows, k, mode=mode, seed=seed, lines=lines)
    return [same for _ in rows]


# --- Tokenizer and chat template without torch ------------------------------------------


@dataclass
class PromptKit:
    """What the preview and the trial runner need from a model: its tokenizer (counting
    and truncating) and its chat template (rendering)."""

    tokenizer: Any  # tokenizers.Tokenizer
    chat_template: str | None
    special_tokens: dict[str, str]
    context_length: int

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    def keep_tokens(self, text: str, n: int) -> str:
        """`text` cut to its first `n` tokens (on a character boundary)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        if n <= 0:
            return ""
        if len(encoding.ids) <= n:
            return text
        end = encoding.offsets[n - 1][1]
        return text[:end]

    def apply_chat(self, user_text: str, use_chat_template: bool) -> str:
        """One user message in the chat template (as it is when there is none)."""
        if not (use_chat_template and self.chat_template):
            return user_text
        return self.render([{"role": "user", "content": user_text}])

    def render(self, messages: Sequence[Message]) -> str:
        return render_conversation(messages, self.chat_template, self.special_tokens)

    def prompt(
        self, spec: TemplateSpec, shots: Sequence[dict[str, Any]], row_input: str
    ) -> tuple[str, list[Message]]:
        """The exact text the model sees for one row, and the messages it came from."""
        messages = build_messages(spec, shots, row_input, chat=self.chat_shots(spec))
        if spec.use_chat_template and self.chat_template:
            return self.render(messages), messages
        return messages[0]["content"], messages

    def chat_shots(self, spec: TemplateSpec) -> bool:
        """Whether shots go in as chat turns for this template on this model."""
        return spec.shot_style == "chat" and spec.use_chat_template and self.has_chat_template


def _special_tokens(config: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[name] = value
    return out


@lru_cache(maxsize=8)
def _load_kit(folder: str, mtime: float, context_length: int) -> PromptKit:
    from tokenizers import Tokenizer

    path = Path(folder)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    config: dict[str, Any] = {}
    if (path / "tokenizer_config.json").is_file():
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = config.get("chat_template")
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return PromptKit(tokenizer, template or None, _special_tokens(config), context_length)


class KitUnavailable(Exception):
    pass


def load_kit(folder: Path, context_length: int) -> PromptKit:
    """The prompt kit of a model folder (cached; reloaded when its tokenizer changes)."""
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise KitUnavailable(
            f"{folder} has no tokenizer.json (a fast tokenizer is needed to preview prompts)."
        )
    return _load_kit(str(folder), tokenizer_file.stat().st_mtime, context_length)


# --- Building a trial's prompts ---------------------------------------------------------


@dataclass
class BuiltPrompt:
    index: int
    line: int
    input: str
    reference: str
    text: str = ""  # what the model sees ("" when skipped)
    user_text: str = ""  # the last user message (the row's), before the chat template
    tokens: int = 0
    over_by: int = 0  # tokens over the budget before truncation/skipping
    truncated: bool = False
    skipped: str = ""  # reason, when the row is not run
    messages: list[Message] = field(default_factory=list)
    shot_lines: list[int] = field(default_factory=list)  # train lines of this row's shots
    chat_shots: bool = False  # shots as earlier chat turns (else inline, or none)


@dataclass
class OverflowReport:
    budget: int  # context window minus max new tokens
    rows_over: int = 0
    max_over_by: int = 0
    lines_over: list[int] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return self.rows_over > 0

    def describe(self, n_rows: int) -> str:
        return (
            f"{self.rows_over} of {n_rows} prompts exceed the model's budget of "
            f"{self.budget} tokens (context window minus max new tokens) by up to "
            f"{self.max_over_by} tokens."
        )


def build_prompts(
    kit: PromptKit,
    spec: TemplateSpec,
    rows: Sequence[dict[str, Any]],
    shots: Sequence[dict[str, Any]] = (),
    *,
    max_new_tokens: int,
    overflow: Overflow = "ask",
    row_shots: Sequence[Sequence[dict[str, Any]]] | None = None,
) -> tuple[list[BuiltPrompt], OverflowReport]:
    """Render every row; measure it against the context window; truncate or skip rows
    that do not fit as `overflow` says ("ask" leaves them as they are, for the caller to
    report before anything runs). `shots` are the same for every row; `row_shots` (shots
    chosen per row, e.g. by similarity) replace them when given."""
    budget = kit.context_length - max_new_tokens if kit.context_length else 10**9
    report = OverflowReport(budget=budget)
    built: list[BuiltPrompt] = []
    per_row = list(row_shots) if row_shots is not None else [shots] * len(rows)
    chat = kit.chat_shots(spec)
    rendered = [kit.prompt(spec, s, str(r["input"])) for r, s in zip(rows, per_row, strict=True)]
    counts = kit.count_many([text for text, _ in rendered]) if rendered else []
    for i, (row, row_shot, (text, messages), tokens) in enumerate(
        zip(rows, per_row, rendered, counts, strict=True)
    ):
        prompt = BuiltPrompt(
            index=i,
            line=int(row.get("line", i)),
            input=str(row["input"]),
            reference=str(row.get("target", "")),
            text=text,
            user_text=messages[-1]["content"],
            tokens=tokens,
            messages=messages,
            shot_lines=[int(s["line"]) for s in row_shot if "line" in s],
            chat_shots=chat and bool(row_shot),
        )
        over = tokens - budget
        if over > 0:
            prompt.over_by = over
            report.rows_over += 1
            report.max_over_by = max(report.max_over_by, over)
            report.lines_over.append(prompt.line)
            if overflow == "skip":
                prompt.text, prompt.skipped = "", f"Skipped: {over} tokens over the budget."
            elif overflow == "truncate":
                _truncate(kit, spec, row_shot, prompt, budget)
        built.append(prompt)
    return built, report


def _truncate(
    kit: PromptKit,
    spec: TemplateSpec,
    shots: Sequence[dict[str, Any]],
    prompt: BuiltPrompt,
    budget: int,
) -> None:
    """Cut the row's input (never the instruction or the shots) until the prompt fits."""
    keep = kit.count(prompt.input) - prompt.over_by
    while keep > 0:
        text, messages = kit.prompt(spec, shots, kit.keep_tokens(prompt.input, keep))
        tokens = kit.count(text)
        if tokens <= budget:
            prompt.text, prompt.tokens, prompt.truncated = text, tokens, True
            prompt.user_text, prompt.messages = messages[-1]["content"], messages
            return
        keep -= max(1, tokens - budget)
    prompt.text = ""
    prompt.skipped = (
        "Skipped: the instruction and examples alone fill the context window; "
        "use fewer shots or a shorter template."
    )
