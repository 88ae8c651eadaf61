"""int8 variants that keep their quality, and the one that does not.

Measured on the bundled SmolLM2-135M (bench/quantization.py; README "int8 that keeps its
quality"): dynamic activation quantization of every Linear (torch.ao `quantize_dynamic`)
roughly halves ROUGE on a model this small, because the activations of a few channels are
outliers that one per-tensor scale cannot hold. Quantizing only the weights, per output
channel, keeps it:

- "int8_weight": torchao `Int8WeightOnlyConfig` (weights int8 per channel, activations
  float). Saved as its state dict (torchao tensor subclasses) with `torch.save`; reloaded
  by rebuilding the model from its config, quantizing it the same way and loading the
  state dict with `assign=True` (`loading.load_int8`, told apart by the marker's weights
  file, so every worker that loads int8 loads this too).
- "onnx_int8": the exported KV-cache ONNX graph through onnxruntime's `quantize_dynamic`
  with `per_channel=True`, QInt8 weights, the lm_head MatMul left in float (the logits
  are where one bad scale costs the most; measured in the bench both ways).
- "int8" (dynamic, kept for comparison): flagged with a warning on its trade-off row.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from workers.ml.loading import INT8_MARKER, WEIGHT_ONLY_WEIGHTS, load_int8

WEIGHT_ONLY_FILE = WEIGHT_ONLY_WEIGHTS
WEIGHT_ONLY_METHOD = "torchao int8 weight-only"
DYNAMIC_WARNING = "Dynamic int8 halves quality on small models: measured ROUGE drop {drop}."


def quantize_weight_only(model: Any) -> Any:
    """A torchao int8 weight-only copy of `model` (every Linear, lm_head included)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8WeightOnlyConfig())
    return quantized.eval()


def save_weight_only(model: Any, out: Path) -> None:
    """Quantize and save beside the config; `load_weight_only` reads it back."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    quantized = quantize_weight_only(model)
    quantized.config.save_pretrained(str(out))
    torch.save(quantized.state_dict(), out / WEIGHT_ONLY_FILE)
    (out / INT8_MARKER).write_text(
        json.dumps(
            {
                "method": WEIGHT_ONLY_METHOD,
                "weights": WEIGHT_ONLY_FILE,
                "config": "Int8WeightOnlyConfig",
            }
        )
    )


def load_weight_only(path: str) -> Any:
    """Rebuild a torchao int8 weight-only variant saved by `save_weight_only` (what
    `loading.load_int8` does for it: from the config, `quantize_`, then the state dict
    with `assign=True` so the tensor subclasses are kept)."""
    return load_int8(path)


def lm_head_nodes(model_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose output becomes the graph's logits."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producers = {o: n for n in graph.node for o in n.output}
    found, todo, seen = [], ["logits"], set()
    while todo:  # walk back through shape-only ops to the projection itself
        name = todo.pop()
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("MatMul", "Gemm"):
            found.append(node.name)
        elif node.op_type in ("Reshape", "Add", "Cast", "Identity", "Transpose", "Squeeze"):
            todo.extend(node.input[:1])
    return found


def quantize_onnx_int8(source: Path, out: Path, *, keep_lm_head: bool = True) -> dict[str, Any]:
    """Per-channel int8 (QInt8 weights, dynamic uint8 activations) of the ONNX variant in
    `source` into `out`; the tokenizer and config files are copied. Returns what was done."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workers.ml.export.onnx_runtime import ONNX_MARKER, ONNX_NAME

    out.mkdir(parents=True, exist_ok=True)
    exclude = lm_head_nodes(source / ONNX_NAME) if keep_lm_head else []
    quantize_dynamic(
        str(source / ONNX_NAME),
        str(out / ONNX_NAME),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=exclude,
        use_external_data_format=True,
    )
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith(ONNX_NAME) and path.name != ONNX_MARKER:
            shutil.copy2(path, out / path.name)
    marker = json.loads((source / ONNX_MARKER).read_text(encoding="utf-8"))
    marker["quantization"] = "onnxruntime per-channel int8" + (
        " (lm_head float)" if exclude else ""
    )
    marker["excluded_nodes"] = exclude
    (out / ONNX_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return marker
