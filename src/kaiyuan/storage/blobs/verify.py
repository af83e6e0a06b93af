"""The digest and size check every blob store applies before a blob becomes visible."""

from __future__ import annotations

import re

from kaiyuan.core.errors import IntegrityError, InvalidInputError

_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def check_blob(
    actual_sha256: str, actual_size: int, expected_sha256: str | None, expected_size: int | None
) -> None:
    if expected_size is not None and actual_size != expected_size:
        raise IntegrityError(
            f"size mismatch: received {actual_size} bytes, announced {expected_size}"
        )
    if expected_sha256 is not None and actual_sha256 != expected_sha256:
        raise IntegrityError(
            f"sha256 mismatch: received content hashes to {actual_sha256}, "
            f"announced {expected_sha256}"
        )


def check_upload_id(upload_id: str) -> str:
    """Upload ids name staging folders: a safe alphabet only."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
        raise InvalidInputError("invalid upload id")
    return upload_id
