"""The artifact store (local folder and S3 through moto's server) and the workers' cache."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle_app.storage.base import MANIFEST, Store, StoreError, StoreMissing
from lifecycle_app.storage.cache import ContentCache
from lifecycle_app.storage.local import LocalStore
from lifecycle_app.storage.s3 import S3Store
from tests.s3server import CREDENTIALS, make_bucket, moto_server


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    old = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    with moto_server() as url:
        make_bucket(url, "artifacts")
        yield url
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "var")
    endpoint = request.getfixturevalue("endpoint")
    prefix = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    return S3Store(
        f"s3://artifacts/{prefix}",
        ContentCache(tmp_path / "cache", 10 * 1024 * 1024),
        endpoint_url=endpoint,
        region_name="us-east-1",
        timeout_s=5,
    )


def _folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"a": 1}')
    (root / "sub" / "weights.bin").write_bytes(os.urandom(3000))
    return root


def test_a_file_round_trips_with_its_size_and_listing(store: Store, tmp_path: Path) -> None:
    local = tmp_path / "data.jsonl"
    local.write_bytes(b'{"input": "x"}\n' * 100)

    store.put_file(local, "datasets/1/data.jsonl")

    assert store.exists("datasets/1/data.jsonl")
    assert store.fetch("datasets/1/data.jsonl").read_bytes() == local.read_bytes()
    assert store.size("datasets/1/data.jsonl") == local.stat().st_size
    assert store.list("datasets/1") == ["datasets/1/data.jsonl"]
    with store.open("datasets/1/data.jsonl") as fh:
        assert fh.read() == local.read_bytes()
    store.delete("datasets/1/data.jsonl")
    assert not store.exists("datasets/1/data.jsonl")
    with pytest.raises(StoreMissing, match=r"has no file datasets/1/data\.jsonl"):
        store.fetch("datasets/1/data.jsonl")


def test_a_folder_is_published_with_its_manifest_last(store: Store, tmp_path: Path) -> None:
    source = _folder(tmp_path / "final")

    manifest = store.put_dir(source, "jobs/7/attempt-1/run/final")
    fetched = store.fetch_dir("jobs/7/attempt-1/run/final")

    assert {f["path"] for f in manifest.files} == {"config.json", "sub/weights.bin"}
    assert (fetched / "sub" / "weights.bin").read_bytes() == (
        source / "sub" / "weights.bin"
    ).read_bytes()
    assert store.published_folders("jobs/7") == ["jobs/7/attempt-1/run/final"]
    assert store.size("jobs/7/attempt-1/run/final") == manifest.size
    store.delete("jobs/7/attempt-1/run/final")
    assert store.published_folders("jobs/7") == []


def test_a_folder_without_its_manifest_is_not_published_on_s3(
    endpoint: str, tmp_path: Path
) -> None:
    """A writer killed before the manifest leaves files that no reader sees."""
    s3 = S3Store(
        "s3://artifacts/half",
        ContentCache(tmp_path / "c", 10**7),
        endpoint_url=endpoint,
        timeout_s=5,
    )
    source = _folder(tmp_path / "ckpt")
    s3.put_file(source / "config.json", "jobs/1/checkpoints/step-5/config.json")

    assert s3.published_folders("jobs/1") == []
    with pytest.raises(StoreMissing):
        s3.fetch_dir("jobs/1/checkpoints/step-5")


def test_the_cache_serves_a_second_fetch_without_the_store(endpoint: str, tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", 10**7)
    s3 = S3Store("s3://artifacts/hit", cache, endpoint_url=endpoint, timeout_s=5)
    s3.put_dir(_folder(tmp_path / "m"), "models/m")

    first = s3.fetch_dir("models/m")
    second = s3.fetch_dir("models/m")

    assert first == second
    assert (cache.fills, cache.hits) == (1, 1)
    assert first.parent.name == "entries" and len(first.name) == 64  # keyed by content


def test_a_damaged_download_is_refused(endpoint: str, tmp_path: Path) -> None:
    s3 = S3Store(
        "s3://artifacts/bad",
        ContentCache(tmp_path / "c", 10**7),
        endpoint_url=endpoint,
        timeout_s=5,
    )
    source = _folder(tmp_path / "m")
    s3.put_dir(source, "models/m")
    (source / "config.json").write_text('{"a": 2}')  # same size, other bytes
    s3.client.upload_file(str(source / "config.json"), "artifacts", "bad/models/m/config.json")

    with pytest.raises(StoreError, match="damaged copy"):
        s3.fetch_dir("models/m")
    assert (
        not list((tmp_path / "c" / "entries").glob("*"))
        if (tmp_path / "c" / "entries").exists()
        else True
    )


def _fill(data: bytes) -> tuple[str, object]:
    digest = hashlib.sha256(data).hexdigest()

    def fill(tmp: Path) -> None:
        (tmp / "blob").write_bytes(data)

    return digest, fill


def test_the_cache_evicts_the_least_recently_used_entries(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, max_bytes=2500)
    blobs = [bytes([i]) * 1000 for i in range(3)]
    digests = []
    for i, data in enumerate(blobs[:2]):
        digest, fill = _fill(data)
        cache.entry(digest, fill)  # type: ignore[arg-type]
        os.utime(cache.entries / digest, (1000 + i, 1000 + i))
        digests.append(digest)
    cache.entry(digests[0], lambda tmp: None)  # a hit makes the first the most recent

    third, fill = _fill(blobs[2])
    cache.entry(third, fill)  # type: ignore[arg-type]

    assert sorted(p.name for p in cache.entries.iterdir()) == sorted([digests[0], third])
    assert cache.total_bytes() <= 2500


def test_concurrent_fills_of_one_entry_run_once(tmp_path: Path) -> None:
    data = b"x" * 5000
    digest = hashlib.sha256(data).hexdigest()
    calls = []
    barrier = threading.Barrier(4)

    def fill(tmp: Path) -> None:
        calls.append(1)
        (tmp / "blob").write_bytes(data)

    def worker() -> None:
        barrier.wait()
        assert (ContentCache(tmp_path, 10**6).entry(digest, fill) / "blob").read_bytes() == data

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(calls) == 1
    assert not any((tmp_path / "tmp").iterdir())  # no temporary folder left behind


def test_a_failed_fill_leaves_no_entry(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, max_bytes=10**6)
    digest = "a" * 64

    def fill(tmp: Path) -> None:
        (tmp / "half").write_bytes(b"x")
        raise OSError("store went away")

    with pytest.raises(OSError):
        cache.entry(digest, fill)
    assert not (cache.entries / digest).exists()


def test_a_store_that_is_down_fails_with_a_message_naming_it(tmp_path: Path) -> None:
    os.environ.update(CREDENTIALS)
    down = S3Store(
        "s3://artifacts/x",
        ContentCache(tmp_path / "c", 10**6),
        endpoint_url="http://127.0.0.1:9",  # nothing listens on the discard port
        timeout_s=1,
    )
    (tmp_path / "f").write_bytes(b"x")

    with pytest.raises(
        StoreError, match=r"The artifact store at s3://artifacts/x is not reachable"
    ):
        down.put_file(tmp_path / "f", "a/f")
    with pytest.raises(StoreError, match="not reachable"):
        down.fetch_dir("a")


def test_a_full_local_store_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import shutil

    store = LocalStore(tmp_path / "var")
    (tmp_path / "f").write_bytes(b"x")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(StoreError, match=r"is full: the file a/f was not saved"):
        store.put_file(tmp_path / "f", "a/f")
    assert not (tmp_path / "var" / "a" / "f").exists()
    assert [p.name for p in (tmp_path / "var" / "a").iterdir()] == []  # no temporary file


def test_the_local_store_publishes_in_place_without_copying(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    final = _folder(tmp_path / "jobs" / "3" / "final")
    inode = (final / "config.json").stat().st_ino

    store.put_dir(final, "jobs/3/final")

    assert (final / MANIFEST).is_file()
    assert (final / "config.json").stat().st_ino == inode
    assert store.fetch_dir("jobs/3/final") == final
