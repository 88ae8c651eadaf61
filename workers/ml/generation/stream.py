"""Text generation with measured progress and step-level cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from workers.ml.errors import GenerationError
from workers.ml.loading import LoadedModel
from workers.ml.params import GenerateParams, GenerationSettings

# (tokens generated so far, tokens planned, text so far)
ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class GenerateResult:
    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str  # "eos" | "length" | "cancelled"
    seconds: float
    tokens_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_prompt(tokenizer: Any, prompt: str, use_chat_template: bool) -> str:
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                tokenize=False,
                add_generation_prompt=True,
            )
        )
    return prompt


def generation_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """`model.generate` keyword arguments for these settings (the same for every runner)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "repetition_penalty": settings.repetition_penalty,
    }
    if settings.decoding == "sampling":
        kwargs.update(
            do_sample=True,
            temperature=settings.temperature,
            top_k=settings.top_k or None,
            top_p=settings.top_p,
        )
    else:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    return kwargs


def pad_token_id(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id)


def generate(
    loaded: LoadedModel,
    params: GenerateParams,
    *,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    progress_interval_s: float = 0.25,
) -> GenerateResult:
    """Generate a completion for `params.prompt`.

    `should_cancel` is asked after every generated token; when it answers True the
    generation stops at that step and the text so far is returned with finish_reason
    "cancelled". `on_progress` is called at most every `progress_interval_s` seconds
    and once at the end, with measured token counts.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tokenizer, model = loaded.tokenizer, loaded.model
    text = build_prompt(tokenizer, params.prompt, params.use_chat_template)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(loaded.device)
    prompt_len = int(inputs["input_ids"].shape[1])
    if prompt_len == 0:
        raise GenerationError("The prompt produced no tokens.")
    if loaded.context_length and prompt_len + params.max_new_tokens > loaded.context_length:
        raise GenerationError(
            f"The prompt is {prompt_len} tokens and up to {params.max_new_tokens} new tokens "
            f"were asked for; together they exceed this model's context window of "
            f"{loaded.context_length} tokens. Shorten the prompt or lower max new tokens."
        )

    state = {"cancelled": False, "last_report": 0.0}

    def decode(ids: Any) -> str:
        return str(tokenizer.decode(ids[prompt_len:], skip_special_tokens=True))

    class _Step(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = int(input_ids.shape[1]) - prompt_len
            now = time.monotonic()
            if on_progress and now - state["last_report"] >= progress_interval_s:
                state["last_report"] = now
                on_progress(done, params.max_new_tokens, decode(input_ids[0]))
            stop = bool(should_cancel and should_cancel())
            state["cancelled"] = stop
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    kwargs = generation_kwargs(params)
    pad_id = pad_token_id(tokenizer)

    torch.manual_seed(params.seed)
    start = time.monotonic()
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            **kwargs,
            pad_token_id=pad_id,
            stopping_criteria=StoppingCriteriaList([_Step()]),
        )
    seconds = time.monotonic() - start
    new_tokens = int(output.shape[1]) - prompt_len
    result_text = decode(output[0])
    if state["cancelled"]:
        reason = "cancelled"
    elif new_tokens >= params.max_new_tokens:
        reason = "length"
    else:
        reason = "eos"
    if on_progress:
        on_progress(new_tokens, params.max_new_tokens, result_text)
    return GenerateResult(
        text=result_text,
        prompt_tokens=prompt_len,
        output_tokens=new_tokens,
        finish_reason=reason,
        seconds=round(seconds, 4),
        tokens_per_second=round(new_tokens / seconds, 2) if seconds > 0 else 0.0,
    )


@dataclass(frozen=True)
class BatchOutput:
    text: str
    output_tokens: int  # generated tokens up to and including the end token; no padding
    finish_reason: str  # "eos" | "length"


def _eos_ids(loaded: LoadedModel) -> set[int]:
    """The tokens `generate` stops at (its generation config's, as `generate` uses)."""
    value = getattr(loaded.model.generation_config, "eos_token_id", None)
    if isinstance(value, int):
        return {value}
    if isinstance(value, list | tuple):
        return {int(v) for v in value}
    return set()


def generate_batch(
    loaded: LoadedModel,
    texts: list[str],
    settings: GenerationSettings,
    *,
    should_cancel: CancelFn | None = None,
    cancel_check_interval_s: float = 0.5,
    timing: dict[str, float] | None = None,
) -> list[BatchOutput] | None:
    """Generate for several prompts at once, left-padded; None when cancelled mid-batch.

    `texts` are final prompt texts (chat template already applied). With greedy decoding
    the outputs are those of `generate` one prompt at a time: padding is masked and the
    positions are counted from each row's first real token.

    `timing`, when given, receives "prefill" (seconds until the first new token: reading
    the prompts) and "total" (seconds of the whole `generate` call).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tokenizer, model = loaded.tokenizer, loaded.model
    pad_id = pad_token_id(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
        loaded.device
    )
    width = int(inputs["input_ids"].shape[1])
    state = {"cancelled": False, "last_check": time.monotonic()}

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            if "first_token" not in state:  # called once per new token; first: after prefill
                state["first_token"] = now
            stop = False
            if should_cancel and now - state["last_check"] >= cancel_check_interval_s:
                state["last_check"] = now
                stop = bool(should_cancel())
                state["cancelled"] = stop
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    torch.manual_seed(settings.seed)
    began = time.monotonic()
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            **generation_kwargs(settings),
            pad_token_id=pad_id,
            stopping_criteria=StoppingCriteriaList([_Cancel()]),
        )
    if timing is not None:
        ended = time.monotonic()
        timing["prefill"] = state.get("first_token", ended) - began
        timing["total"] = ended - began
    if state["cancelled"]:
        return None
    eos = _eos_ids(loaded)
    results = []
    for row in output[:, width:].tolist():
        n = len(row)
        reason = "length"
        for i, token in enumerate(row):
            if token in eos:
                n, reason = i + 1, "eos"
                break
        text = str(tokenizer.decode(row[:n], skip_special_tokens=True))
        results.append(BatchOutput(text=text, output_tokens=n, finish_reason=reason))
    return results
