"""ONNX variants with a KV cache, exported by torch.onnx (dynamo) and run by onnxruntime.

The graph maps (input_ids, attention_mask, position_ids, past_key_i, past_value_i) to
(logits, present_key_i, present_value_i), so decoding feeds one new token per step and the
keys and values of earlier tokens are read, never recomputed (a full-sequence decode loop
costs O(n^2) forward work per answer; this one costs what PyTorch's cached `generate` does).

The past is never empty: torch.export specialises a dimension that is 0 or 1 in the
example inputs, so every call carries one extra, masked "sink" slot in front of the real
past (zeros with attention mask 0). It changes no output: a masked key gets no weight.

Generation here reproduces `model.generate`'s logits processing (repetition penalty over
every input id, temperature, top-k, top-p, min_new_tokens) so a greedy answer is token for
token the PyTorch one. Sampling draws from numpy's generator seeded with `settings.seed`
(reproducible, not the same draws as torch).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workers.ml.errors import GenerationError, UserFacingError
from workers.ml.generation.streaming import StreamResult
from workers.ml.params import GenerationSettings

ONNX_NAME = "model.onnx"
ONNX_MARKER = "lifecycle_onnx.json"
SINK = 1  # masked past slots in front of the real past (see the module note)
BATCH = 8  # rows per onnxruntime batch in `generate_texts`


class OnnxExportError(UserFacingError):
    pass


def _shape(config: Any) -> tuple[int, int, int]:
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return layers, kv_heads, head_dim


def _past_names(layers: int, prefix: str = "past") -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def export_kv_graph(model: Any, out: Path) -> dict[str, Any]:
    """Write `out/model.onnx` (+ external weights) and the marker; return the marker."""
    import torch
    from transformers import DynamicCache

    layers, kv_heads, head_dim = _shape(model.config)

    class WithCache(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, past: Any) -> Any:
            cache = DynamicCache(config=self.inner.config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            result = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            present = []
            for layer in result.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (result.logits, *present)

    batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=8192)
    past_len, total = torch.export.Dim("past", max=8192), torch.export.Dim("total", max=16384)
    ids = torch.randint(0, 100, (2, 5))
    past = tuple(torch.zeros(2, kv_heads, 3, head_dim) for _ in range(2 * layers))
    names = _past_names(layers)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                WithCache(model).eval(),
                (ids, torch.ones(2, 8, dtype=torch.long), torch.arange(3, 8).expand(2, 5), past),
                dynamo=True,
                input_names=["input_ids", "attention_mask", "position_ids", *names],
                output_names=["logits", *_past_names(layers, "present")],
                dynamic_shapes=(
                    {0: batch, 1: seq},
                    {0: batch, 1: total},
                    {0: batch, 1: seq},
                    tuple({0: batch, 2: past_len} for _ in names),
                ),
                verbose=False,
            )
            assert program is not None
            program.save(str(out / ONNX_NAME), external_data=True)
    except Exception as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise OnnxExportError(
            f"This architecture ({type(model).__name__}) could not be exported to ONNX with a "
            f"KV cache here: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    marker = {
        "format": "kv-cache",
        "layers": layers,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "sink": SINK,
        "quantization": None,
    }
    (out / ONNX_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return marker


def is_onnx_variant(folder: str | Path) -> bool:
    """True for a folder this module can load (an ONNX variant with its KV-cache graph)."""
    return (Path(folder) / ONNX_MARKER).is_file()


def providers() -> list[str]:
    """onnxruntime's execution providers to use: CUDA first where this build has it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


def load_onnx(folder: str | Path) -> OnnxLoaded:
    """An ONNX variant ready to generate: the onnxruntime session, tokenizer, end tokens."""
    import onnxruntime as ort
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    path = Path(folder)
    if not is_onnx_variant(path):
        raise GenerationError(f"{path} is not an ONNX variant with a KV cache.")
    marker = json.loads((path / ONNX_MARKER).read_text(encoding="utf-8"))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path / ONNX_NAME), options, providers=providers())
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    eos: set[int] = set()
    try:
        value = GenerationConfig.from_pretrained(str(path), local_files_only=True).eos_token_id
    except OSError:
        value = None
    value = value if value is not None else tokenizer.eos_token_id
    if isinstance(value, int):
        eos = {value}
    elif isinstance(value, list | tuple):
        eos = {int(v) for v in value}
    context = int(getattr(config, "max_position_embeddings", 0) or 0)
    device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    return OnnxLoaded(
        session=session,
        tokenizer=tokenizer,
        path=str(path),
        context_length=context,
        eos_ids=eos,
        layers=int(marker["layers"]),
        kv_heads=int(marker["kv_heads"]),
        head_dim=int(marker["head_dim"]),
        device=device,
        quantization=marker.get("quantization"),
    )


