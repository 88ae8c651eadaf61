"""The download bundle: a variant's folder zipped as model/ with `serve.py` (a minimal
server that needs only torch and transformers, or onnxruntime for an ONNX variant) and
`SERVING.md`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

# --- the download bundle ---------------------------------------------------------------

# The bundle's `serve.py` is put together from these pieces: a PyTorch one for every
# variant transformers loads, an onnxruntime one for ONNX variants. Both answer the same
# CLI and HTTP API, and both put the user's text into the model's prompt template.

_USAGE = '''
    python serve.py                      # http://127.0.0.1:8080/v1/chat/completions
    python serve.py --prompt "Hello"     # one generation, printed

POST JSON {"messages": [{"role": "user", "content": "..."}], "max_tokens": 64}
and get an OpenAI-style chat.completion back.
"""

import argparse
import json
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

'''

_TORCH_DOC = '''"""Serve this model over HTTP with plain transformers (and torch).

    pip install "torch>=2.2" "transformers>=4.45" safetensors'''

_ONNX_DOC = '''"""Serve this ONNX model over HTTP with onnxruntime (no torch needed).

    pip install "onnxruntime>=1.20" "transformers>=4.45" numpy'''

_HERE = """HERE = Path(__file__).resolve().parent / "model"


"""

_TORCH_IMPORTS = """import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

"""

_TORCH_LOAD = """def load(folder=HERE):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    marker = folder / "lifecycle_int8.json"
    if marker.is_file() and json.loads(marker.read_text()).get("weights"):
        # int8 weight-only (needs `pip install torchao`): rebuild, quantize, load.
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        config = AutoConfig.from_pretrained(folder)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.tie_weights()
        quantize_(model, Int8WeightOnlyConfig())
        state = torch.load(folder / json.loads(marker.read_text())["weights"], weights_only=False)
        model.load_state_dict(state, assign=True)
    elif marker.is_file():
        # int8 dynamic quantization: rebuild, quantize the Linear layers, load the weights.
        config = AutoConfig.from_pretrained(folder)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.tie_weights()
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.load_state_dict(torch.load(folder / "model_int8.pt", weights_only=False))
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return tokenizer, model.eval()


def complete(tokenizer, model, messages, max_tokens=64):
    messages = with_template(messages)
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\\n".join(m["content"] for m in messages)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                             repetition_penalty=1.1)
    new = out[0, inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True), int(inputs["input_ids"].shape[1]), len(new)
"""

_ONNX_IMPORTS = """import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

"""

_ONNX_LOAD = """def load(folder=HERE):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    marker = json.loads((folder / "lifecycle_onnx.json").read_text())
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    eos = tokenizer.eos_token_id
    config = folder / "generation_config.json"
    if config.is_file() and json.loads(config.read_text()).get("eos_token_id") is not None:
        eos = json.loads(config.read_text())["eos_token_id"]
    eos = set(eos if isinstance(eos, list) else [eos])
    return tokenizer, (session, marker, eos)


def complete(tokenizer, model, messages, max_tokens=64):
    # The graph takes the past keys and values of every layer; the past is never empty:
    # one masked slot ("sink") comes first, as in the export. Greedy, repetition penalty 1.1.
    session, marker, eos = model
    messages = with_template(messages)
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\\n".join(m["content"] for m in messages)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    names = [f"past_{kind}_{i}" for i in range(marker["layers"]) for kind in ("key", "value")]
    shape = (1, marker["kv_heads"], marker["sink"], marker["head_dim"])
    past = {name: np.zeros(shape, dtype=np.float32) for name in names}
    step = np.array([ids], dtype=np.int64)
    positions = np.arange(len(ids), dtype=np.int64)[None, :]
    mask = np.array([[0] * marker["sink"] + [1] * len(ids)], dtype=np.int64)
    seen, new = list(ids), []
    for _ in range(max_tokens):
        results = session.run(None, {"input_ids": step, "attention_mask": mask,
                                     "position_ids": positions, **past})
        logits = results[0][0, -1].astype(np.float32)
        past = dict(zip(names, results[1:]))
        picked = logits[seen]
        logits[seen] = np.where(picked < 0, picked * 1.1, picked / 1.1)
        token = int(np.argmax(logits))
        new.append(token)
        if token in eos:
            break
        seen.append(token)
        step = np.array([[token]], dtype=np.int64)
        positions = positions[:, -1:] + 1
        mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
    return tokenizer.decode(new, skip_special_tokens=True), len(ids), len(new)
"""

_WITH_TEMPLATE = '''def with_template(messages, folder=HERE):
    """The last user message put into the prompt template the model was trained with
    (model/prompt_template.json, when the export had one), as Lifecycle Studio serves it."""
    path = folder / "prompt_template.json"
    if not path.is_file() or not any(m["role"] == "user" for m in messages):
        return messages
    template = json.loads(path.read_text())
    values = {"instruction": template.get("instruction", ""), "examples": ""}
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    values["input"] = messages[last]["content"]
    filled = re.sub(r"\\{([A-Za-z_][A-Za-z0-9_]*)\\}",
                    lambda m: values.get(m.group(1), m.group(0)), template["body"])
    return messages[:last] + [{"role": "user", "content": filled}] + messages[last + 1:]
