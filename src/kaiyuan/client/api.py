"""Calls to a running hub's native API; answers as plain data, failures as domain errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from kaiyuan.core import errors

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class HubUnreachableError(errors.StorageUnavailableError):
    """No answer from the hub at all (wrong endpoint, hub down, network)."""


class HubClient:
    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self._token = token

    def lineage(self, kind: str, repo_id: str, revision: str | None) -> dict[str, Any]:
        params = {"revision": revision} if revision else {}
        return self._call("GET", f"/api/lineage/{kind}s/{repo_id}", params=params)

    def licence_report(self, kind: str, repo_id: str, revision: str | None) -> dict[str, Any]:
        params = {"revision": revision} if revision else {}
        return self._call("GET", f"/api/licence-report/{kind}s/{repo_id}", params=params)

    def licence_check(self, draft: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/licence-check", json=draft)

    def provenance(self, repo_id: str, revision: str | None) -> dict[str, Any]:
        params = {"revision": revision} if revision else {}
        return self._call("GET", f"/api/provenance/models/{repo_id}", params=params)

    def compare(self, a: str, b: str) -> dict[str, Any]:
        return self._call("POST", "/api/provenance/compare", json={"a": a, "b": b})

    def model_files(self, repo_id: str, revision: str | None) -> tuple[str, dict[str, int]]:
        """The commit a revision resolves to, and its files (path → size)."""
        where = quote(revision or "main", safe="")
        info = self._call("GET", f"/api/models/{repo_id}/revision/{where}", params={"blobs": "1"})
        sha = str(info.get("sha") or "")
        files = {
            str(item["rfilename"]): int(item.get("size") or 0)
            for item in info.get("siblings") or []
            if isinstance(item, dict) and "rfilename" in item
        }
        return sha, files

    def signature(self, kind: str, repo_id: str, revision: str | None) -> dict[str, Any]:
        """The hub's OMS signature of a revision (bundle, key id, the commit it signs)."""
        params = {"revision": revision} if revision else {}
        return self._call("GET", f"/api/signatures/{kind}s/{repo_id}", params=params)

    def signing_key(self) -> dict[str, Any]:
        return self._call("GET", "/api/signing/key")

    def sealing(self, kind: str, repo_id: str, revision: str | None) -> dict[str, Any]:
        """A revision's sealed files and the repository's sealing policy."""
        params = {"revision": revision} if revision else {}
        return self._call("GET", f"/api/sealing/{kind}s/{repo_id}", params=params)

    def set_sealing(self, kind: str, repo_id: str, policy: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/api/sealing/{kind}s/{repo_id}", json=policy)

    def sealing_challenge(self, kind: str, repo_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/sealing/{kind}s/{repo_id}/challenge")

    def sealed_keys(self, kind: str, repo_id: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/api/sealing/{kind}s/{repo_id}/keys", json=request)

    def key_releases(self, kind: str, repo_id: str, limit: int) -> list[dict[str, Any]]:
        return self._call_list(
            "GET", f"/api/sealing/{kind}s/{repo_id}/releases", params={"limit": limit}
        )

    def revoke_keys(self, kind: str, repo_id: str, subject: str, *, restore: bool) -> None:
        method = "DELETE" if restore else "PUT"
        where = quote(subject, safe="")
        self._call_list(method, f"/api/sealing/{kind}s/{repo_id}/revocations/{where}")

    # --- co-built datasets and curation -------------------------------------------------------
    def cobuild_policy(self, repo_id: str, policy: dict[str, Any] | None) -> dict[str, Any]:
        """Set the policy (or read it, with None)."""
        path = f"/api/cobuilding/datasets/{repo_id}"
        if policy is None:
            found = self._answer("GET", path)
            return found if isinstance(found, dict) else {}
        return self._call("PUT", path, json=policy)

    def contribute(
        self, repo_id: str, fields: dict[str, str], files: list[tuple[str, Path]]
    ) -> dict[str, Any]:
        """Send files (path inside the contribution, local file) as one contribution."""
        with contextlib.ExitStack() as stack:
            parts = [
                ("files", (name, stack.enter_context(local.open("rb")), "application/octet-stream"))
                for name, local in files
            ]
            return self._call(
                "POST",
                f"/api/cobuilding/datasets/{repo_id}/contributions",
                data=fields,
                files=parts,
            )

    def contributions(self, repo_id: str, status: str | None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        path = f"/api/cobuilding/datasets/{repo_id}/contributions"
        return self._call_list("GET", path, params=params)

    def review(self, repo_id: str, number: int, verdict: str, note: str) -> dict[str, Any]:
        path = f"/api/cobuilding/datasets/{repo_id}/contributions/{number}/{verdict}"
        return self._call("POST", path, json={"note": note})

    def curate(self, repo_id: str, revision: str | None) -> dict[str, Any]:
        return self._call("POST", f"/api/curation/datasets/{repo_id}", json={"revision": revision})

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{quote(job_id, safe='')}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/jobs/{quote(job_id, safe='')}/cancel")

    def curation_report(self, repo_id: str, revision: str | None) -> dict[str, Any]:
        params = {"revision": revision} if revision else {}
        return self._call("GET", f"/api/curation/datasets/{repo_id}/report", params=params)

    def download(self, repo_id: str, sha: str, path: str, target: Path) -> None:
        """A file at a commit, streamed to `target` (written under a temporary name first)."""
        staged = target.with_name(target.name + ".part")
        staged.parent.mkdir(parents=True, exist_ok=True)
        with staged.open("wb") as out:
            for piece in self.read_range(repo_id, sha, path, 0, 0):
                out.write(piece)
        staged.replace(target)

    def read_range(
        self, repo_id: str, sha: str, path: str, start: int, end: int
    ) -> Iterator[bytes]:
        """Bytes [start, end) of a file at a commit, streamed (an HTTP range request).

        `end` 0 from `start` 0 streams the whole file.
        """
        headers = {"Range": f"bytes={start}-{end - 1}"} if end else {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        url = f"{self.endpoint}/{repo_id}/resolve/{sha}/{quote(path)}"
        try:
            with httpx.stream(
                "GET", url, headers=headers, timeout=_TIMEOUT, follow_redirects=True
            ) as answer:
                if answer.status_code >= 400:  # noqa: PLR2004
                    answer.read()
                    raise _error(answer)
                if answer.status_code != 206 and start != 0:  # noqa: PLR2004
                    raise errors.InvalidInputError(f"{url}: the hub ignored the byte range")
                yield from answer.iter_bytes(4 * 1024 * 1024)
        except httpx.HTTPError as exc:
            raise HubUnreachableError(f"cannot reach the hub at {self.endpoint}: {exc}") from None

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = self._answer(method, path, **kwargs)
        if not isinstance(body, dict):
            raise errors.InvalidInputError(f"unexpected answer from {self.endpoint}{path}")
        return body

    def _call_list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        body = self._answer(method, path, **kwargs)
        if not isinstance(body, list):
            raise errors.InvalidInputError(f"unexpected answer from {self.endpoint}{path}")
        return body

    def _answer(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            answer = httpx.request(
                method, self.endpoint + path, headers=headers, timeout=_TIMEOUT, **kwargs
            )
        except httpx.HTTPError as exc:
            raise HubUnreachableError(f"cannot reach the hub at {self.endpoint}: {exc}") from None
        if answer.status_code >= 400:  # noqa: PLR2004
            raise _error(answer)
        try:
            return answer.json()
        except ValueError:
            raise errors.InvalidInputError(
                f"unexpected answer from {self.endpoint}{path}"
            ) from None


def _error(answer: httpx.Response) -> errors.HubError:
    try:
        message = str(answer.json().get("error", answer.text))
    except ValueError:
        message = answer.text[:500]
    status = answer.status_code
    if status == 404:  # noqa: PLR2004
        return errors.NotFoundError(message)
    if status == 401:  # noqa: PLR2004
        return errors.AuthenticationError(message)
    if status == 403:  # noqa: PLR2004
        return errors.AccessDeniedError(message)
    if status == 429:  # noqa: PLR2004
        return errors.RateLimitedError(message, int(answer.headers.get("retry-after", "1")))
    if status >= 500:  # noqa: PLR2004
        return errors.StorageUnavailableError(f"the hub failed ({status}): {message}")
    return errors.InvalidInputError(message)
