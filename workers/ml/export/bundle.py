"""The download bundle: a variant's folder zipped as model/ with `serve.py` (a minimal
server that needs only torch and transformers) and `SERVING.md`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

# --- the download bundle ---------------------------------------------------------------

SERVE_SCRIPT = '''"""Serve this model over HTTP with plain transformers (and torch).

    pip install "torch>=2.2" "transformers>=4.45" safetensors
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

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

HERE = Path(__file__).resolve().parent / "model"


def load(folder=HERE):
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


def with_template(messages, folder=HERE):
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


def main():
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
'''

SERVING_DOC = """# Serving this model

This bundle holds the model (`model/`), its model card (`model/README.md`) and
`serve.py`, a minimal server that needs only torch and transformers:

```sh
python -m venv .venv && . .venv/bin/activate
pip install "torch>=2.2" "transformers>=4.45" safetensors
python serve.py --prompt "A: Lunch at noon? B: Sure, see you then."
python serve.py --port 8080
curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32}'
```

When the model was trained (or measured) with a prompt template, `model/prompt_template.json`
holds it and `serve.py` puts the user's last message into it, so send the user's text
only; the model card shows the template. Your own code should do the same.

In your own code:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("model")
model = AutoModelForCausalLM.from_pretrained("model")
```

(An int8 variant holds `model_int8.pt` instead of safetensors: use `serve.load()`, which
rebuilds the model from its config and applies the same dynamic quantization.)
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
        zf.writestr("serve.py", SERVE_SCRIPT)
        zf.writestr("SERVING.md", SERVING_DOC)
    tmp.replace(target)
    return target