'''

_MAIN = """def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--prompt")
    args = parser.parse_args()
    tokenizer, model = load()
    if args.prompt:
        print(complete(tokenizer, model, [{"role": "user", "content": args.prompt}])[0])
        return

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
            text, prompt_tokens, n = complete(tokenizer, model, messages, int(body.get("max_tokens", 64)))
            reply = json.dumps({
                "object": "chat.completion", "created": int(time.time()), "model": HERE.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "length" if n >= int(body.get("max_tokens", 64)) else "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                          "total_tokens": prompt_tokens + n},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    print(f"Serving on http://{args.host}:{args.port}/v1/chat/completions")
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
"""

SERVE_SCRIPT = "\n\n".join(
    [_TORCH_DOC + _USAGE + _TORCH_IMPORTS + _HERE + _WITH_TEMPLATE, _TORCH_LOAD, _MAIN]
)
ONNX_SERVE_SCRIPT = "\n\n".join(
    [_ONNX_DOC + _USAGE + _ONNX_IMPORTS + _HERE + _WITH_TEMPLATE, _ONNX_LOAD, _MAIN]
)


def _run_block(pip: str) -> str:
    return f"""```sh
python -m venv .venv && . .venv/bin/activate
pip install {pip}
python serve.py --prompt "A: Lunch at noon? B: Sure, see you then."
python serve.py --port 8080
curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{{"messages": [{{"role": "user", "content": "Hello"}}], "max_tokens": 32}}'
```"""


_TEMPLATE_NOTE = """When the model was trained (or measured) with a prompt template, `model/prompt_template.json`
holds it and `serve.py` puts the user's last message into it, so send the user's text
only; the model card shows the template. Your own code should do the same."""

SERVING_DOC = f"""# Serving this model

This bundle holds the model (`model/`), its model card (`model/README.md`) and
`serve.py`, a minimal server that needs only torch and transformers:

{_run_block('"torch>=2.2" "transformers>=4.45" safetensors')}

{_TEMPLATE_NOTE}

In your own code:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("model")
model = AutoModelForCausalLM.from_pretrained("model")
```

(An int8 variant holds `model_int8.pt` instead of safetensors: use `serve.load()`, which
rebuilds the model from its config and applies the same quantization.)
"""

ONNX_SERVING_DOC = f"""# Serving this ONNX model

This bundle holds the model as an ONNX graph with a KV cache (`model/model.onnx` and its
weights file), its tokenizer, its model card (`model/README.md`) and `serve.py`, a minimal
server that needs only onnxruntime, numpy and transformers (for the tokenizer; no torch):

{_run_block('"onnxruntime>=1.20" "transformers>=4.45" numpy')}

The graph's inputs are `input_ids`, `attention_mask`, `position_ids` and, per layer,
`past_key_<i>` and `past_value_<i>` (batch, KV heads, past length, head size); its outputs
are the logits and the present keys and values. The past is never empty: the first call
passes one zero slot that the attention mask hides (`model/lifecycle_onnx.json` gives the
layer count and shapes); `serve.py`'s `complete` shows the whole loop.

{_TEMPLATE_NOTE}
"""


def write_bundle(folder: Path, target: Path) -> Path:
    """Zip `folder` as model/ with serve.py and SERVING.md; written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            # Weights barely compress and would take most of the time: store them.
            stored = path.suffix in (".safetensors", ".pt", ".onnx", ".data", ".bin")
            zf.write(
                path,
                f"model/{path.relative_to(folder).as_posix()}",
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
        onnx = (folder / "lifecycle_onnx.json").is_file()
        zf.writestr("serve.py", ONNX_SERVE_SCRIPT if onnx else SERVE_SCRIPT)
        zf.writestr("SERVING.md", ONNX_SERVING_DOC if onnx else SERVING_DOC)
    tmp.replace(target)
    return target
