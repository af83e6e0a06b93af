"""Blobs in an S3-compatible object store (boto3): `{prefix}objects/ab/cd/<sha256>`.

Bytes are hashed while they are staged in a local temporary file; only a blob whose digest and
size check out is uploaded, so a failed upload never becomes visible. Objects are written once
under their content address, which makes every PUT idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kaiyuan.core.errors import BlobNotFoundError, InvalidInputError, StorageUnavailableError
from kaiyuan.core.ids import validate_sha256
from kaiyuan.core.models import BlobInfo
from kaiyuan.storage.blobs.staging import Publish, StagedWriter, sweep_files
from kaiyuan.storage.blobs.verify import check_upload_id

READ_PIECE = 8 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}
_TRANSFER = TransferConfig(
    multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024, max_concurrency=4
)


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Store trouble becomes StorageUnavailable; a missing object becomes BlobNotFound."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise BlobNotFoundError(f"{what} is not stored") from None
        raise StorageUnavailableError(f"object store refused {what}: {code}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailableError(f"object store unreachable for {what}: {exc}") from exc


class S3BlobStore:
    """Content-addressed blobs in one bucket of an S3-compatible service."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        prefix: str,
        staging: Path,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.staging = staging
        staging.mkdir(parents=True, exist_ok=True)
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def ensure_bucket(self) -> None:
        with _storage_errors(f"bucket {self.bucket}"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) not in _MISSING:
                    raise
                self._client.create_bucket(Bucket=self.bucket)

    # --- keys --------------------------------------------------------------------------------
    def _key(self, sha256: str) -> str:
        validate_sha256(sha256)
        return f"{self.prefix}objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _part_key(self, upload_id: str, part_number: int) -> str:
        return f"{self.prefix}parts/{check_upload_id(upload_id)}/{part_number}"

    def upload(self, path: Path, key: str) -> None:
        with _storage_errors(f"object {key}"):
            if path.stat().st_size < _TRANSFER.multipart_threshold:
                # One PUT: the transfer manager's thread pool costs more than small files take.
                with path.open("rb") as body:
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
            else:
                self._client.upload_file(str(path), self.bucket, key, Config=_TRANSFER)

    # --- BlobStore ---------------------------------------------------------------------------
    def writer(self) -> StagedWriter:
        return StagedWriter(self.staging, self._upload_as(self._key), fsync=False)

    def _upload_as(self, key_of: Callable[[str], str]) -> Publish:
        return lambda staged, digest: self.upload(staged, key_of(digest))

    def exists(self, sha256: str) -> bool:
        try:
            self.stat(sha256)
        except BlobNotFoundError:
            return False
        return True

    def _head(self, sha256: str) -> dict[str, Any]:
        with _storage_errors(f"blob {sha256}"):
            head: dict[str, Any] = self._client.head_object(
                Bucket=self.bucket, Key=self._key(sha256)
            )
            return head

    def stat(self, sha256: str) -> BlobInfo:
        return BlobInfo(sha256, int(self._head(sha256)["ContentLength"]))

    def modified_at(self, sha256: str) -> float:
        return float(self._head(sha256)["LastModified"].timestamp())

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = self._key(sha256)
        if end is not None and end <= start:
            self.stat(sha256)  # still say whether it exists
            return iter(())
        wanted = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        with _storage_errors(f"blob {sha256}"):
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) == "InvalidRange":
                    return iter(())  # the range starts at or past the end
                raise
        return self._stream(answer["Body"], sha256)

    def _stream(self, body: Any, sha256: str) -> Iterator[bytes]:
        with contextlib.closing(body), _storage_errors(f"blob {sha256}"):
            yield from body.iter_chunks(chunk_size=READ_PIECE)

    def local_path(self, sha256: str) -> Path | None:
        del sha256
        return None

    def delete(self, sha256: str) -> None:
        with _storage_errors(f"blob {sha256}"):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def iter_digests(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}objects/"
        )
        with _storage_errors("the blob listing"):
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"]).rsplit("/", 1)[-1]

    def write_part(self, upload_id: str, part_number: int) -> StagedWriter:
        if part_number < 1:
            raise InvalidInputError("part numbers start at 1")
        key = self._part_key(upload_id, part_number)
        return StagedWriter(self.staging, self._upload_as(lambda _digest: key), fsync=False)

    def complete_parts(
        self, upload_id: str, part_count: int, expected_sha256: str, expected_size: int
    ) -> BlobInfo:
        keys = [self._part_key(upload_id, n) for n in range(1, part_count + 1)]
        missing = [str(n) for n, key in enumerate(keys, 1) if not self._has(key)]
        if missing:
            raise InvalidInputError(f"multipart upload is missing part(s) {', '.join(missing)}")
        writer = self.writer()
        try:
            for key in keys:
                with _storage_errors(f"part {key}"):
                    body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
                for piece in self._stream(body, key):
                    writer.write(piece)
            return writer.commit(expected_sha256, expected_size)
        finally:
            writer.abort()
            for key in keys:
                with (
                    contextlib.suppress(BlobNotFoundError, StorageUnavailableError),
                    _storage_errors(key),
                ):
                    self._client.delete_object(Bucket=self.bucket, Key=key)

    def sweep_abandoned(self, cutoff: float) -> int:
        freed = sweep_files(self.staging.iterdir(), cutoff)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}parts/"
        )
        with _storage_errors("the part listing"):
            for page in pages:
                for item in page.get("Contents", []):
                    if item["LastModified"].timestamp() < cutoff:
                        self._client.delete_object(Bucket=self.bucket, Key=item["Key"])
                        freed += int(item["Size"])
        return freed

    def _has(self, key: str) -> bool:
        try:
            with _storage_errors(key):
                self._client.head_object(Bucket=self.bucket, Key=key)
        except BlobNotFoundError:
            return False
        return True
