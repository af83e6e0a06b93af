"""What a file's first bytes say it is, whatever its name."""

from __future__ import annotations

import enum

HEAD_BYTES = 512  # a tar header says `ustar` at byte 257


class Kind(enum.Enum):
    GGUF = "gguf"
    ZIP = "zip"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"
    TAR = "tar"
    NPY = "npy"
    PICKLE = "pickle"  # protocol 2 and later announce themselves
    SAFETENSORS = "safetensors"
    IMAGE = "image"
    OTHER = "other"  # text, an old-protocol pickle, or an unknown binary: decided by reading


_MAGICS: tuple[tuple[bytes, Kind], ...] = (
    (b"GGUF", Kind.GGUF),
    (b"PK\x03\x04", Kind.ZIP),
    (b"PK\x05\x06", Kind.ZIP),  # an empty archive
    (b"\x1f\x8b", Kind.GZIP),
    (b"BZh", Kind.BZIP2),
    (b"\xfd7zXZ\x00", Kind.XZ),
    (b"\x28\xb5\x2f\xfd", Kind.ZSTD),
    (b"\x93NUMPY", Kind.NPY),
    (b"\x89PNG\r\n\x1a\n", Kind.IMAGE),
    (b"\xff\xd8\xff", Kind.IMAGE),
    (b"GIF87a", Kind.IMAGE),
    (b"GIF89a", Kind.IMAGE),
)
_PICKLE_PROTOCOLS = range(2, 6)
_JSON_START = frozenset(b"{ \t\r\n")


def sniff(head: bytes, size: int) -> Kind:
    """The kind of content that starts with `head` (its first HEAD_BYTES) and has `size` bytes."""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    if head[257:262] == b"ustar":
        return Kind.TAR
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Kind.IMAGE
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:  # noqa: PLR2004
        return Kind.PICKLE
    if len(head) > 8 and head[8] in _JSON_START:  # noqa: PLR2004
        header = int.from_bytes(head[:8], "little")
        if 0 < header <= size - 8:
            return Kind.SAFETENSORS  # an 8-byte length, then what should be a JSON object
    return Kind.OTHER
