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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kaiyuan.core.errors import InvalidInputError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 4 * 1024 * 1024
MAX_CHUNK_BYTES = 512 * 1024 * 1024
MIN_DECODED_BUDGET = 256 * 1024 * 1024
DECODED_PER_STORED_BYTE = 64
_BATCH = 64


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
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: no valid text
        raise InvalidInputError(f"{path!r} row {row + 1}: the text is not valid Unicode") from None
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
        except (ValueError, RecursionError):  # JSONDecodeError, and numbers too long to convert
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
    if not stream.seekable():
        stream = io.BytesIO(stream.read())
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    try:
        # Dictionary-encoded text stays encoded until each small batch is checked: a few
        # kilobytes can otherwise decode to gigabytes (one long string repeated).
        parquet = pq.ParquetFile(stream, read_dictionary=[field])
    except (pa.ArrowException, OSError, ValueError):
        raise InvalidInputError(f"{path!r}: not a readable Parquet file") from None
    schema = parquet.schema_arrow
    index = schema.get_field_index(field)
    if index < 0 or not _is_text(schema.field(index).type):
        raise InvalidInputError(f"{path!r}: no string column {field!r}")
    _check_chunks(path, parquet, field)
    budget = max(MIN_DECODED_BUDGET, DECODED_PER_STORED_BYTE * size)
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH, columns=[field]):
            column = batch.column(0)
            if pa.types.is_dictionary(column.type):
                lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
            else:
                lengths = pc.binary_length(column)
            budget -= pc.sum(lengths).as_py() or 0
            if budget < 0:
                raise InvalidInputError(
                    f"{path!r}: its text decodes to far more than the file's size"
                )
            for text in column.to_pylist():
                yield row, _checked_text(path, row, text)
                row += 1
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(
            f"{path!r}: a damaged Parquet file ({type(exc).__name__})"
        ) from None


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _check_chunks(path: str, parquet: pq.ParquetFile, field: str) -> None:
    meta = parquet.metadata
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for i in range(row_group.num_columns):
            chunk = row_group.column(i)
            if chunk.path_in_schema == field and chunk.total_uncompressed_size > MAX_CHUNK_BYTES:
                raise InvalidInputError(
                    f"{path!r}: row group {group} holds more than {MAX_CHUNK_BYTES} bytes of "
                    "text; write it with smaller row groups"
                )
