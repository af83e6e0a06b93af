"""CAS endpoints: xorb and shard uploads, reconstructions, global dedup, signed xorb ranges.

Clients authenticate with the Xet token from the hub's token routes. Errors go through the
app's one mapping; Xet clients read only the status (400 bad input, 401/403 token, 404 unknown,
416 reconstruction range past the end).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import IO
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from kaiyuan.core.errors import InvalidInputError, TooLargeError
from kaiyuan.http.context import bearer, hub_of, read_body
from kaiyuan.http.hfcompat.routes_xet import cas_url
from kaiyuan.services.xet.cas import CasGrant, Reconstruction
from kaiyuan.services.xet.shards import MAX_SHARD_BYTES
from kaiyuan.services.xet.xorbs import HEADER_BYTES, MAX_XORB_BYTES, MAX_XORB_CHUNKS

MAX_XORB_BODY = MAX_XORB_BYTES + MAX_XORB_CHUNKS * HEADER_BYTES + (1 << 20)
_SPOOL_IN_MEMORY = 4 << 20
_READ_PIECE = 1 << 20
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")

router = APIRouter(prefix="/cas")


def _grant(request: Request, *, write: bool) -> CasGrant:
    return hub_of(request).cas.check_token(bearer(request), write=write)


@router.post("/v1/xorbs/{prefix}/{xorb_hash}")
async def upload_xorb(request: Request, prefix: str, xorb_hash: str) -> Response:
    grant = await run_in_threadpool(_grant, request, write=True)
    del grant  # any repository's writer may add content; files are bound to repos by shards
    if prefix != "default":
        raise InvalidInputError("the xorb prefix must be 'default'")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
        await _spool(request, body, MAX_XORB_BODY)
        body.seek(0)
        inserted = await run_in_threadpool(
            hub_of(request).xet_ingest.receive_xorb, xorb_hash, _pieces(body)
        )
    return JSONResponse({"was_inserted": inserted})


async def _spool(request: Request, sink: IO[bytes], limit: int) -> None:
    total = 0
    async for piece in request.stream():
        total += len(piece)
        if total > limit:
            raise TooLargeError(f"request body is larger than {limit} bytes")
        sink.write(piece)


def _pieces(source: IO[bytes]) -> Iterator[bytes]:
    while piece := source.read(_READ_PIECE):
        yield piece


@router.post("/v1/shards")
async def upload_shard(request: Request) -> Response:
    grant = await run_in_threadpool(_grant, request, write=True)
    data = await read_body(request, MAX_SHARD_BYTES)
    new = await run_in_threadpool(hub_of(request).cas.register_shard, grant, data)
    return JSONResponse({"result": 1 if new else 0})


@router.get("/v1/reconstructions/{file_hash}")
async def reconstruction(request: Request, file_hash: str) -> Response:
    grant = await run_in_threadpool(_grant, request, write=False)
    span = _span(request.headers.get("range"))
    cas = hub_of(request).cas
    answer = await run_in_threadpool(cas.reconstruction, grant, file_hash, span)
    if answer is None:
        return JSONResponse({"error": "range starts past the end of the file"}, status_code=416)
    return JSONResponse(_reconstruction_json(request, answer, grant.expires))


def _span(header: str | None) -> tuple[int, int | None] | None:
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise InvalidInputError("Range must be 'bytes=start-end'")
    start = int(match.group(1))
    end = int(match.group(2)) + 1 if match.group(2) else None
    if end is not None and end <= start:
        raise InvalidInputError("Range end is before its start")
    return start, end


def _reconstruction_json(
    request: Request, answer: Reconstruction, expires: int
) -> dict[str, object]:
    cas = hub_of(request).cas
    base = cas_url(request)
    fetch_info: dict[str, list[dict[str, object]]] = {}
    for fetch in answer.fetches:
        query = urlencode(
            {
                "first": fetch.first,
                "last": fetch.last,
                "exp": expires,
                "sig": cas.fetch_signature(fetch, expires),
            }
        )
        fetch_info.setdefault(fetch.xorb_hash, []).append(
            {
                "range": {"start": fetch.start, "end": fetch.end},
                "url": f"{base}/xorbs/{fetch.xorb_hash}?{query}",
                "url_range": {"start": fetch.first, "end": fetch.last},
            }
        )
    return {
        "offset_into_first_range": answer.offset_into_first_range,
        "terms": [
            {
                "hash": term.xorb_hash,
                "unpacked_length": length,
                "range": {"start": term.start, "end": term.end},
            }
            for term, length in answer.terms
        ],
        "fetch_info": fetch_info,
    }


@router.get("/xorbs/{xorb_hash}")
async def xorb_bytes(request: Request, xorb_hash: str) -> Response:
    """Serialized chunks of a xorb through a link from a reconstruction (no token needed)."""
    params = request.query_params
    numbers = [params.get(name, "") for name in ("first", "last", "exp")]
    if not all(n.isdigit() for n in numbers):
        raise InvalidInputError("xorb link is missing its range or expiry")
    first, last, expires = (int(n) for n in numbers)
    wanted = _span(request.headers.get("range"))
    if wanted is not None and wanted != (first, last + 1):
        raise InvalidInputError("Range must be exactly the range the link was issued for")
    cas = hub_of(request).cas
    length, pieces = await run_in_threadpool(
        cas.read_xorb_range, xorb_hash, first, last, expires, params.get("sig", "")
    )
    headers = {"Content-Length": str(length), "Accept-Ranges": "bytes"}
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/*"
    return StreamingResponse(
        iterate_in_threadpool(pieces),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


@router.get("/v1/chunks/{prefix}/{chunk_hash}")
async def dedup(request: Request, prefix: str, chunk_hash: str) -> Response:
    grant = await run_in_threadpool(_grant, request, write=False)
    if prefix not in {"default", "default-merkledb"}:  # clients send the first; spec 1.0 the second
        raise InvalidInputError("the dedup prefix must be 'default'")
    shard = await run_in_threadpool(hub_of(request).cas.dedup_answer, grant, chunk_hash)
    if shard is None:
        return JSONResponse({"error": "chunk not known"}, status_code=404)
    return Response(shard, media_type="application/octet-stream")
