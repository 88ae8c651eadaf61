"""The prompt an application sends: its template with the retrieved context and the
question, inside the model's context window.

Budget: model context - max new tokens - everything that is not context (template,
instructions, question, chat markup). The context is cut to fit, chunk by chunk and then
inside the last chunk; the question never is. A question that alone does not fit is an
error the user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.ml.errors import UserFacingError
from workers.ml.prompts import render_conversation


class QuestionTooLong(UserFacingError):
    pass


@dataclass(frozen=True)
class Composed:
    text: str  # exactly what the model is given
    prompt_tokens: int
    chunks_used: int  # chunks (whole or cut) in the context
    context_truncated: bool


def _fill(template: str, context: str, question: str) -> str:
    # Literal replacement, so braces in documents or questions are safe.
    return template.replace("{context}", context).replace("{input}", question)


def block(number: int, chunk: Any, cite: bool) -> str:
    if cite:
        return f"[{number}] ({chunk.document_name}) {chunk.text.strip()}"
    return str(chunk.text).strip()


def render(tokenizer: Any, user_text: str) -> str:
    special = {
        name: value
        for name in ("bos_token", "eos_token", "unk_token", "pad_token")
        if isinstance(value := getattr(tokenizer, name, None), str)
    }
    return render_conversation(
        [{"role": "user", "content": user_text}],
        getattr(tokenizer, "chat_template", None),
        special,
    )


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _keep(tokenizer: Any, text: str, n: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max(n, 0)]
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def compose(
    tokenizer: Any,
    *,
    template: str,
    question: str,
    chunks: Sequence[Any],
    cite: bool,
    instructions: str,
    context_length: int,
    max_new_tokens: int,
) -> Composed:
    """The prompt text with as much of `chunks` (best first) as fits."""
    body = template if not instructions else f"{template.rstrip()}\n\n{instructions}"

    def text_for(context: str) -> str:
        return render(tokenizer, _fill(body, context, question))

    fixed = count(tokenizer, text_for(""))
    limit = context_length - max_new_tokens if context_length else None
    if limit is not None and fixed > limit:
        raise QuestionTooLong(
            f"The question and template alone are {fixed} tokens; with up to "
            f"{max_new_tokens} new tokens they exceed the model's context window of "
            f"{context_length} tokens. Ask a shorter question."
        )
    blocks = [block(i + 1, c, cite) for i, c in enumerate(chunks)]
    if limit is None:
        text = text_for("\n\n".join(blocks))
        return Composed(text, count(tokenizer, text), len(blocks), False)

    room = limit - fixed
    kept: list[str] = []
    truncated = False
    for b in blocks:
        need = count(tokenizer, b) + (2 if kept else 0)  # the blank line between blocks
        if need <= room:
            kept.append(b)
            room -= need
            continue
        truncated = True
        if room > 8:  # a few tokens of a passage help nobody
            kept.append(_keep(tokenizer, b, room - 2))
        break
    text = text_for("\n\n".join(kept))
    n = count(tokenizer, text)
    # Tokens of joined pieces can differ slightly from the sum of their counts: trim the
    # context (never the question) until the whole fits.
    while n > limit and kept:
        truncated = True
        context = "\n\n".join(kept)
        shorter = _keep(tokenizer, context, count(tokenizer, context) - (n - limit) - 2)
        kept = [shorter] if shorter.strip() else []
        text = text_for("\n\n".join(kept))
        n = count(tokenizer, text)
    return Composed(text, n, len(kept), truncated)
