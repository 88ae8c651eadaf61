"""The S3-compatible store (AWS S3, MinIO, SeaweedFS, Garage, moto's server).

django-storages' S3Storage (1.14.6) holds the configuration and the boto3 connection and
answers exists/size/delete; boto3's own client (the one S3Storage opened) does what the
Storage API lacks: multipart uploads of large files with user metadata (boto3's
`upload_file`), prefix listing, and streaming reads. s3fs was not used: its releases that
support this boto3 (1.44) do not resolve against aiobotocore's pins.

Every object carries its sha256 in its metadata, so a worker's cache (cache.py) finds it by
content. A single PUT (and a completed multipart upload) is atomic in S3; a folder is its
files plus a manifest uploaded last (base.py). Every call has a connect and a read timeout
and at most two attempts, so a store that is down or slow fails a job within seconds to a
minute with a message that names it, instead of hanging the worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from lifecycle_app.storage.base import (
    MANIFEST,
    Manifest,
    Store,
    StoreError,
    StoreMissing,
    check_key,
    sha256_of,
)
from lifecycle_app.storage.cache import ContentCache

MULTIPART_THRESHOLD = 64 * 1024 * 1024
_FULL = {
    "EntityTooLarge",
    "QuotaExceeded",
    "InsufficientStorage",
    "XMinioStorageFull",
    "StorageFull",
}
_SLOW = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "503", "InternalError", "500"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def parse_url(url: str) -> tuple[str, str]:
    """("bucket", "prefix") of s3://bucket/prefix."""
    if not url.startswith("s3://"):
        raise ValueError(f"Not an s3:// URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"No bucket in {url!r}")
    return bucket, prefix.strip("/")


class S3Store(Store):
    def __init__(
        self,
        url: str,
        cache: ContentCache,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        from botocore.config import Config
        from storages.backends.s3 import S3Storage

        self.bucket, self.prefix = parse_url(url)
        self.url = url.rstrip("/")
        self.cache = cache
        self.storage = S3Storage(
            bucket_name=self.bucket,
            location=self.prefix,
            endpoint_url=endpoint_url,
            region_name=region_name,
            file_overwrite=True,
            client_config=Config(
                connect_timeout=min(5.0, timeout_s),
                read_timeout=timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
                signature_version="s3v4",
            ),
        )
        self.client: Any = self.storage.connection.meta.client

    # --- names and errors

    def _name(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate boto3's failures into messages that name the store."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ReadTimeoutError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise StoreMissing(
                    f"The artifact store at {self.url} has no {what.removeprefix('the ')}."
                ) from exc
            if code in _FULL:
                raise StoreError(
                    f"The artifact store at {self.url} is full: {what} was not saved."
                ) from exc
            if code in _SLOW:
                raise StoreError(
                    f"The artifact store at {self.url} is overloaded or too slow ({code}) "
                    f"for {what}; try again later."
                ) from exc
            raise StoreError(f"The artifact store at {self.url} refused {what} ({code}).") from exc
        except S3UploadFailedError as exc:
            text = str(exc)
            full = any(code in text for code in _FULL)
            raise StoreError(
                f"The artifact store at {self.url} "
                + (f"is full: {what} was not saved." if full else f"refused {what}: {text}")
            ) from exc
        except ReadTimeoutError as exc:
            raise StoreError(
                f"The artifact store at {self.url} is too slow: {what} timed out."
            ) from exc
        except (BotoConnectionError, BotoCoreError) as exc:
            raise StoreError(
                f"The artifact store at {self.url} is not reachable ({type(exc).__name__}) "
                f"for {what}."
            ) from exc

    # --- writes

    def _upload(self, local: Path, name: str, sha: str) -> None:
        from boto3.s3.transfer import TransferConfig

        self.client.upload_file(
            str(local),
            self.bucket,
            name,
            ExtraArgs={"Metadata": {"sha256": sha}},
            Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=True),
        )

    def put_file(self, local: Path, key: str) -> None:
        with self._errors(f"the file {key}"):
            self._upload(local, self._name(key), sha256_of(local))

    def put_dir(self, local: Path, key: str) -> Manifest:
        manifest = Manifest.of_folder(local)
        base = self._name(key)
        with self._errors(f"the folder {key}"):
            # Unpublish an older version first: its manifest must not name replaced files.
            self.client.delete_object(Bucket=self.bucket, Key=f"{base}/{MANIFEST}")
            for item in manifest.files:
                self._upload(local / item["path"], f"{base}/{item['path']}", item["sha256"])
            self.client.put_object(
                Bucket=self.bucket, Key=f"{base}/{MANIFEST}", Body=manifest.to_bytes()
            )
        return manifest

    # --- reads

    def _download(self, name: str, target: Path, sha: str | None, what: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(what):
            self.client.download_file(self.bucket, name, str(target))
        if sha and sha256_of(target) != sha:
            raise StoreError(
                f"The artifact store at {self.url} returned a damaged copy of {what} "
                "(its checksum does not match)."
            )

    def fetch(self, key: str) -> Path:
        name = self._name(key)
        with self._errors(f"the file {key}"):
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        sha = head.get("Metadata", {}).get("sha256")
        if not sha:  # written by another tool: the ETag stands in for the content
            import hashlib

            sha = hashlib.sha256(f"{name}:{head.get('ETag')}".encode()).hexdigest()
        basename = Path(key).name
        entry = self.cache.entry(
            sha,
            lambda tmp: self._download(
                name, tmp / basename, head.get("Metadata", {}).get("sha256"), f"the file {key}"
            ),
        )
        return entry / basename

    def read_manifest(self, key: str) -> Manifest:
        with self._errors(f"the folder {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=f"{self._name(key)}/{MANIFEST}")
            return Manifest.from_bytes(body["Body"].read())

    def fetch_dir(self, key: str) -> Path:
        manifest = self.read_manifest(key)
        base = self._name(key)

        def fill(tmp: Path) -> None:
            for item in manifest.files:
                self._download(
                    f"{base}/{item['path']}",
                    tmp / item["path"],
                    item["sha256"],
                    f"{key}/{item['path']}",
                )
            (tmp / MANIFEST).write_bytes(manifest.to_bytes())

        return self.cache.entry(manifest.digest, fill)

    def exists(self, key: str) -> bool:
        key = check_key(key)
        with self._errors(f"the key {key}"):
            return bool(self.storage.exists(key) or self.storage.exists(f"{key}/{MANIFEST}"))

    def delete(self, key: str) -> None:
        with self._errors(f"the key {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=f"{self._name(key)}/{MANIFEST}")
            names = [self._name(k) for k in self.list(key)]
            for i in range(0, len(names), 1000):
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": n} for n in names[i : i + 1000]], "Quiet": True},
                )
            self.storage.delete(key)

    def list(self, prefix: str) -> list[str]:
        stem = self._name(prefix) if prefix.strip("/") else self.prefix
        found: list[str] = []
        with self._errors(f"the listing of {prefix or '/'}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{stem}/" if stem else ""
            )
            for page in pages:
                found.extend(self._key(item["Key"]) for item in page.get("Contents", []))
            if prefix.strip("/") and self.storage.exists(check_key(prefix)):
                found.append(check_key(prefix))
        return sorted(found)

    def size(self, key: str) -> int:
        with self._errors(f"the key {key}"):
            if self.storage.exists(key):
                return int(self.storage.size(key))
        return self.read_manifest(key).size

    def open(self, key: str) -> BinaryIO:
        with self._errors(f"the file {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        return cast(BinaryIO, body)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (development servers start empty)."""
        with self._errors(f"the bucket {self.bucket}"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except Exception:
                self.client.create_bucket(Bucket=self.bucket)
