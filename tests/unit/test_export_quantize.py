"""ONNX variants run by onnxruntime and the int8 methods, on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workers.ml.export.measure import load_any, measure
from workers.ml.export.onnx_runtime import OnnxLoaded, is_onnx_variant, load_onnx
from workers.ml.export.quantize import ONNX_INT8_METHOD, lm_head_nodes, quantize_onnx_int8
from workers.ml.export.variants import ONNX_NAME, build_variant, weights_size
from workers.ml.generation.stream import generate_batch
from workers.ml.loading import ModelSpec, load
from workers.ml.params import GenerationSettings

pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

PROMPTS = [
    "Summarize: the agent answers the customer.",
    "Summarize the dialogue number 7: A asks B for the report and B agrees to send it soon.",
    "Hi",
    "The customer asks about the bill, the agent explains the late fee.",
]
GREEDY = GenerationSettings(max_new_tokens=16, decoding="greedy")


@pytest.fixture(scope="module")
def onnx_folder(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "variant"
    build_variant("onnx", str(tiny_folder), out, card="# card")
    return out


def _torch_greedy(tiny_folder: Path, prompts: list[str], settings: GenerationSettings) -> Any:
    from django.conf import settings as django_settings

    loaded = load(ModelSpec("local", str(tiny_folder)), Path(django_settings.MODELS_DIR))
    return [generate_batch(loaded, [p], settings)[0] for p in prompts]  # type: ignore[index]


def test_onnx_greedy_matches_pytorch_token_for_token(tiny_folder: Path, onnx_folder: Path) -> None:
    assert is_onnx_variant(onnx_folder) and not is_onnx_variant(tiny_folder)
    onnx = load_onnx(onnx_folder)
    expected = _torch_greedy(tiny_folder, PROMPTS, GREEDY)
    one_by_one = [onnx.generate_texts([p], GREEDY)[0] for p in PROMPTS]  # type: ignore[index]
    batched = onnx.generate_texts(PROMPTS, GREEDY)  # left-padded, as generate_batch pads
    assert [(o[0], o[1]) for o in one_by_one] == [(e.text, e.output_tokens) for e in expected]
    assert batched == one_by_one
    assert any(e.output_tokens > 3 for e in expected)  # not a trivial one-token match


def test_onnx_sampling_is_reproducible_with_its_seed(onnx_folder: Path) -> None:
    onnx = load_onnx(onnx_folder)
    sampling = GenerationSettings(max_new_tokens=12, decoding="sampling", seed=3)
    first = onnx.generate_texts(PROMPTS[:2], sampling)
    assert first == onnx.generate_texts(PROMPTS[:2], sampling)
    other = onnx.generate_texts(PROMPTS[:2], sampling.model_copy(update={"seed": 4}))
    greedy = onnx.generate_texts(PROMPTS[:2], GREEDY.model_copy(update={"max_new_tokens": 12}))
    assert first != other or first != greedy


def test_onnx_stream_sends_deltas_that_add_up_and_honours_stop(onnx_folder: Path) -> None:
    onnx = load_onnx(onnx_folder)
    deltas: list[str] = []
    result = onnx.stream(PROMPTS[1], GREEDY, deltas.append)
    full = onnx.generate_texts([PROMPTS[1]], GREEDY)[0]  # type: ignore[index]
    assert "".join(deltas) == result.text == full[0]
    assert result.completion_tokens == full[1] and result.prompt_tokens > 5
    assert result.finish_reason == ("length" if full[2] == "length" else "stop")
    assert result.ttft_s <= result.seconds
    # A stop string cuts the answer there (not included) and ends it early.
    word = full[0].strip().split()[1] if len(full[0].split()) > 1 else full[0].strip()[:2]
    cut: list[str] = []
    stopped = onnx.stream(PROMPTS[1], GREEDY, cut.append, stop=[word])
    assert word not in stopped.text and "".join(cut) == stopped.text
    assert stopped.finish_reason == "stop" and full[0].startswith(stopped.text)
    # should_stop ends it after the first token.
    halted = onnx.stream(PROMPTS[1], GREEDY, lambda _d: None, should_stop=lambda: True)
    assert halted.completion_tokens == 1


def test_measure_reports_onnx_size_load_speed_and_rouge(onnx_folder: Path) -> None:
    from workers.ml.prompts import BuiltPrompt

    rows = [
        BuiltPrompt(index=i, line=i, input="x", text=p, reference="the agent answers", tokens=10)
        for i, p in enumerate(PROMPTS)
    ]
    assert isinstance(load_any(str(onnx_folder)), OnnxLoaded)
    m = measure(
        str(onnx_folder), size_bytes=7, prompts=rows, latency_prompt=PROMPTS[0], max_new_tokens=8
    )
    assert m.size_bytes == 7 and m.load_s > 0 and m.tokens_per_s > 0
    assert m.latency_tokens == 8  # the end token does not stop the fixed-length request
    assert m.rows == 4 and set(m.scores) == {"rouge1", "rouge2", "rougeL"}


def test_weight_only_int8_reloads_in_a_worker_and_generates_like_in_memory(
    tiny_folder: Path, tmp_path: Path, settings: Any
) -> None:
    from workers.ml.export.quantize import quantize_weight_only
    from workers.ml.export.variants import load_for_export
    from workers.ml.loading import LoadedModel

    full = build_variant("safetensors", str(tiny_folder), tmp_path / "full", card="# c")
    files = build_variant("int8_weight", str(tiny_folder), tmp_path / "w8", card="# c")
    assert weights_size(files) < weights_size(full)
    # Loaded the way every worker loads a model (the serving worker included).
    loaded = load(
        ModelSpec("local", str(tmp_path / "w8")), Path(settings.MODELS_DIR), keep_warm=False
    )
    model, tokenizer = load_for_export(str(tiny_folder))
    fresh = LoadedModel(quantize_weight_only(model), tokenizer, "cpu", str(tiny_folder), 4096)
    got = generate_batch(loaded, PROMPTS, GREEDY)
    want = generate_batch(fresh, PROMPTS, GREEDY)
    assert got is not None and want is not None
    assert [g.text for g in got] == [w.text for w in want]
    assert any(g.output_tokens > 0 for g in got)


def test_onnx_int8_is_block_wise_on_every_matmul_loads_and_generates(
    tiny_folder: Path, onnx_folder: Path, tmp_path: Path
) -> None:
    import json

    import onnx

    files = build_variant("onnx_int8", str(tiny_folder), tmp_path / "q", card="# c")
    fp32 = sum(p.stat().st_size for p in onnx_folder.glob(ONNX_NAME + "*"))
    assert weights_size(files) < fp32
    marker = json.loads((tmp_path / "q" / "lifecycle_onnx.json").read_text())
    assert marker["quantization"] == ONNX_INT8_METHOD and marker["excluded_nodes"] == []
    assert not (tmp_path / "q.fp32").exists()
    graph = onnx.load(str(tmp_path / "q" / ONNX_NAME), load_external_data=False).graph
    packed = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert packed and not [
        n
        for n in graph.node
        if n.op_type == "MatMul" and n.input[1] in {i.name for i in graph.initializer}
    ]  # every weight MatMul is int8, the logits' one included
    for node in packed:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, 64, 4)
    onnx_model = load_onnx(tmp_path / "q")
    out = onnx_model.generate_texts(PROMPTS, GREEDY)
    assert out is not None and all(n > 0 for _, n, _ in out)


def test_the_per_channel_scheme_the_bench_compares_keeps_lm_head_in_float_when_asked(
    onnx_folder: Path, tmp_path: Path
) -> None:
    marker = quantize_onnx_int8(
        onnx_folder, tmp_path / "pc", scheme="per_channel", keep_lm_head=True
    )
    assert marker["excluded_nodes"] == lm_head_nodes(onnx_folder / ONNX_NAME) != []
    assert load_onnx(tmp_path / "pc").generate_texts(PROMPTS, GREEDY) is not None


def test_an_onnx_bundle_serves_with_onnxruntime_alone_as_the_product_decodes(
    onnx_folder: Path, tmp_path: Path
) -> None:
    """The bundle's serve.py (onnxruntime, numpy and a tokenizer; no torch) gives the
    product's greedy tokens for the same prompt."""
    import json
    import zipfile

    from tests.unit.test_export_core import run_in_bundle
    from workers.ml.export.bundle import write_bundle

    with zipfile.ZipFile(write_bundle(onnx_folder, tmp_path / "bundle.zip")) as zf:
        names = set(zf.namelist())
        assert {"serve.py", "SERVING.md", "model/model.onnx", "model/lifecycle_onnx.json"} <= names
        assert "onnxruntime" in zf.read("SERVING.md").decode()
        zf.extractall(tmp_path / "unzipped")
    script = (
        "import json, sys\n"
        "sys.modules['torch'] = None  # serve.py must not need torch\n"
        "import serve\n"
        "tok, model = serve.load()\n"
        "print(json.dumps(serve.complete(tok, model, [{'role': 'user', 'content': 'Hello'}], 12)))"
    )
    done = run_in_bundle(tmp_path / "unzipped", "-c", script)
    assert done.returncode == 0, done.stderr
    text, prompt_tokens, n = json.loads(done.stdout.strip().splitlines()[-1])

    loaded = load_onnx(onnx_folder)
    messages = [{"role": "user", "content": "Hello"}]
    tok = loaded.tokenizer
    prompt = (
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if tok.chat_template
        else "Hello"
    )
    ids = loaded._encode(prompt)
    want = loaded.decode_ids([ids], GenerationSettings(max_new_tokens=12, decoding="greedy"))[0]
    assert (prompt_tokens, n) == (len(ids), len(want.ids))
    assert text == tok.decode(want.ids, skip_special_tokens=True)
