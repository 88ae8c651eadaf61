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
- "onnx_int8": the exported KV-cache ONNX graph with every MatMul's weights in int8,
  block-wise: onnxruntime's `MatMulNBits` with 8 bits, a scale per 64 weights and int8
  compute. One scale per output channel (`quantize_dynamic(per_channel=True)`, tried
  first) lost 0.033 ROUGE-1 on the bundled model; a scale per 64 weights loses nothing
  measurable and is as fast (bench/quantization.py, 24 rows: drop 0.002, 1.6x the PyTorch
  parent's tokens/s).
- "int8" (dynamic, kept for comparison): flagged with a warning on its trade-off row.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Literal

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


ONNX_BLOCK_SIZE = 64
ONNX_INT8_METHOD = (
    f"onnxruntime int8 block-wise (MatMulNBits, {ONNX_BLOCK_SIZE}-weight blocks, int8 compute)"
)
OnnxScheme = Literal["blockwise", "per_channel"]


def quantize_onnx_int8(
    source: Path, out: Path, *, scheme: OnnxScheme = "blockwise", keep_lm_head: bool = False
) -> dict[str, Any]:
    """int8 weights of every MatMul of the ONNX variant in `source`, written to `out` with
    the tokenizer and config files. Returns the marker it wrote.

    "blockwise" (the product's): onnxruntime's `MatMulNBitsQuantizer` with 8 bits, one
    symmetric scale per block of `ONNX_BLOCK_SIZE` weights along the input dimension, and
    accuracy level 4 (activations quantized to int8 per block at run time, int8 dot
    products). "per_channel": `quantize_dynamic(per_channel=True)`, one scale per output
    channel and a dynamic uint8 activation scale per tensor; kept for the bench, where it
    loses 0.03 ROUGE-1 on the bundled model that the block-wise form does not."""
    from workers.ml.export.onnx_runtime import ONNX_MARKER, ONNX_NAME

    out.mkdir(parents=True, exist_ok=True)
    exclude = lm_head_nodes(source / ONNX_NAME) if keep_lm_head else []
    if scheme == "blockwise":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(source / ONNX_NAME)),
            bits=8,
            block_size=ONNX_BLOCK_SIZE,
            is_symmetric=True,
            accuracy_level=4,
            nodes_to_exclude=exclude,
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(out / ONNX_NAME), True)
        method = ONNX_INT8_METHOD
    else:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(source / ONNX_NAME),
            str(out / ONNX_NAME),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=exclude,
            use_external_data_format=True,
        )
        method = "onnxruntime per-channel dynamic int8"
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith(ONNX_NAME) and path.name != ONNX_MARKER:
            shutil.copy2(path, out / path.name)
    marker = json.loads((source / ONNX_MARKER).read_text(encoding="utf-8"))
    marker["quantization"] = method + (" (lm_head float)" if exclude else "")
    marker["excluded_nodes"] = exclude
    (out / ONNX_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return marker
