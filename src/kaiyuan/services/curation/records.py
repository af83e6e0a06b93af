"""Reading contributed data files as text records: JSON Lines, Parquet and plain text.

Files are read as streams (Parquet by row group), never whole. Each record is its text and its
row number in the file, so every output record can name where it came from. A file that is
not what its name says, a row that is not a JSON object, or a text field that is missing or not
a string is an InvalidInputError naming the file and row: contributions are checked with the
same reader when they arrive, so a curation run meets only files that passed it.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from kaiyuan.core.errors import InvalidInputError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 4 * 1024 * 1024


def is_data_file(path: str) -> bool:
    return path.lower().endswith(DATA_SUFFIXES)


def read_records(
    path: str, stream: IO[bytes], text_field: str = "text"
) -> Iterator[tuple[int, str]]:
    """(row, text) for every record of a data file; InvalidInputError on a malformed one."""
    lower = path.lower()
    if lower.endswith(".parquet"):
        yield from _parquet(path, stream, text_field)
    elif lower.endswith((".jsonl", ".json")):
        yield from _json_lines(path, stream, text_field)
    elif lower.endswith(".txt"):
        yield from _text_lines(path, stream)
    else:
        raise InvalidInputError(f"{path!r}: not a data file (expected {', '.join(DATA_SUFFIXES)})")


def _lines(path: str, stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    pending = ""
    row = 0
    try:
        while chunk := stream.read(1 << 20):
            pending += decoder.decode(chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                yield row, line
                row += 1
            if len(pending) > MAX_LINE_BYTES:
                raise InvalidInputError(
                    f"{path!r}: line {row + 1} is longer than {MAX_LINE_BYTES} bytes"
                )
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path!r}: not UTF-8 text (near line {row + 1})") from None
    if pending:
        yield row, pending


def _checked_text(path: str, row: int, text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(
            f"{path!r} row {row + 1}: the text field is missing or not a string"
        )
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(
            f"{path!r} row {row + 1}: a text longer than {MAX_TEXT_CHARS} characters"
        )
    return text


def _json_lines(path: str, stream: IO[bytes], field: str) -> Iterator[tuple[int, str]]:
    count = 0
    for row, line in _lines(path, stream):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise InvalidInputError(f"{path!r} row {row + 1}: not a JSON object") from None
        if not isinstance(value, dict):
            raise InvalidInputError(f"{path!r} row {row + 1}: not a JSON object")
        yield count, _checked_text(path, row, value.get(field))
        count += 1


def _text_lines(path: str, stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    count = 0
    for _, line in _lines(path, stream):
        if line.strip():
            yield count, _checked_text(path, count, line.rstrip("\r"))
            count += 1


def _parquet(path: str, stream: IO[bytes], field: str) -> Iterator[tuple[int, str]]:
    try:
        parquet = pq.ParquetFile(stream if stream.seekable() else io.BytesIO(stream.read()))
    except (pa.ArrowException, OSError, ValueError):
        raise InvalidInputError(f"{path!r}: not a readable Parquet file") from None
    schema = parquet.schema_arrow
    index = schema.get_field_index(field)
    if index < 0 or not (
        pa.types.is_string(schema.field(index).type)
        or pa.types.is_large_string(schema.field(index).type)
    ):
        raise InvalidInputError(f"{path!r}: no string column {field!r}")
    row = 0
    try:
        for group in range(parquet.num_row_groups):
            column = parquet.read_row_group(group, columns=[field]).column(0)
            for text in column.to_pylist():
                yield row, _checked_text(path, row, text)
                row += 1
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(
            f"{path!r}: a damaged Parquet file ({type(exc).__name__})"
        ) from None
