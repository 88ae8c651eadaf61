"""Export a model for deployment: merge, int8, ONNX.

Plain functions over folders, with a progress callback; no Django. Every variant is a
self-contained folder that loads on its own:

- "safetensors": the model in float32 safetensors with its tokenizer, generation config
  and a model card. A LoRA candidate is merged into its base weights first, so the
  folder loads with plain `AutoModelForCausalLM.from_pretrained` (no peft needed).
- "int8": dynamic int8 quantization of every Linear layer (torch.ao, for CPU serving).
  The quantized state dict is saved as `model_int8.pt` beside the config and tokenizer;
  `load_int8` rebuilds the model from the config, quantizes the same way and loads it.
  It loses much of a small model's quality (its trade-off row carries a warning).
- "int8_weight": torchao int8 weight-only (per channel), see `quantize`.
- "onnx": `torch.onnx.export(dynamo=True)` of the forward pass with a KV cache, run by
  onnxruntime (`onnx_runtime`), where the architecture and the installed exporter allow.
- "onnx_int8": that graph with block-wise int8 weights run by onnxruntime (`quantize`).

Measuring a variant is in `measure`, the download bundle in `bundle`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from workers.ml.errors import UserFacingError
from workers.ml.export.onnx_runtime import ONNX_MARKER, export_kv_graph
from workers.ml.export.onnx_runtime import ONNX_NAME as ONNX_NAME  # re-exported
from workers.ml.loading import INT8_MARKER, INT8_WEIGHTS, adapter_base

VariantKind = Literal["safetensors", "int8", "int8_weight", "onnx", "onnx_int8"]
ONNX_KINDS = ("onnx", "onnx_int8")
ProgressFn = Callable[[int, int, str], None]

CARD_NAME = "README.md"
PROMPT_TEMPLATE_NAME = "prompt_template.json"
ONNX_FILES = (ONNX_NAME, ONNX_MARKER)  # what makes a folder an ONNX variant


class ExportError(UserFacingError):
    pass


def _noop(done: int, total: int, message: str) -> None:
    return None


# --- loading a candidate for export -------------------------------------------------------


def load_for_export(path: str) -> tuple[Any, Any]:
    """A float32 copy of the model at `path` (an adapter folder is merged into its base)
    and its tokenizer. Kept apart from any warm inference copy."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from workers.ml.training.adapters import load_base_copy

    folder = Path(path)
    base = adapter_base(folder)
    model = load_base_copy(base or path)
    if base:
        peft_model = PeftModel.from_pretrained(model, path, is_trainable=False)
        if peft_model.peft_config["default"].peft_type != "LORA":
            raise ExportError(
                "Only LoRA adapters can be merged into their base model; a prompt-tuning "
                "adapter prepends learned tokens at every call and has no merged form."
            )
        model = peft_model.merge_and_unload()
    model.config.use_cache = True
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


# --- the model card --------------------------------------------------------------------


def model_card(info: dict[str, Any]) -> str:
    """A model card in Markdown: what it is, base model, data, method, hyperparameters,
    scores and limitations. `info` keys are all optional."""
    lines = [f"# {info.get('name', 'Exported model')}", ""]
    lines.append(info.get("description") or "A model exported by Lifecycle Studio.")
    lines += ["", "## What it is", ""]
    for label, key in (
        ("Variant", "variant"),
        ("Base model", "base_model"),
        ("Parent", "parent"),
        ("Method", "method"),
        ("Training data", "dataset"),
        ("Training data licence", "dataset_licence"),
        ("Architecture", "architecture"),
        ("Parameters", "n_params"),
        ("Base model licence", "licence"),
        ("Exported", "exported_at"),
    ):
        if info.get(key) not in (None, ""):
            lines.append(f"- **{label}**: {info[key]}")
    hyper = info.get("hyperparameters") or {}
    if hyper:
        lines += ["", "## Hyperparameters", ""]
        lines += [f"- `{k}`: {v}" for k, v in sorted(hyper.items())]
    template = info.get("template")
    if template:
        lines += [
            "",
            "## Prompt template",
            "",
            f"Trained and measured with **{template.get('name', 'a template')}** "
            f"v{template.get('version', '?')}. Put the user's text where `{{input}}` is "
            f"(`{PROMPT_TEMPLATE_NAME}` holds it; the bundle's `serve.py` and Lifecycle "
            "Studio's `/v1/chat/completions` do this themselves)"
            + (
                ", then apply the model's chat template."
                if template.get("use_chat_template")
                else "."
            ),
            "",
            f"Instruction: {template.get('instruction', '')}",
            "",
            "```text",
            str(template.get("body", "")),
            "```",
        ]
    scores = info.get("scores") or {}
    if scores:
        lines += ["", "## Scores", ""]
        lines += [f"- {k}: {v}" for k, v in scores.items()]
    lines += [
        "",
        "## Limitations",
        "",
        info.get("limitations")
        or "A small language model: it makes factual mistakes, follows instructions "
        "loosely and reflects the biases of its training data. Check its outputs before "
        "anyone relies on them, and keep a person in the loop for decisions.",
        "",
        "## How to load it",
        "",
        "See `serve.py` and `SERVING.md` in the download bundle (plain transformers).",
        "",
    ]
    return "\n".join(lines)


