"""Streamed generation: one prompt, text handed out piece by piece as it is generated.

Design note. This is a manual decode loop over the model's KV cache, not `generate` with
a `TextIteratorStreamer` in a thread: the loop runs in the caller's thread (no extra
thread per request), the first token is handed out the moment the prefill's logits are
sampled, and the token count is exact (every token the model produced, the end token
included, nothing padded). It applies the same logits processing as `model.generate`
with these settings (repetition penalty, then temperature, top-k, top-p), so greedy
output is token for token that of `workers.ml.generation.stream.generate`.

Text is decoded from all generated ids each step (a prefix of ids decodes to a prefix
of text, except a trailing half of a multi-byte character, which is held back). Stop
strings are honoured in the streamed text: text that could be the start of a stop
string is held back until the next tokens show whether it is one, so a stop string split
across tokens is never emitted, nor anything after it.

No Django here: the serving worker, the app pipeline, benches and tests call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from workers.ml.errors import GenerationError
from workers.ml.params import GenerationSettings

DeltaFn = Callable[[str], None]
StopFn = Callable[[], bool]


@dataclass(frozen=True)
class StreamResult:
    text: str  # what was emitted, in full: the concatenated deltas
    prompt_tokens: int
    completion_tokens: int  # tokens generated, the end token included
    finish_reason: Literal["stop", "length"]
    ttft_s: float  # seconds from the call to the first generated token (prefill + 1 step)
    seconds: float  # seconds of the whole call
    cancelled: bool = False  # `should_stop` ended it (finish_reason is then "stop")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, list | tuple):
        ids.update(int(v) for v in value)
    if not ids and getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could begin a stop string (or are half
    a character), and so must wait for the next tokens."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    if text.endswith("\ufffd"):
        hold = max(hold, 1)
    return hold


def first_stop(text: str, stops: list[str], start: int = 0) -> int:
    """Index of the earliest stop string in `text` at or after `start`, or -1."""
    found = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(found) if found else -1


def _next_token(logits: Any, seen: Any, settings: GenerationSettings, generator: Any) -> int:
    """Pick the next token from the last position's logits, as `generate` would."""
    import torch

    scores = logits.float()
    if settings.repetition_penalty != 1.0:
        picked = scores.gather(0, seen)
        picked = torch.where(
            picked < 0,
            picked * settings.repetition_penalty,
            picked / settings.repetition_penalty,
        )
        scores = scores.scatter(0, seen, picked)
    if settings.decoding == "greedy":
        return int(torch.argmax(scores))
    scores = scores / settings.temperature
    if settings.top_k and settings.top_k < scores.shape[-1]:
        kth = torch.topk(scores, settings.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if settings.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - settings.top_p)
        remove[-1] = False  # keep at least the most likely token
        scores = scores.masked_fill(remove.scatter(0, order, remove), float("-inf"))
    probs = scores.softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def stream_generate(
    loaded: Any,
    prompt_text: str,
    settings: GenerationSettings,
    on_delta: DeltaFn,
    should_stop: StopFn | None = None,
    stop: list[str] | None = None,
) -> StreamResult:
    """Generate from `prompt_text` (the final text: chat template already applied),
    calling `on_delta(text)` with each new piece of text as soon as it is safe to show.

    Ends at an end token or a stop string ("stop"), at `settings.max_new_tokens`
    ("length"), or when `should_stop()` (asked before every token) answers True.
    Sampling is reproducible: the same seed and settings give the same text.

    A model that decodes by itself (an ONNX variant run by onnxruntime,
    `workers.ml.export.onnx_runtime.OnnxLoaded`) streams through its own `stream`, with
    the same arguments and result.
    """
    own = getattr(loaded, "stream", None)
    if callable(own):
        result: StreamResult = own(
            prompt_text, settings, on_delta, should_stop=should_stop, stop=stop
        )
        return result
    import torch

    began = time.perf_counter()
    tokenizer, model = loaded.tokenizer, loaded.model
    stops = [s for s in (stop or []) if s]
    ids = tokenizer(prompt_text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    prompt_len = int(ids.shape[1])
    if prompt_len == 0:
        raise GenerationError("The prompt produced no tokens.")
    context = int(getattr(loaded, "context_length", 0) or 0)
    if context and prompt_len + settings.max_new_tokens > context:
        raise GenerationError(
            f"The prompt is {prompt_len} tokens; with {settings.max_new_tokens} new tokens it "
            f"exceeds the model's context window of {context} tokens."
        )
    device = getattr(loaded, "device", "cpu")
    ids = ids.to(device)
    eos = _eos_ids(model, tokenizer)
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    seen = ids[0].to("cpu")
    generated: list[int] = []
    emitted = ""
    finish: Literal["stop", "length"] = "length"
    cancelled = hit_stop = False
    ttft = 0.0
    past: Any = None
    step_input = ids

    def emit(upto: str) -> None:
        nonlocal emitted
        if len(upto) > len(emitted):
            piece = upto[len(emitted) :]
            emitted = upto
            on_delta(piece)

    with torch.inference_mode():
        while len(generated) < settings.max_new_tokens:
            if should_stop is not None and should_stop():
                finish, cancelled = "stop", True
                break
            out = model(input_ids=step_input, cache=past, use_cache=True)
            past = out.cache
            token = _next_token(out.logits[0, -1].to("cpu"), seen, settings, generator)
            if not generated:
                ttft = time.perf_counter() - began
            generated.append(token)
            seen = torch.cat([seen, torch.tensor([token])])
            if token in eos:
                finish = "stop"
                break
            text = str(tokenizer.decode(generated, skip_special_tokens=True))
            if stops:
                at = first_stop(text, stops, max(0, len(emitted) - max(map(len, stops))))
                if at >= 0:
                    emit(text[:at])
                    finish, hit_stop = "stop", True
                    break
            emit(text[: len(text) - held_back(text, stops)])
            step_input = torch.tensor([[token]], device=device)
    if not hit_stop:
        # Nothing more is coming: text held back as the possible start of a stop string
        # is plain text after all (a trailing half character stays out).
        emit(str(tokenizer.decode(generated, skip_special_tokens=True)).rstrip("\ufffd"))
    return StreamResult(
        text=emitted,
        prompt_tokens=prompt_len,
        completion_tokens=len(generated),
        finish_reason=finish,
        ttft_s=round(ttft, 4),
        seconds=round(time.perf_counter() - began, 4),
        cancelled=cancelled,
    )
