"""The serving worker's ML side: keep deployed models loaded, answer chat requests.

A dedicated worker (queue "serve") calls `stream_chat` (streamed, the OpenAI-compatible
endpoint) or `complete` (one reply, the older generate API) for each request. Models stay
loaded between requests (at most MAX_WARM of them, least recently used first out), so a
request costs its generation only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from workers.ml import loading
from workers.ml.errors import UserFacingError
from workers.ml.export.onnx_runtime import is_onnx_variant, load_onnx
from workers.ml.generation.stream import generate_batch
from workers.ml.generation.streaming import StreamResult, stream_generate
from workers.ml.params import GenerationSettings, ServeRequest, TemplateSnapshot
from workers.ml.prompts import TemplateSpec, render_conversation, render_user_text

MAX_STOP_STRINGS = 4

MAX_WARM = 2
_lock = threading.Lock()
_warm: OrderedDict[str, Any] = OrderedDict()  # LoadedModel, or OnnxLoaded


class PromptTooLong(UserFacingError):
    pass


def warm_model(path: str, models_dir: Path) -> Any:
    """The model at `path`, loaded once and kept for the next requests."""
    with _lock:
        if path in _warm:
            _warm.move_to_end(path)
            return _warm[path]
        loaded: Any
        if is_onnx_variant(path):  # an ONNX variant: onnxruntime decodes it
            loaded = load_onnx(path)
        else:
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


def complete(loaded: Any, request: ServeRequest) -> dict[str, Any]:
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
    if callable(getattr(loaded, "stream", None)):  # an ONNX variant decodes by itself
        result = stream_generate(loaded, text, settings, lambda _piece: None)
        return {
            "text": result.text,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "finish_reason": result.finish_reason,
            "seconds": round(time.perf_counter() - began, 4),
        }
    out = generate_batch(loaded, [text], settings)
    assert out is not None  # no cancel callback: never cancelled
    return {
        "text": out[0].text,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": out[0].output_tokens,
        "finish_reason": "length" if out[0].finish_reason == "length" else "stop",
        "seconds": round(time.perf_counter() - began, 4),
    }


class ChatPayload(ServeRequest):
    """One streamed chat request as the web hands it to the serving worker.

    `template` is the prompt template the deployed model was trained or evaluated with:
    the last user message is put into it (as prompt trials and training did), so a client
    sends the user's text only. `app` (config + question) asks for an answer with the
    deployed application instead (retrieval, reasoning aid; workers/ml/application).
    """

    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP_STRINGS)
    template: TemplateSnapshot | None = None
    app: dict[str, Any] | None = None

    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.max_tokens,
            decoding="sampling" if self.temperature > 0 else "greedy",
            temperature=self.temperature or 0.7,
            top_p=self.top_p,
            top_k=0,  # the OpenAI API has no top-k
            seed=self.seed,
        )

    def question(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def chat_prompt(
    tokenizer: Any, messages: list[dict[str, str]], template: TemplateSnapshot | None
) -> str:
    """The text the model sees: the last user message put into `template` (zero-shot, as
    `PromptKit.prompt` builds it for trials and training), the conversation through the
    model's chat template. Without a template, the messages as they are."""
    if template is None:
        return prompt_text(tokenizer, messages)
    spec = TemplateSpec(
        instruction=template.instruction,
        example_format=template.example_format,
        body=template.body,
        use_chat_template=template.use_chat_template,
        shot_style=template.shot_style,
    )
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    filled = [dict(m) for m in messages]
    filled[last]["content"] = render_user_text(spec, [], messages[last]["content"])
    if spec.use_chat_template and getattr(tokenizer, "chat_template", None):
        return prompt_text(tokenizer, filled)
    if len(filled) == 1:
        return filled[0]["content"]  # exactly the trial's text
    return render_conversation(filled, None, {})


def stream_chat(
    loaded: loading.LoadedModel,
    payload: ChatPayload,
    emit: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool] | None = None,
) -> StreamResult:
    """A plain chat completion, streamed as the application pipeline streams: "delta"
    events, then one "done" event (no citations)."""
    text = chat_prompt(loaded.tokenizer, payload.messages, payload.template)
    result = stream_generate(
        loaded,
        text,
        payload.settings(),
        lambda piece: emit({"type": "delta", "text": piece}),
        should_stop=should_stop,
        stop=payload.stop,
    )
    emit(
        {
            "type": "done",
            "answer": result.text,
            "citations": [],
            "fallback": False,
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
            },
            "finish_reason": result.finish_reason,
            "ttft_s": result.ttft_s,
            "seconds": result.seconds,
        }
    )
    return result
