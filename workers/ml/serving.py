"""The serving worker's ML side: keep deployed models loaded, answer chat requests.

A dedicated worker (queue "serve") calls `complete` for each API request. Models stay
loaded between requests (at most MAX_WARM of them, least recently used first out), so a
request costs its generation only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from workers.ml import loading
from workers.ml.errors import UserFacingError
from workers.ml.generation.stream import generate_batch
from workers.ml.params import GenerationSettings, ServeRequest
from workers.ml.prompts import render_conversation

MAX_WARM = 2
_lock = threading.Lock()
_warm: OrderedDict[str, loading.LoadedModel] = OrderedDict()


class PromptTooLong(UserFacingError):
    pass


def warm_model(path: str, models_dir: Path) -> loading.LoadedModel:
    """The model at `path`, loaded once and kept for the next requests."""
    with _lock:
        if path in _warm:
            _warm.move_to_end(path)
            return _warm[path]
        loaded = loading.load(loading.ModelSpec("local", path), models_dir, keep_warm=False)
        _warm[path] = loaded
        while len(_warm) > MAX_WARM:
            _warm.popitem(last=False)
        return loaded


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The request's messages as text, through the same renderer as trials and training
    (`workers.ml.prompts.render_conversation`), so a deployed model is asked the way its
    prompts were measured."""
    special = {
        name: value
        for name in ("bos_token", "eos_token", "unk_token", "pad_token")
        if isinstance(value := getattr(tokenizer, name, None), str)
    }
    return render_conversation(messages, getattr(tokenizer, "chat_template", None), special)


def complete(loaded: loading.LoadedModel, request: ServeRequest) -> dict[str, Any]:
    """One chat completion: text, token counts, finish reason, seconds."""
    text = prompt_text(loaded.tokenizer, request.messages)
    prompt_tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    if loaded.context_length and prompt_tokens + request.max_tokens > loaded.context_length:
        raise PromptTooLong(
            f"The prompt is {prompt_tokens} tokens; with max_tokens {request.max_tokens} it "
            f"exceeds the model's context window of {loaded.context_length} tokens."
        )
    settings = GenerationSettings(
        max_new_tokens=request.max_tokens,
        decoding="sampling" if request.temperature > 0 else "greedy",
        temperature=request.temperature or 0.7,
        seed=request.seed,
    )
    began = time.perf_counter()
    out = generate_batch(loaded, [text], settings)
    assert out is not None  # no cancel callback: never cancelled
    return {
        "text": out[0].text,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": out[0].output_tokens,
        "finish_reason": "length" if out[0].finish_reason == "length" else "stop",
        "seconds": round(time.perf_counter() - began, 4),
    }
