"""Every read and write endpoint x every kind of caller x public, private and gated repositories.

One table: each cell is a request and the statuses allowed for it, derived from one rule
(`expected`). A refused read of a private repository must not leak anything about it (it looks
exactly like a repository that does not exist). The repositories belong to the organisation
`acme`, whose only member is alice. The gated one (manual) is public: everyone sees it, only
members and accepted requests get its files.

The web pages are in the table too, with the caller signed in through the sign-in page: their
requests carry the session cookie, not a token. A cookie only ever reads: a write sent with one
is anonymous, whoever signed in (no cross-site request can act for a signed-in person).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from huggingface_hub import HfApi
from safetensors.numpy import save

from tests.support.hostile import LFS_CONTENT, LFS_JSON, NDJSON, header, ndjson, put_file, sha256
from tests.support.hubs import ServerInfo, run_admin, start_server

# A transformer small enough for every cell: an embedding and one layer (the compare endpoint
# needs weights it can read).
TINY_MODEL = save(
    {
        name: np.random.default_rng(0).normal(size=shape).astype(np.float32)
        for name, shape in {
            "model.embed_tokens.weight": (100, 16),
            "model.layers.0.self_attn.q_proj.weight": (16, 16),
            "model.layers.0.self_attn.k_proj.weight": (16, 16),
        }.items()
    }
)

pytestmark = pytest.mark.slow

CALLERS = ("anonymous", "non-member", "member-read", "other-namespace-write", "owner")
VISIBILITY = ("public", "private", "gated")


@dataclass
class Matrix:
    server: ServerInfo
    tokens: dict[str, str | None]
    repos: dict[str, str]  # visibility -> repo id
    cookies: dict[str, str | None]  # caller -> web session cookie

    def owner(self) -> HfApi:
        return HfApi(endpoint=self.server.url, token=self.tokens["owner"])


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    root = tmp_path_factory.mktemp("matrix")
    with start_server(root, "sqlite", None) as server:

        def admin(*args: str) -> str:
            done = run_admin(server.env, *args)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        admin("user", "create", "carol")
        tokens: dict[str, str | None] = {
            "anonymous": None,
            "non-member": admin("token", "create", "carol", "--scope", "read"),
            "member-read": server.tokens["alice_read"],
            "other-namespace-write": server.bob,
            "owner": server.alice,
        }
        api = HfApi(endpoint=server.url, token=server.alice)
        repos = {}
        for visibility in VISIBILITY:
            repo_id = f"acme/{visibility}-model"
            api.create_repo(repo_id, private=visibility == "private")
            api.upload_file(path_or_fileobj=b"{}\n", path_in_repo="config.json", repo_id=repo_id)
            api.upload_file(
                path_or_fileobj=LFS_CONTENT, path_in_repo="weights.bin", repo_id=repo_id
            )
            api.upload_file(
                path_or_fileobj=TINY_MODEL, path_in_repo="model.safetensors", repo_id=repo_id
            )
            if visibility == "gated":
                api.update_repo_settings(repo_id, gated="manual")
            repos[visibility] = repo_id
        cookies = {caller: sign_in(server.url, token) for caller, token in tokens.items()}
        yield Matrix(server, tokens, repos, cookies)


def sign_in(url: str, token: str | None) -> str | None:
    """The session cookie the sign-in page hands out for `token`."""
    if token is None:
        return None
    answer = httpx.post(f"{url}/-/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.cookies["kaiyuan_session"]


# --- the endpoints --------------------------------------------------------------------------
Prepare = Callable[[Matrix, str], str]  # (matrix, repo id) -> a name the request acts on


def nothing(_matrix: Matrix, _repo_id: str) -> str:
    return ""


def a_branch(matrix: Matrix, repo_id: str) -> str:
    name = f"b-{uuid.uuid4().hex[:8]}"
    matrix.owner().create_branch(repo_id, branch=name)
    return name


def a_tag(matrix: Matrix, repo_id: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    matrix.owner().create_tag(repo_id, tag=name)
    return name


def a_repo(matrix: Matrix, repo_id: str) -> str:
    """A disposable repository as visible as `repo_id`, for the delete endpoint."""
    private = matrix.owner().model_info(repo_id).private
    name = f"acme/doomed-{uuid.uuid4().hex[:8]}"
    matrix.owner().create_repo(name, private=bool(private))
    return name


@dataclass(frozen=True)
class Endpoint:
    name: str
    writes: bool
    method: str
    path: str  # {repo} and {name} are filled in
    body: Callable[[str], dict[str, object]] = lambda _name: {}
    prepare: Prepare = nothing
    files: bool = False  # hands out file contents (what a gated repository withholds)
    web: bool = False  # sent from a browser: the session cookie instead of a token


def _commit_body(_name: str) -> dict[str, object]:
    return {
        "content": ndjson(header(), put_file(f"m-{uuid.uuid4().hex[:6]}.txt", b"m")),
        "headers": NDJSON,
    }


def _batch(operation: str) -> Callable[[str], dict[str, object]]:
    def body(_name: str) -> dict[str, object]:
        obj = {"oid": sha256(LFS_CONTENT), "size": len(LFS_CONTENT)}
        if operation == "upload":
            obj = {"oid": "ab" * 32, "size": 3}
        return {
            "json": {"operation": operation, "transfers": ["basic"], "objects": [obj]},
            "headers": LFS_JSON,
        }

    return body


ENDPOINTS = [
    # reads: HF-compatible API, file downloads, Xet, native API
    Endpoint("model info", False, "GET", "/api/models/{repo}"),
    Endpoint("revision info", False, "GET", "/api/models/{repo}/revision/main"),
    Endpoint("tree", False, "GET", "/api/models/{repo}/tree/main"),
    Endpoint("refs", False, "GET", "/api/models/{repo}/refs"),
    Endpoint("commits", False, "GET", "/api/models/{repo}/commits/main"),
    Endpoint(
        "paths-info",
        False,
        "POST",
        "/api/models/{repo}/paths-info/main",
        lambda _n: {"data": {"paths": "config.json"}},
    ),
    Endpoint("resolve small file", False, "GET", "/{repo}/resolve/main/config.json", files=True),
    Endpoint("resolve HEAD", False, "HEAD", "/{repo}/resolve/main/weights.bin", files=True),
    Endpoint("resolve LFS file", False, "GET", "/{repo}/resolve/main/weights.bin", files=True),
    Endpoint("xet read token", False, "GET", "/api/models/{repo}/xet-read-token/main", files=True),
    Endpoint("storage of repo", False, "GET", "/api/storage/models/{repo}"),
    Endpoint("lineage", False, "GET", "/api/lineage/models/{repo}"),
    Endpoint("licence report", False, "GET", "/api/licence-report/models/{repo}"),
    Endpoint("provenance", False, "GET", "/api/provenance/models/{repo}"),
    Endpoint("content scans", False, "GET", "/api/scans/models/{repo}"),
    Endpoint("revision signature", False, "GET", "/api/signatures/models/{repo}"),
    Endpoint("sealed files", False, "GET", "/api/sealing/models/{repo}"),
    Endpoint("tree with scan verdicts", False, "GET", "/api/models/{repo}/tree/main?expand=true"),
    # comparing reads the weights, so a gated model's are compared only for those who may download
    Endpoint(
        "provenance compare",
        False,
        "POST",
        "/api/provenance/compare",
        lambda repo: {"json": {"a": repo, "b": repo}},
        prepare=lambda _m, repo_id: repo_id,
        files=True,
    ),
    # the licence audit is for the namespace's writers, like the access requests it records
    Endpoint("licence acceptances", True, "GET", "/api/licence-acceptances/models/{repo}"),
    # so are a sealed repository's key-release log and revocations
    Endpoint("key-release audit", True, "GET", "/api/sealing/models/{repo}/releases"),
    Endpoint("key revocations", True, "GET", "/api/sealing/models/{repo}/revocations"),
    # reads: the web pages (a gated repository shows its pages; only the files are withheld)
    Endpoint("card page", False, "GET", "/{repo}", web=True),
    Endpoint("files page", False, "GET", "/{repo}/tree/main", web=True),
    Endpoint("file page", False, "GET", "/{repo}/blob/main/weights.bin", web=True),
    Endpoint("history page", False, "GET", "/{repo}/commits/main", web=True),
    Endpoint("refs page", False, "GET", "/{repo}/refs", web=True),
    Endpoint("lineage page", False, "GET", "/{repo}/lineage", web=True),
    Endpoint("licence page", False, "GET", "/{repo}/licence", web=True),
    Endpoint("provenance page", False, "GET", "/{repo}/provenance", web=True),
    Endpoint(
        "download from page", False, "GET", "/{repo}/resolve/main/weights.bin", files=True, web=True
    ),
    Endpoint("model info from page", False, "GET", "/api/models/{repo}", web=True),
    # writes
    Endpoint(
        "preupload",
        True,
        "POST",
        "/api/models/{repo}/preupload/main",
        lambda _n: {"json": {"files": [{"path": "x.txt", "size": 1, "sample": "eA=="}]}},
    ),
    Endpoint("commit", True, "POST", "/api/models/{repo}/commit/main", _commit_body),
    Endpoint(
        "create branch",
        True,
        "POST",
        "/api/models/{repo}/branch/{name}",
        prepare=lambda _m, _r: f"nb-{uuid.uuid4().hex[:8]}",
    ),
    Endpoint("delete branch", True, "DELETE", "/api/models/{repo}/branch/{name}", prepare=a_branch),
    Endpoint(
        "create tag",
        True,
        "POST",
        "/api/models/{repo}/tag/main",
        lambda _n: {"json": {"tag": f"nt-{uuid.uuid4().hex[:8]}"}},
    ),
    Endpoint("delete tag", True, "DELETE", "/api/models/{repo}/tag/{name}", prepare=a_tag),
    Endpoint(
        "LFS batch upload", True, "POST", "/{repo}.git/info/lfs/objects/batch", _batch("upload")
    ),
    Endpoint("xet write token", True, "GET", "/api/models/{repo}/xet-write-token/main"),
    Endpoint(
        "sealing policy",
        True,
        "PUT",
        "/api/sealing/models/{repo}",
        lambda _n: {"json": {"patterns": ["*.never-committed"]}},
    ),
    Endpoint(
        "delete repo",
        True,
        "DELETE",
        "/api/repos/delete",
        lambda name: {
            "json": {"name": name.split("/")[1], "organization": "acme", "type": "model"}
        },
        prepare=a_repo,
    ),
    # a write carrying only a session cookie is anonymous, whoever signed in
    Endpoint(
        "commit from page", True, "POST", "/api/models/{repo}/commit/main", _commit_body, web=True
    ),
    Endpoint(
        "create tag from page",
        True,
        "POST",
        "/api/models/{repo}/tag/main",
        lambda _n: {"json": {"tag": f"nt-{uuid.uuid4().hex[:8]}"}},
        web=True,
    ),
]


def settings_endpoint(visibility: str) -> Endpoint:
    """Setting what the repository already is: allowed or refused, it changes nothing."""
    setting = {"gated": "manual"} if visibility == "gated" else {"private": visibility == "private"}
    return Endpoint(
        "settings", True, "PUT", "/api/models/{repo}/settings", lambda _n: {"json": setting}
    )


def expected(endpoint: Endpoint, caller: str, visibility: str) -> set[int]:
    """The rule every cell follows."""
    member = caller in {"owner", "member-read"}
    if endpoint.writes and endpoint.web:
        # The cookie is ignored: an anonymous write, to a repository anonymous may not see.
        return {401, 404} if visibility == "private" else {401}
    if visibility == "private" and not member:
        # Invisible: exactly what a repository that does not exist answers.
        return {401, 404} if caller == "anonymous" else {404}
    if not endpoint.writes:
        if visibility == "gated" and endpoint.files and not member:
            return {401} if caller == "anonymous" else {403}  # X-Error-Code: GatedRepo
        return {200}
    if caller == "owner":
        return {200, 201, 204}
    return {401} if caller == "anonymous" else {403}


def cells() -> Iterator[tuple[Endpoint, str, str]]:
    for visibility in VISIBILITY:
        for endpoint in [*ENDPOINTS, settings_endpoint(visibility)]:
            for caller in CALLERS:
                yield endpoint, caller, visibility


def send(matrix: Matrix, endpoint: Endpoint, path: str, name: str, caller: str) -> httpx.Response:
    spec = endpoint.body(name)
    headers = dict(spec.pop("headers", {}))  # type: ignore[call-overload]
    token, cookie = matrix.tokens[caller], matrix.cookies[caller]
    if endpoint.web and cookie:
        headers["Cookie"] = f"kaiyuan_session={cookie}"
    elif token and not endpoint.web:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        endpoint.method, matrix.server.url + path, headers=headers, timeout=30, **spec
    )


@pytest.mark.parametrize(
    ("endpoint", "caller", "visibility"),
    list(cells()),
    ids=[f"{v}-{e.name.replace(' ', '_')}-{c}" for e, c, v in cells()],
)
def test_cell(matrix: Matrix, endpoint: Endpoint, caller: str, visibility: str) -> None:
    repo_id = matrix.repos[visibility]
    name = endpoint.prepare(matrix, repo_id)
    target = name if endpoint.prepare is a_repo else repo_id
    path = endpoint.path.format(repo=target, name=name)
    response = send(matrix, endpoint, path, name, caller)
    allowed = expected(endpoint, caller, visibility)
    assert response.status_code in allowed, (
        f"{endpoint.method} {path} as {caller}: {response.status_code} {response.text[:200]}"
    )
    member = caller in {"owner", "member-read"}
    if visibility == "gated" and not member and response.status_code == 200:
        assert LFS_CONTENT[:20] not in response.content  # a page withholds the file too
        assert '<pre class="text">' not in response.text
    if response.status_code >= 400 and visibility == "private":
        # A page echoing the address one asked for (in its sign-in link) tells nothing new.
        page_text = response.text.replace(path, "").replace(quote(path, safe="/"), "")
        leaked = page_text + " ".join(response.headers.values())
        for secret in ("config.json", "weights.bin", sha256(LFS_CONTENT)):
            assert secret not in leaked, f"{caller} learned {secret!r} from {path}"
    if response.status_code >= 400 and visibility == "gated" and endpoint.files:
        assert response.headers.get("x-error-code") == "GatedRepo"  # the client's GatedRepoError
        assert LFS_CONTENT[:20] not in response.content
        assert "x-xet-hash" not in response.headers
    if response.status_code == 404 and visibility == "private":
        # Indistinguishable from a repository that does not exist at all.
        elsewhere = path.replace(repo_id, "acme/no-such-model")
        missing = send(matrix, endpoint, elsewhere, name, caller)
        assert missing.status_code == 404
        assert missing.headers.get("x-error-code") == response.headers.get("x-error-code")


@pytest.mark.parametrize("caller", CALLERS)
def test_listing_shows_private_repositories_to_members_only(matrix: Matrix, caller: str) -> None:
    token = matrix.tokens[caller]
    listed = httpx.get(
        f"{matrix.server.url}/api/models?author=acme",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    assert listed.status_code == 200
    ids = {m["id"] for m in listed.json()}
    assert matrix.repos["public"] in ids
    assert (matrix.repos["private"] in ids) == (caller in {"owner", "member-read"})


@pytest.mark.parametrize("caller", CALLERS)
def test_cas_refuses_hub_tokens(matrix: Matrix, caller: str) -> None:
    """The CAS takes only the short-lived, repository-bound Xet tokens, never a hub token."""
    token = matrix.tokens[caller]
    for method, path in (
        ("POST", "/cas/v1/shards"),
        ("GET", f"/cas/v1/reconstructions/{'0' * 64}"),
        ("POST", f"/cas/v1/xorbs/default/{'0' * 64}"),
    ):
        answer = httpx.request(
            method,
            matrix.server.url + path,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            content=b"",
        )
        assert answer.status_code == 401, (caller, path, answer.text)