OnToken = Callable[[int, list[int]], None]  # (row, that row's generated ids so far)


@dataclass
class Decoded:
    ids: list[int]
    finish_reason: Literal["eos", "length", "stop"]
    first_token_s: float = 0.0


@dataclass
class OnnxLoaded:
    """A loaded ONNX variant. `model` is None: nothing here is a torch module."""

    session: Any
    tokenizer: Any
    path: str
    context_length: int
    eos_ids: set[int]
    layers: int
    kv_heads: int
    head_dim: int
    device: str = "cpu"
    quantization: str | None = None
    model: None = field(default=None, repr=False)

    # --- decoding ------------------------------------------------------------------------

    def decode_ids(
        self,
        rows: Sequence[Sequence[int]],
        settings: GenerationSettings,
        *,
        min_new_tokens: int = 0,
        on_token: OnToken | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Decoded]:
        """Generate for several prompts (token ids) at once, left-padded like `generate`."""
        import numpy as np

        if not rows or any(len(r) == 0 for r in rows):
            raise GenerationError("A prompt produced no tokens.")
        n, width = len(rows), max(len(r) for r in rows)
        longest = width + settings.max_new_tokens
        if self.context_length and longest > self.context_length:
            raise GenerationError(
                f"The prompt is {width} tokens and up to {settings.max_new_tokens} new tokens "
                f"were asked for; together they exceed this model's context window of "
                f"{self.context_length} tokens."
            )
        pad = self.tokenizer.pad_token_id
        pad = int(pad if pad is not None else next(iter(self.eos_ids), 0))
        ids = np.full((n, width), pad, dtype=np.int64)
        real = np.zeros((n, width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = r
            real[i, width - len(r) :] = 1
        mask = np.concatenate([np.zeros((n, SINK), dtype=np.int64), real], axis=1)
        positions = np.cumsum(real, axis=1) - 1
        positions[real == 0] = 1
        past = {
            name: np.zeros((n, self.kv_heads, SINK, self.head_dim), dtype=np.float32)
            for name in _past_names(self.layers)
        }
        seen = [ids[i].tolist() for i in range(n)]  # what the repetition penalty sees
        out: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        reasons: list[Literal["eos", "length", "stop"]] = ["length"] * n
        rng = np.random.default_rng(settings.seed)
        step_input, step_positions = ids, positions
        began, first = time.perf_counter(), 0.0
        for step in range(settings.max_new_tokens):
            results = self.session.run(
                None,
                {
                    "input_ids": step_input,
                    "attention_mask": mask,
                    "position_ids": step_positions,
                    **past,
                },
            )
            logits = results[0][:, -1, :].astype(np.float32)
            past = dict(zip(_past_names(self.layers), results[1:], strict=True))
            chosen = np.empty(n, dtype=np.int64)
            for i in range(n):
                scores = _process(logits[i], seen[i], settings, self.eos_ids, step < min_new_tokens)
                chosen[i] = _pick(scores, settings, rng)
            if step == 0:
                first = time.perf_counter() - began
            for i in range(n):
                token = int(chosen[i]) if not done[i] else pad
                if done[i]:
                    chosen[i] = pad
                    continue
                out[i].append(token)
                seen[i].append(token)
                if token in self.eos_ids:
                    done[i], reasons[i] = True, "eos"
                if on_token is not None:
                    on_token(i, out[i])
            if all(done) or (should_stop is not None and should_stop()):
                if not all(done):
                    for i in range(n):
                        if not done[i]:
                            reasons[i] = "stop"
                break
            step_input = chosen[:, None]
            step_positions = step_positions[:, -1:] + 1
            mask = np.concatenate([mask, np.ones((n, 1), dtype=np.int64)], axis=1)
        return [Decoded(out[i], reasons[i], first) for i in range(n)]

    def _text(self, ids: Sequence[int]) -> str:
        kept = [t for t in ids if t not in self.eos_ids]
        return str(self.tokenizer.decode(kept, skip_special_tokens=True))

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # --- the two public ways to generate ---------------------------------------------------

    def generate_texts(
        self,
        prompts: Sequence[str],
        settings: GenerationSettings,
        *,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[tuple[str, int, str]] | None:
        """(text, generated tokens incl. the end token, "eos"|"length") per prompt, in
        order; batches of similar length. None when cancelled."""
        encoded = [self._encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        results: dict[int, tuple[str, int, str]] = {}
        for start in range(0, len(order), BATCH):
            if should_cancel is not None and should_cancel():
                return None
            chunk = order[start : start + BATCH]
            for i, decoded in zip(
                chunk, self.decode_ids([encoded[i] for i in chunk], settings), strict=True
            ):
                results[i] = (self._text(decoded.ids), len(decoded.ids), decoded.finish_reason)
        return [results[i] for i in range(len(prompts))]

    def stream(
        self,
        prompt_text: str,
        settings: GenerationSettings,
        on_delta: Callable[[str], None],
        should_stop: Callable[[], bool] | None = None,
        stop: list[str] | None = None,
    ) -> StreamResult:
        """Contract 2's `stream_generate` for an ONNX variant: text deltas as they decode,
        cut at the first `stop` string (not included)."""
        prompt = self._encode(prompt_text)
        state: dict[str, Any] = {"sent": "", "ttft": 0.0, "hit_stop": False, "text": ""}
        began = time.perf_counter()

        def on_token(_row: int, generated: list[int]) -> None:
            if state["hit_stop"]:
                return
            text = self._text(generated)
            if stop:
                cut = min((text.find(s) for s in stop if s and s in text), default=-1)
                if cut >= 0:
                    text, state["hit_stop"] = text[:cut], True
            state["text"] = text
            ready = text if state["hit_stop"] else text.rstrip("\ufffd")  # half a character
            if len(ready) > len(state["sent"]) and ready.startswith(state["sent"]):
                delta = ready[len(state["sent"]) :]
                if not state["sent"]:
                    state["ttft"] = time.perf_counter() - began
                state["sent"] = ready
                on_delta(delta)

        def halt() -> bool:
            return bool(state["hit_stop"] or (should_stop is not None and should_stop()))

        decoded = self.decode_ids([prompt], settings, on_token=on_token, should_stop=halt)[0]
        if not state["hit_stop"] and state["text"] != state["sent"]:  # a trailing byte
            tail = state["text"][len(state["sent"]) :]
            if tail and state["text"].startswith(state["sent"]):
                on_delta(tail)
                state["sent"] = state["text"]
        finish: Literal["stop", "length"] = (
            "length" if decoded.finish_reason == "length" else "stop"
        )
        return StreamResult(
            text=state["sent"],
            prompt_tokens=len(prompt),
            completion_tokens=len(decoded.ids),
            finish_reason=finish,
            ttft_s=round(state["ttft"] or decoded.first_token_s, 4),
            seconds=round(time.perf_counter() - began, 4),
        )


def _process(
    logits: Any, seen: list[int], settings: GenerationSettings, eos: set[int], block_eos: bool
) -> Any:
    """`generate`'s logits processors, in its order: repetition penalty, min_new_tokens,
    then (sampling) temperature, top-k and top-p."""
    import numpy as np

    scores = logits.copy()
    if settings.repetition_penalty != 1.0 and seen:
        idx = np.asarray(seen, dtype=np.int64)
        picked = scores[idx]
        scores[idx] = np.where(
            picked < 0, picked * settings.repetition_penalty, picked / settings.repetition_penalty
        )
    if block_eos and eos:
        scores[list(eos)] = -np.inf
    if settings.decoding != "sampling":
        return scores
    scores = scores / settings.temperature
    if settings.top_k and settings.top_k < scores.shape[-1]:
        kth = np.partition(scores, -settings.top_k)[-settings.top_k]
        scores = np.where(scores < kth, -np.inf, scores)
    if settings.top_p < 1.0:
        order = np.argsort(scores)  # ascending, as transformers' TopPLogitsWarper
        probs = _softmax(scores[order])
        remove = np.cumsum(probs) <= (1 - settings.top_p)
        remove[-1] = False  # always keep the most likely token
        scores[order[remove]] = -np.inf
    return scores


def _softmax(x: Any) -> Any:
    import numpy as np

    e = np.exp(x - np.max(x))
    return e / e.sum()


def _pick(scores: Any, settings: GenerationSettings, rng: Any) -> int:
    import numpy as np

    if settings.decoding != "sampling":
        return int(np.argmax(scores))
    probs = _softmax(scores.astype(np.float64))
    return int(rng.choice(len(probs), p=probs / probs.sum()))
