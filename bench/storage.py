"""Artifact store throughput and the cost of loading a model through the workers' cache.

Runs standalone: `LIFECYCLE_MODELS_DIR=/path/to/models .venv/bin/python bench/storage.py`
(the models folder that holds the converted bundled model; `manage.py prepare_models`
writes it). In a temporary folder, with moto's S3 server on 127.0.0.1 in this process:

- a 128 MB file: plain `shutil.copyfile` (the baseline), then upload (`put_file`) and
  download through each store: the local folder (temporary file + `os.replace`), and S3
  (boto3 multipart upload with the sha256 in the metadata; a cold-cache `fetch`, which
  downloads into the content-hash cache and verifies the checksum);
- a LoRA-sized checkpoint folder (adapter, optimizer and scheduler state, about 6 MB as
  the bundled model's r=8 q/v LoRA writes) published to S3: the time training waits at a
  save step (workers/tasks/training.py uploads synchronously);
- the bundled model published to S3 and fetched once (cold), then loaded with
  transformers from the cache entry (a cache hit: a manifest read, then the model's
  files where they lie) against loading it from its own local folder. Alternating, three
  times each, medians. `cache_load_ratio` = cache-hit load / local-folder load (goal
  <= 1.2).

moto keeps objects in memory and talks plain HTTP on loopback, so its MB/s say what the
client side costs (hashing, HTTP, temporary files), not what a real S3 or MinIO would do.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
SIZE = 128 * MB


def _rate(seconds: float, size: int = SIZE) -> float:
    return size / MB / seconds


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def _read_all(stream: object) -> None:
    while stream.read(4 * MB):  # type: ignore[attr-defined]
        pass


def main() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure()  # django-storages reads its defaults through Django settings
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from lifecycle_app.storage.cache import ContentCache
    from lifecycle_app.storage.local import LocalStore
    from lifecycle_app.storage.s3 import S3Store
    from tests.s3server import make_bucket, moto_server
    from workers.ml.bundled import BUNDLED_DIRNAME

    models_dir = Path(os.environ.get("LIFECYCLE_MODELS_DIR") or ROOT / "var" / "models")
    bundled = models_dir / BUNDLED_DIRNAME
    if not (bundled / "config.json").is_file():
        sys.exit(f"No converted bundled model at {bundled}: run `manage.py prepare_models`.")

    with tempfile.TemporaryDirectory() as tmp_name, moto_server() as endpoint:
        tmp = Path(tmp_name)
        make_bucket(endpoint, "bench")
        payload = tmp / "payload.bin"
        with payload.open("wb") as fh:
            for _ in range(SIZE // MB):
                fh.write(os.urandom(MB))

        copy_s = _timed(lambda: shutil.copyfile(payload, tmp / "copy.bin"))
        (tmp / "copy.bin").unlink()

        local = LocalStore(tmp / "store")
        local_up = _timed(lambda: local.put_file(payload, "bench/payload.bin"))
        local_down = _timed(lambda: _read_all(local.open("bench/payload.bin")))

        cache = ContentCache(tmp / "cache", 8 * 1024 * MB)
        s3 = S3Store("s3://bench/studio", cache, endpoint_url=endpoint, timeout_s=120)
        s3_up = _timed(lambda: s3.put_file(payload, "bench/payload.bin"))
        s3_down = _timed(lambda: s3.fetch("bench/payload.bin"))  # cold: download + sha256
        s3_hit = _timed(lambda: s3.fetch("bench/payload.bin"))
        payload.unlink()

        checkpoint = tmp / "step-10"
        (checkpoint / "adapter").mkdir(parents=True)
        (checkpoint / "adapter" / "adapter_model.safetensors").write_bytes(os.urandom(1_843_200))
        (checkpoint / "optimizer.pt").write_bytes(os.urandom(3_700_000))
        for name in ("scheduler.pt", "rng.pt", "state.json"):
            (checkpoint / name).write_bytes(os.urandom(2_000))
        checkpoint_s = statistics.median(
            _timed(lambda i=i: s3.put_dir(checkpoint, f"jobs/1/run/checkpoints/step-{i}"))
            for i in range(5)
        )

        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        publish_s = _timed(lambda: s3.put_dir(bundled, "models/bundled"))
        cold_s = _timed(lambda: s3.fetch_dir("models/bundled"))

        def load_local() -> None:
            AutoModelForCausalLM.from_pretrained(str(bundled), local_files_only=True)

        def load_cached() -> None:
            folder = s3.fetch_dir("models/bundled")  # a hit: the manifest, then the entry
            AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)

        load_local()  # warm the page cache and the imports for both sides
        load_cached()
        local_times, cached_times = [], []
        for _ in range(3):
            local_times.append(_timed(load_local))
            cached_times.append(_timed(load_cached))
        local_load, cached_load = statistics.median(local_times), statistics.median(cached_times)

    model_mb = sum(p.stat().st_size for p in bundled.rglob("*") if p.is_file()) / MB
    print(f"payload {SIZE // MB} MB: plain copy {_rate(copy_s):.0f} MB/s")
    print(f"local store: upload {_rate(local_up):.0f} MB/s, download {_rate(local_down):.0f} MB/s")
    print(
        f"S3 (moto): upload {_rate(s3_up):.0f} MB/s, cold download {_rate(s3_down):.0f} MB/s, "
        f"cache hit {s3_hit * 1000:.1f} ms"
    )
    print(f"LoRA-sized checkpoint (5.5 MB) to S3: {checkpoint_s * 1000:.0f} ms (median of 5)")
    print(
        f"bundled model ({model_mb:.0f} MB): publish {publish_s:.1f} s, cold fetch {cold_s:.1f} s; "
        f"load from local folder {local_load:.3f} s, through a cache hit {cached_load:.3f} s"
    )
    print(
        f"RESULT copy_mb_s={_rate(copy_s):.0f} local_up_mb_s={_rate(local_up):.0f} "
        f"local_down_mb_s={_rate(local_down):.0f} s3_up_mb_s={_rate(s3_up):.0f} "
        f"s3_down_mb_s={_rate(s3_down):.0f} checkpoint_upload_ms={checkpoint_s * 1000:.0f} "
        f"cache_load_ratio={cached_load / local_load:.2f}"
    )


if __name__ == "__main__":
    main()
