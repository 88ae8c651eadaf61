"""workers/ml/export/ on the tiny model: merge, int8, ONNX, measure, bundle."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from workers.ml.export.bundle import write_bundle
from workers.ml.export.measure import measure
from workers.ml.export.variants import (
    ONNX_NAME,
    build_variant,
    load_for_export,
    save_prompt_template,
    weights_size,
)
from workers.ml.generation.stream import generate_batch
from workers.ml.loading import ModelSpec, load
from workers.ml.params import GenerationSettings

PROMPTS = [f"Summarize the dialogue number {i}: the agent answers the customer." for i in range(20)]
GREEDY = GenerationSettings(max_new_tokens=12, decoding="greedy")


@pytest.fixture(scope="module")
def adapter(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny model with non-zero B matrices (a trained-looking one)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("adapter")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_folder), dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_folder)).save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tiny_folder)
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def _outputs(loaded: Any) -> list[str]:
    result = generate_batch(loaded, PROMPTS, GREEDY)
    assert result is not None
    return [r.text for r in result]


def test_the_merged_model_generates_what_the_adapter_model_does(
    adapter: Path, tiny_folder: Path, tmp_path: Path, settings: Any
) -> None:
    out = tmp_path / "merged"
    files = build_variant("safetensors", str(adapter), out, card="# card")

    adapter_model = load(
        ModelSpec("local", str(adapter)), Path(settings.MODELS_DIR), device="cpu", keep_warm=False
    )
    merged = load(
        ModelSpec("local", str(out)), Path(settings.MODELS_DIR), device="cpu", keep_warm=False
    )
    base = load(ModelSpec("tiny"), Path(settings.MODELS_DIR), device="cpu", keep_warm=False)

    assert not (out / "adapter_config.json").exists()
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= {
        f["path"] for f in files
    }
    merged_out = _outputs(merged)
    assert merged_out == _outputs(adapter_model)
    assert merged_out != _outputs(base)  # the adapter changes what the model says


def test_the_exported_folder_loads_with_plain_transformers_in_a_fresh_process(
    adapter: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    build_variant("safetensors", str(adapter), out, card="# card")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "ids = tok('Summarize the dialogue', return_tensors='pt')\n"
        "out = model.generate(**ids, max_new_tokens=5, do_sample=False)\n"
        "print('NEW', out.shape[1] - ids['input_ids'].shape[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "NEW 5" in done.stdout


def test_the_int8_variant_is_smaller_and_reloads(
    tiny_folder: Path, tmp_path: Path, settings: Any
) -> None:
    full, q8 = tmp_path / "full", tmp_path / "int8"
    full_files = build_variant("safetensors", str(tiny_folder), full, card="# card")
    q8_files = build_variant("int8", str(tiny_folder), q8, card="# card")

    assert weights_size(q8_files) < weights_size(full_files)
    loaded = load(ModelSpec("local", str(q8)), Path(settings.MODELS_DIR), keep_warm=False)
    import torch

    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in loaded.model.modules())
    # The reloaded model is the quantized one: same greedy outputs as quantizing in memory.
    from workers.ml.loading import LoadedModel

    model, tokenizer = load_for_export(str(tiny_folder))
    in_memory = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    fresh = LoadedModel(in_memory, tokenizer, "cpu", str(tiny_folder), 4096)
    assert _outputs(loaded) == _outputs(fresh)


def test_onnx_export_matches_pytorch_logits(tiny_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    out = tmp_path / "onnx"
    files = build_variant("onnx", str(tiny_folder), out, card="# card")
    assert (out / ONNX_NAME).is_file()
    assert weights_size(files) > 0
    import onnx

    onnx.checker.check_model(str(out / ONNX_NAME))


def test_measure_reports_size_speed_latency_and_rouge(tiny_folder: Path) -> None:
    from workers.ml.prompts import BuiltPrompt

    rows = [
        BuiltPrompt(index=i, line=i, input="x", text=p, reference="the agent answers", tokens=10)
        for i, p in enumerate(PROMPTS[:4])
    ]
    m = measure(
        str(tiny_folder), size_bytes=123, prompts=rows, latency_prompt=PROMPTS[0], max_new_tokens=8
    )
    assert m.size_bytes == 123
    assert m.load_s > 0 and m.latency_ms > 0 and m.tokens_per_s > 0
    assert m.latency_tokens == 8
    assert m.ms_per_token == pytest.approx(m.latency_ms / 8, abs=0.01)
    assert m.rows == 4 and set(m.scores) == {"rouge1", "rouge2", "rougeL"}


def test_latency_is_measured_at_a_fixed_length_even_when_the_model_would_stop(
    tiny_folder: Path,
) -> None:
    """Issue 19: one variant's 11 tokens against another's unshown count compared nothing;
    every variant now writes exactly the same number of tokens."""
    from workers.ml.export.measure import fixed_length, load_folder

    loaded = load_folder(str(tiny_folder))
    eos = int(loaded.tokenizer.eos_token_id)
    loaded.model.generation_config.eos_token_id = eos

    def stop_at_once(_module: object, _inputs: object, output: Any) -> Any:
        output = output.clone()
        output[..., eos] += 100.0
        return output

    handle = loaded.model.get_output_embeddings().register_forward_hook(stop_at_once)
    try:
        assert generate_batch(loaded, PROMPTS[:1], GREEDY)[0].output_tokens == 1  # type: ignore[index]
        assert fixed_length(loaded, PROMPTS[0], 8) == 8
    finally:
        handle.remove()


def run_in_bundle(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Python in an unzipped download bundle, offline, with nothing but PATH set."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_the_bundle_holds_the_model_card_and_a_serving_script(
    tiny_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    build_variant("safetensors", str(tiny_folder), out, card="# Tiny card")
    save_prompt_template(
        out,
        {"name": "T", "version": 1, "instruction": "Be brief.", "body": "{instruction} {input}"},
    )
    zpath = write_bundle(out, tmp_path / "bundle.zip")
    with zipfile.ZipFile(zpath) as zf:
        names = set(zf.namelist())
        assert {"serve.py", "SERVING.md", "model/README.md", "model/model.safetensors"} <= names
        zf.extractall(tmp_path / "unzipped")
    done = run_in_bundle(tmp_path / "unzipped", "serve.py", "--prompt", "Hello there")
    assert done.returncode == 0, done.stderr
    # serve.py sends the user's text through the template the model was trained with.
    filled = run_in_bundle(
        tmp_path / "unzipped",
        "-c",
        "import json, serve; print(json.dumps(serve.with_template("
        "[{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'Hi {x}'}])))",
    )
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Be brief. Hi {x}"},
    ]
