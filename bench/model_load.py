"""How long the bundled model takes to become usable: GGUF vs the safetensors cache.

Runs standalone: `.venv/bin/python bench/model_load.py`. Into a fresh temporary folder it
(1) loads the GGUF directly, the baseline every load would pay without the cache,
(2) converts it into the safetensors cache (first run of a fresh install), and
(3) loads from that cache three times (median), the path every worker takes afterwards.
Imports of torch/transformers are warmed first so only loading is timed.
Target (issue 2): cached load under 2 s on a 2-core CPU machine.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import transformers

from workers.ml import bundled, loading


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    gguf = bundled.bundled_gguf_path()
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp)

        def load_gguf() -> None:
            transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            transformers.AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )

        gguf_load_s = timed(load_gguf)
        first_conversion_s = timed(
            lambda: bundled.convert_bundled(models_dir / bundled.BUNDLED_DIRNAME)
        )
        cached: list[float] = []
        for _ in range(3):
            loading._cache.clear()  # force a real load each time
            cached.append(
                timed(lambda: loading.load(loading.ModelSpec("bundled"), models_dir, device="cpu"))
            )
        cached_load_s = statistics.median(cached)
    print(f"GGUF load (baseline, no cache): {gguf_load_s:.2f} s")
    print(f"first conversion to safetensors: {first_conversion_s:.2f} s")
    print(f"cached loads: {', '.join(f'{c:.2f}' for c in cached)} s (median {cached_load_s:.2f} s)")
    print(
        f"speed-up over GGUF: {gguf_load_s / cached_load_s:.1f}x; target cached < 2 s: "
        f"{'met' if cached_load_s < 2 else 'NOT met'}"
    )
    print(
        f"RESULT first_conversion_s={first_conversion_s:.2f} cached_load_s={cached_load_s:.3f} "
        f"gguf_load_s={gguf_load_s:.2f} speedup={gguf_load_s / cached_load_s:.1f}"
    )


if __name__ == "__main__":
    main()
