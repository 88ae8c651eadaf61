"""A model's sizes as plain data (`ModelShape`), and what each fine-tuning method trains.

Everything here is plain arithmetic on a `ModelShape`, so the web process can call it: no
Django, and torch/transformers are imported only inside `shape_from_model` /
`shape_from_config`, which a worker calls once and stores the result
(`ModelShape.to_json()`) on a database row. The memory plan built on it is in `memory`,
the pretraining compute in `pretraining`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Module names never offered as LoRA targets (recorded in the shape all the same).
NOT_LORA_TARGETS = frozenset({"lm_head"})


@dataclass(frozen=True)
class ModelShape:
    """A model's sizes as plain data: what the planner needs, nothing that needs torch."""

    n_params: int  # total, tied weights counted once
    n_layers: int
    hidden_size: int
    intermediate_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    tie_word_embeddings: bool
    # module-name suffix (e.g. "q_proj") -> [(in_features, out_features, count), ...]
    linear_modules: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    @property
    def lora_targets(self) -> list[str]:
        """Linear module names LoRA can target (lm_head excluded), sorted."""
        return sorted(n for n in self.linear_modules if n not in NOT_LORA_TARGETS)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_params": self.n_params,
            "n_layers": self.n_layers,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "tie_word_embeddings": self.tie_word_embeddings,
            "linear_modules": {
                name: [list(entry) for entry in entries]
                for name, entries in sorted(self.linear_modules.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelShape:
        linear = {
            str(name): [(int(i), int(o), int(c)) for i, o, c in entries]
            for name, entries in dict(data.get("linear_modules") or {}).items()
        }
        return cls(
            n_params=int(data["n_params"]),
            n_layers=int(data["n_layers"]),
            hidden_size=int(data["hidden_size"]),
            intermediate_size=int(data["intermediate_size"]),
            n_heads=int(data["n_heads"]),
            n_kv_heads=int(data["n_kv_heads"]),
            head_dim=int(data["head_dim"]),
            vocab_size=int(data["vocab_size"]),
            context_length=int(data["context_length"]),
            tie_word_embeddings=bool(data["tie_word_embeddings"]),
            linear_modules=linear,
        )


def shape_from_model(model: Any) -> ModelShape:
    """Read a (possibly meta-device) transformers model's shape. Imports torch lazily."""
    from torch import nn

    from workers.ml.loading import context_length_of

    groups: dict[str, dict[tuple[int, int], int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            suffix = name.rsplit(".", 1)[-1]
            key = (int(module.in_features), int(module.out_features))
            groups.setdefault(suffix, {})
            groups[suffix][key] = groups[suffix].get(key, 0) + 1
    linear = {
        suffix: [(i, o, c) for (i, o), c in sorted(sizes.items())]
        for suffix, sizes in sorted(groups.items())
    }
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "d_model", 0) or 0)
    n_heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "num_heads", 0) or 1)
    n_kv = int(getattr(text, "num_key_value_heads", 0) or n_heads)
    head_dim = int(getattr(text, "head_dim", 0) or (hidden // n_heads if n_heads else 0))
    intermediate = int(
        getattr(text, "intermediate_size", 0) or getattr(text, "d_ff", 0) or 4 * hidden
    )
    n_layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "num_layers", 0))
    return ModelShape(
        n_params=sum(p.numel() for p in model.parameters()),  # tied weights once
        n_layers=n_layers,
        hidden_size=hidden,
        intermediate_size=intermediate,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        vocab_size=int(getattr(text, "vocab_size", 0) or 0),
        context_length=context_length_of(text),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        linear_modules=linear,
    )


def shape_from_config(path_or_id: str) -> ModelShape:
    """Build the model on the meta device (no weights allocated) and read its shape."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from workers.ml.loading import family_of, read_config

    config = read_config(path_or_id)
    auto = {
        "decoder-only": AutoModelForCausalLM,
        "encoder-decoder": AutoModelForSeq2SeqLM,
        "encoder-only": AutoModel,
    }[family_of(config)]
    with torch.device("meta"):
        skeleton = auto.from_config(config)
    return shape_from_model(skeleton)


# --- trainable parameters ----------------------------------------------------------------


def lora_trainable_params(shape: ModelShape, r: int, target_modules: Any) -> int:
    """LoRA's added parameters: A (r x in) and B (out x r) per targeted linear layer."""
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    unknown = sorted(set(targets) - set(shape.linear_modules))
    if unknown:
        raise ValueError(
            f"Unknown LoRA target module(s): {', '.join(unknown)}. "
            f"Available: {', '.join(shape.lora_targets)}."
        )
    return sum(r * (i + o) * c for name in set(targets) for i, o, c in shape.linear_modules[name])


def prompt_tuning_trainable_params(shape: ModelShape, num_virtual_tokens: int) -> int:
    """Soft prompt: one hidden-size vector per virtual token (peft, decoder-only models)."""
    return num_virtual_tokens * shape.hidden_size


__all__ = [
    "ModelShape",
    "lora_trainable_params",
    "prompt_tuning_trainable_params",
    "shape_from_config",
    "shape_from_model",
]