def save_prompt_template(out: Path, template: dict[str, Any] | None) -> None:
    """Write the prompt template beside the weights (`PROMPT_TEMPLATE_NAME`), so whoever
    serves the folder puts requests into it as training and evaluation did."""
    if not template:
        return
    keep = ("name", "version", "instruction", "body", "example_format", "use_chat_template")
    (out / PROMPT_TEMPLATE_NAME).write_text(
        json.dumps({k: template[k] for k in keep if k in template}, indent=2), encoding="utf-8"
    )


# --- variants -------------------------------------------------------------------------


def _strip_gguf(config: Any) -> None:
    quantization = getattr(config, "quantization_config", None) or {}
    if isinstance(quantization, dict) and quantization.get("quant_method") == "gguf":
        del config.quantization_config


def _save_common(model: Any, tokenizer: Any, out: Path, card: str) -> None:
    tokenizer.save_pretrained(str(out))
    model.generation_config.save_pretrained(str(out))
    (out / CARD_NAME).write_text(card, encoding="utf-8")


def export_safetensors(model: Any, tokenizer: Any, out: Path, *, card: str) -> None:
    """The (merged) model as float32 safetensors, tokenizer, generation config and card."""
    out.mkdir(parents=True, exist_ok=True)
    _strip_gguf(model.config)
    model.save_pretrained(str(out), safe_serialization=True)
    _save_common(model, tokenizer, out, card)


def quantize_int8(model: Any, tokenizer: Any, out: Path, *, card: str) -> None:
    """Dynamic int8 quantization of the Linear layers, saved so `load_int8` reloads it."""
    import warnings

    import torch

    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices (torchao succeeds it)
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
        )
    _strip_gguf(quantized.config)
    quantized.config.save_pretrained(str(out))
    torch.save(quantized.state_dict(), out / INT8_WEIGHTS)
    (out / INT8_MARKER).write_text(
        json.dumps({"method": "torch.ao dynamic", "dtype": "qint8", "modules": ["Linear"]})
    )
    _save_common(model, tokenizer, out, card)


def quantize_int8_weight(model: Any, tokenizer: Any, out: Path, *, card: str) -> None:
    """torchao int8 weight-only, saved so `load_int8` reloads it (see `quantize`)."""
    from workers.ml.export.quantize import save_weight_only

    _strip_gguf(model.config)
    save_weight_only(model, out)
    _save_common(model, tokenizer, out, card)


def export_onnx(model: Any, tokenizer: Any, out: Path, *, card: str) -> None:
    """ONNX graph of the forward pass with a KV cache (see `onnx_runtime`)."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx and onnxscript packages.") from exc
    export_kv_graph(model, out)
    _strip_gguf(model.config)
    model.config.save_pretrained(str(out))
    _save_common(model, tokenizer, out, card)


def export_onnx_int8(model: Any, tokenizer: Any, out: Path, *, card: str) -> None:
    """The ONNX graph, then block-wise int8 of its MatMul weights (`quantize`); only the
    quantized graph is kept."""
    from workers.ml.export.quantize import quantize_onnx_int8

    staging = out.with_name(out.name + ".fp32")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        export_onnx(model, tokenizer, staging, card=card)
        quantize_onnx_int8(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_STEPS: dict[str, tuple[str, Callable[..., None]]] = {
    "safetensors": ("Saving safetensors", export_safetensors),
    "int8": ("Quantizing to int8 (dynamic)", quantize_int8),
    "int8_weight": ("Quantizing the weights to int8 (torchao)", quantize_int8_weight),
    "onnx": ("Exporting to ONNX", export_onnx),
    "onnx_int8": ("Exporting to ONNX and quantizing it to int8", export_onnx_int8),
}


def build_variant(
    kind: VariantKind, source_path: str, out: Path, *, card: str, on_progress: ProgressFn = _noop
) -> list[dict[str, Any]]:
    """Build one variant of the model at `source_path` into `out`; return its files.

    Steps reported: 1 load (and merge), 2 convert, 3 write checksums.
    """
    on_progress(
        0,
        3,
        "Loading the model"
        + (" and merging its adapter" if adapter_base(Path(source_path)) else ""),
    )
    model, tokenizer = load_for_export(source_path)
    if kind not in _STEPS:
        raise ExportError(f"Unknown variant {kind!r}")
    message, step = _STEPS[kind]
    on_progress(1, 3, message)
    step(model, tokenizer, out, card=card)
    on_progress(2, 3, "Computing checksums")
    files = folder_files(out)
    on_progress(3, 3, "Written")
    return files


def folder_files(folder: Path) -> list[dict[str, Any]]:
    """Every file of a folder: path relative to it, size in bytes, sha256."""
    files = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        files.append(
            {
                "path": path.relative_to(folder).as_posix(),
                "size": path.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return files


def weights_size(files: Sequence[dict[str, Any]]) -> int:
    """Bytes of the weight files (what memory and disk the model itself takes)."""
    suffixes = (".safetensors", ".pt", ".bin", ".onnx", ".onnx.data", ".data")
    return sum(f["size"] for f in files if f["path"].endswith(suffixes))


def main_weights(files: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    weights = [f for f in files if f["path"].endswith((".safetensors", ".pt", ".onnx", ".data"))]
    return max(weights, key=lambda f: f["size"], default=None)
