"""Download throughput of Kaiyuan against nginx and olah, all on 127.0.0.1.

What is measured (MB = 10**6 bytes, median of ``--repeat`` runs, warm page cache):

* ``raw HTTP GET (python)``: one streaming GET of the whole file with ``http.client`` reading into
  an 8 MiB buffer (bytes discarded), from Kaiyuan's ``/{repo}/resolve/main/{file}`` and from nginx
  serving the same file with ``sendfile on``. Target: Kaiyuan >= 0.8x nginx.
* ``raw HTTP GET (curl)``: the same with ``curl -s -o /dev/null -w '%{speed_download}'`` (skipped
  when curl is missing). Target: Kaiyuan >= 0.8x nginx.
* ``snapshot_download``: ``huggingface_hub.snapshot_download`` of the repository at its commit sha
  into a fresh cache directory, timed inside a child process (interpreter start-up excluded) with
  ``HF_HUB_DISABLE_XET=1``, from Kaiyuan and from olah 0.5.4 serving a local git mirror offline.
  Target: Kaiyuan >= 3x olah. The downloaded size is checked every time, the sha256 once.

Setup, all below a temporary work directory (removed at the end unless ``--keep``):

1. a random test file (``--size-mib``, default 1024) written in 8 MiB pieces;
2. Kaiyuan: ``python -m kaiyuan serve`` on a private data directory, a user ``bench`` with a
   write token, and ``bench/big-model`` uploaded with ``huggingface_hub`` (``model.safetensors``);
3. nginx (Debian package; skipped with a message if ``/usr/sbin/nginx`` is missing) with a private
   configuration (``nginx -c CONF -p PREFIX``, ``daemon off``);
4. olah 0.5.4 from PyPI in its own virtual environment ``benchmarks/.venv-olah`` (created on first
   use), serving a non-bare git work tree with an LFS pointer and ``.git/lfs/objects`` populated,
   ``offline = true``.

All servers run at once and the runs are interleaved (run 1 of every server, then run 2, ...), so
that load from elsewhere on a shared machine affects Kaiyuan and its reference alike. Every server
started is stopped on exit, also on Ctrl-C or errors.

Run (about 3-5 minutes for 1 GiB on a 2-core machine, most of it olah)::

    python benchmarks/download.py --size-mib 1024
    python benchmarks/download.py --size-mib 64 --targets nginx,olah --repeat 1
    python benchmarks/download.py --json bench.json --check   # exit 1 when a target is missed

Needs ``huggingface_hub`` in this interpreter, ``kaiyuan`` installed (``pip install -e .``), ``git``
for the olah mirror, and network access to PyPI the first time the olah venv is created.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

MB = 1_000_000
PIECE = 8 * 1024 * 1024
REPO_ID = "bench/big-model"
USER = "bench"
FILENAME = "model.safetensors"
OLAH_VERSION = "0.5.4"
NGINX = Path("/usr/sbin/nginx")
DEFAULT_OLAH_VENV = Path(__file__).resolve().parent / ".venv-olah"
ALL_TARGETS = ("kaiyuan", "nginx", "olah")
RAW_TARGET = 0.8
SNAPSHOT_TARGET = 3.0
STARTUP_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    """A setup or measurement step failed; the message says which."""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(PIECE):
            digest.update(piece)
    return digest.hexdigest()


def bf16_bytes(count: int) -> bytes:
    """`count` bytes of bfloat16 values drawn like model weights (N(0, 0.02))."""
    import numpy as np  # noqa: PLC0415 - only this content needs numpy

    values = np.random.default_rng().standard_normal((count + 1) // 2, dtype=np.float32) * 0.02
    return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()[:count]


def write_random_file(path: Path, size: int, content: str = "random") -> str:
    """Write `size` bytes (random, or bf16 weights) in 8 MiB pieces; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left > 0:
            want = min(PIECE, left)
            piece = os.urandom(want) if content == "random" else bf16_bytes(want)
            digest.update(piece)
            handle.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def child_env(hf_home: Path, **extra: str) -> dict[str, str]:
    """The parent environment without Hub settings, plus a private HF_HOME and `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING_FACE_", "KAIYUAN_"))
    }
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_checked(
    cmd: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None
) -> str:
    """Run a command to completion and return its stdout; raise BenchError on failure."""
    try:
        done = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if done.returncode != 0:
        raise BenchError(f"exit {done.returncode}: {' '.join(cmd)}\n{done.stderr.strip()[-2000:]}")
    return done.stdout


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def server_process(
    name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own session, yield it, and always stop it (TERM, then KILL)."""
    log(f"starting {name}: {' '.join(cmd)}")
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop_process(name, proc)


def stop_process(name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # the group is the session this script created for it
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        log(f"stopped {name}")
        return
    log(f"warning: {name} (pid {proc.pid}) did not stop")


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll `url` until the server answers with any status below 500 (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"server exited with {proc.returncode} before answering:\n{tail}")
        try:
            status = http_status(url)
        except OSError as exc:
            last = str(exc)
        else:
            if status < 500:
                return
            last = f"HTTP {status}"
        time.sleep(0.3)
    raise BenchError(f"{url} not ready after {STARTUP_TIMEOUT_S:.0f} s ({last}); see {log_path}")


def open_get(
    url: str, timeout: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send GET `url`; return the connection (caller closes it) and its response."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def http_status(url: str) -> int:
    conn, response = open_get(url, timeout=5)
    try:
        response.read()
        return response.status
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Kaiyuan
# ---------------------------------------------------------------------------------------------


def kaiyuan_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kaiyuan", *args]


def kaiyuan_token(data_dir: Path, env: dict[str, str]) -> str:
    dd = ["--data-dir", str(data_dir)]
    run_checked(kaiyuan_cmd("admin", "user", "create", USER, *dd), env, timeout=120)
    out = run_checked(
        kaiyuan_cmd("admin", "token", "create", USER, "--scope", "write", *dd), env, timeout=120
    )
    token = out.strip().splitlines()[-1].strip() if out.strip() else ""
    if not token:
        raise BenchError("`kaiyuan admin token create` printed no token")
    return token


@contextlib.contextmanager
def kaiyuan_server(work: Path, hf_home: Path, **settings: str) -> Iterator[tuple[str, str]]:
    """Start Kaiyuan on a private data directory; yield (endpoint, write token)."""
    data_dir = work / "kaiyuan-data"
    data_dir.mkdir()
    env = child_env(hf_home, KAIYUAN_DATA_DIR=str(data_dir), **settings)
    token = kaiyuan_token(data_dir, env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = kaiyuan_cmd(
        "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)
    )
    log_path = work / "kaiyuan.log"
    with server_process("kaiyuan", cmd, env, log_path) as proc:
        wait_http(f"{url}/api/models", proc, log_path)
        yield url, token


# ---------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_server(work: Path, test_file: Path) -> Iterator[str]:
    """Serve `test_file` with nginx; yield its URL."""
    prefix = work / "nginx"
    root = prefix / "root"
    (prefix / "tmp").mkdir(parents=True)
    root.mkdir()
    link_or_copy(test_file, root / FILENAME)
    port = free_port()
    conf = prefix / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, port=port, root=root))
    cmd = [str(NGINX), "-e", str(prefix / "error.log"), "-c", str(conf), "-p", str(prefix)]
    log_path = prefix / "nginx.out"
    with server_process("nginx", cmd, dict(os.environ), log_path) as proc:
        url = f"http://127.0.0.1:{port}/{FILENAME}"
        wait_http(url.replace(FILENAME, ""), proc, log_path)
        yield url


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dst)


# ---------------------------------------------------------------------------------------------
# olah
# ---------------------------------------------------------------------------------------------

OLAH_TOML = """\
[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{repos}"
mirrors-path = ["{mirrors}"]
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"

[accessibility]
offline = true
"""

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


def ensure_olah_venv(venv: Path) -> Path:
    """Return the olah-cli of `venv`, creating the venv with olah from PyPI if it is missing."""
    cli = venv / "bin" / "olah-cli"
    if cli.exists():
        return cli
    log(f"creating {venv} with olah=={OLAH_VERSION} from PyPI (once; about a minute)")
    env = dict(os.environ)
    run_checked([sys.executable, "-m", "venv", str(venv)], env, timeout=300)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    run_checked([*pip, f"olah=={OLAH_VERSION}"], env, timeout=900)
    if not cli.exists():
        raise BenchError(f"pip installed olah but {cli} is missing")
    return cli


def build_git_mirror(mirrors: Path, test_file: Path, sha: str) -> str:
    """Create the work tree olah serves (LFS pointer commit + .git/lfs/objects); return HEAD."""
    repo = mirrors / "models" / REPO_ID
    repo.mkdir(parents=True)
    size = test_file.stat().st_size
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    (repo / FILENAME).write_text(LFS_POINTER.format(sha=sha, size=size))
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(mirrors))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run_checked([*git, "init", "-q", "-b", "main"], env, timeout=60)
    run_checked([*git, "add", ".gitattributes", FILENAME], env, timeout=60)
    run_checked([*git, "commit", "-q", "--no-gpg-sign", "-m", "benchmark model"], env, timeout=60)
    objects = repo / ".git" / "lfs" / "objects" / sha[:2] / sha[2:4]
    objects.mkdir(parents=True)
    link_or_copy(test_file, objects / sha)
    return run_checked([*git, "rev-parse", "HEAD"], env, timeout=60).strip()


@contextlib.contextmanager
def olah_server(
    work: Path, test_file: Path, sha: str, venv: Path, hf_home: Path
) -> Iterator[tuple[str, str]]:
    """Serve the test file from a local git mirror with olah offline; yield (endpoint, commit)."""
    cli = ensure_olah_venv(venv)
    base = work / "olah"
    mirrors = base / "mirrors"
    commit = build_git_mirror(mirrors, test_file, sha)
    port = free_port()
    conf = base / "olah.toml"
    conf.write_text(OLAH_TOML.format(port=port, repos=base / "repos", mirrors=mirrors))
    cmd = [str(cli), "-c", str(conf), "--log-path", str(base / "logs")]
    log_path = base / "olah.out"
    with server_process("olah", cmd, child_env(hf_home), log_path, cwd=base) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/api/models/{REPO_ID}/revision/{commit}", proc, log_path)
        yield url, commit


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class Series:
    """Repeated throughput samples of one client against one server."""

    test: str
    server: str
    mb_per_s: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.mb_per_s)


def python_get(url: str, expected: int, timeout: float) -> float:
    """GET `url` (following redirects), discard the body; return MB/s."""
    buffer = memoryview(bytearray(PIECE))
    start = time.perf_counter()
    for _ in range(5):
        conn, response = open_get(url, timeout)
        try:
            location = response.getheader("Location")
            if response.status in {301, 302, 303, 307, 308} and location:
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise BenchError(f"GET {url}: HTTP {response.status}")
            received = 0
            while count := response.readinto(buffer):
                received += count
        finally:
            conn.close()
        elapsed = time.perf_counter() - start
        if received != expected:
            raise BenchError(f"GET {url}: {received} bytes, expected {expected}")
        return expected / elapsed / MB
    raise BenchError(f"GET {url}: too many redirects")


def curl_get(url: str, expected: int, timeout: float) -> float:
    """GET `url` with curl; return curl's own average speed in MB/s."""
    out = run_checked(
        [
            "curl",
            "-s",
            "-L",
            "-o",
            "/dev/null",
            "--max-time",
            str(int(timeout)),
            "-w",
            "%{http_code} %{size_download} %{speed_download}",
            url,
        ],
        dict(os.environ),
        timeout=timeout + 10,
    )
    code, size, speed = out.split()
    if code != "200" or int(float(size)) != expected:
        raise BenchError(f"curl {url}: HTTP {code}, {size} bytes (expected {expected})")
    return float(speed) / MB


def snapshot_get(
    endpoint: str,
    commit: str,
    work: Path,
    env: dict[str, str],
    expected: int,
    sha: str | None,
    timeout: float,
) -> float:
    """snapshot_download in a child into a fresh cache; check size (and sha256); return MB/s."""
    cache = Path(tempfile.mkdtemp(prefix="snap-", dir=work))
    try:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "child-snapshot",
            "--endpoint",
            endpoint,
            "--revision",
            commit,
            "--cache-dir",
            str(cache),
        ]
        result = json.loads(run_checked(cmd, env, timeout=timeout).strip().splitlines()[-1])
        local = Path(result["path"]) / FILENAME
        if local.stat().st_size != expected:
            raise BenchError(f"snapshot from {endpoint}: {local.stat().st_size} bytes")
        if sha is not None and sha256_of(local) != sha:
            raise BenchError(f"snapshot from {endpoint}: sha256 mismatch")
        return expected / float(result["seconds"]) / MB
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Child processes (huggingface_hub is only imported here, with the environment set by the parent)
# ---------------------------------------------------------------------------------------------


def child_upload(args: argparse.Namespace) -> None:
    """Create the repository, upload the test file, print the commit sha as JSON."""
    from huggingface_hub import HfApi  # noqa: PLC0415 - imported after the parent set the env

    api = HfApi(endpoint=args.endpoint)  # token from HF_TOKEN
    api.create_repo(REPO_ID, exist_ok=True)
    start = time.perf_counter()
    api.upload_file(path_or_fileobj=args.file, path_in_repo=FILENAME, repo_id=REPO_ID)
    seconds = time.perf_counter() - start
    sha = api.model_info(REPO_ID).sha
    print(json.dumps({"commit": sha, "seconds": seconds}))


def child_snapshot(args: argparse.Namespace) -> None:
    """Time one snapshot_download; print the elapsed seconds and the snapshot path as JSON."""
    from huggingface_hub import snapshot_download  # noqa: PLC0415 - env set by the parent

    start = time.perf_counter()
    path = snapshot_download(
        REPO_ID, revision=args.revision, endpoint=args.endpoint, cache_dir=args.cache_dir
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "path": str(path)}))


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="download.py child")
    sub = parser.add_subparsers(dest="cmd", required=True)
    upload = sub.add_parser("child-upload")
    upload.add_argument("--endpoint", required=True)
    upload.add_argument("--file", required=True)
    snap = sub.add_parser("child-snapshot")
    snap.add_argument("--endpoint", required=True)
    snap.add_argument("--revision", required=True)
    snap.add_argument("--cache-dir", required=True)
    args = parser.parse_args(argv)
    {"child-upload": child_upload, "child-snapshot": child_snapshot}[args.cmd](args)


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table."""

    test: str
    kaiyuan: float | None
    reference: str
    reference_mb_per_s: float | None
    target: float

    @property
    def ratio(self) -> float | None:
        if self.kaiyuan is None or not self.reference_mb_per_s:
            return None
        return self.kaiyuan / self.reference_mb_per_s

    @property
    def passed(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio >= self.target


@dataclass
class Bench:
    """Shared state of one run."""

    args: argparse.Namespace
    work: Path
    test_file: Path
    size: int
    sha: str
    hf_home: Path
    series: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def median(self, test: str, server: str) -> float | None:
        for series in self.series:
            if series.test == test and series.server == server and series.mb_per_s:
                return series.median
        return None

    def note(self, message: str) -> None:
        log(message)
        self.notes.append(message)

    def rows(self) -> list[Row]:
        tests = [
            ("raw HTTP GET (python)", "nginx", RAW_TARGET),
            ("raw HTTP GET (curl)", "nginx", RAW_TARGET),
            ("snapshot_download", "olah", SNAPSHOT_TARGET),
        ]
        return [
            Row(test, self.median(test, "kaiyuan"), ref, self.median(test, ref), target)
            for test, ref, target in tests
        ]


@contextlib.contextmanager
def kaiyuan_target(bench: Bench) -> Iterator[Target]:
    settings = {"KAIYUAN_XET_CHUNK_COMPRESSION": bench.args.compression}
    with kaiyuan_server(bench.work, bench.hf_home, **settings) as (endpoint, token):
        env = child_env(bench.hf_home, HF_TOKEN=token)  # not on the command line (ps)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "child-upload",
            "--endpoint",
            endpoint,
            "--file",
            str(bench.test_file),
        ]
        log(f"uploading {bench.size / MB:.0f} MB to {endpoint}/{REPO_ID}")
        uploaded = json.loads(run_checked(cmd, env, timeout=bench.args.timeout).splitlines()[-1])
        bench.note(f"kaiyuan upload: {bench.size / MB / uploaded['seconds']:.1f} MB/s (1 run)")
        commit = str(uploaded["commit"])
        yield Target(
            "kaiyuan", f"{endpoint}/{REPO_ID}/resolve/main/{FILENAME}", (endpoint, commit, env)
        )


@contextlib.contextmanager
def nginx_target(bench: Bench) -> Iterator[Target | None]:
    if not NGINX.exists():
        bench.note(f"{NGINX} not found: nginx skipped (install: apt-get install -y nginx)")
        yield None
        return
    with nginx_server(bench.work, bench.test_file) as url:
        yield Target("nginx", url, None)


@contextlib.contextmanager
def olah_target(bench: Bench) -> Iterator[Target]:
    venv = Path(bench.args.olah_venv)
    with olah_server(bench.work, bench.test_file, bench.sha, venv, bench.hf_home) as (url, commit):
        yield Target("olah", None, (url, commit, child_env(bench.hf_home)))


@dataclass
class Target:
    """A running server: where to GET the file raw, and how to snapshot_download it."""

    name: str
    raw_url: str | None
    snapshot: tuple[str, str, dict[str, str]] | None


TARGETS: dict[str, Callable[[Bench], contextlib.AbstractContextManager[Target | None]]] = {
    "kaiyuan": kaiyuan_target,
    "nginx": nginx_target,
    "olah": olah_target,
}


def measure_interleaved(bench: Bench, targets: list[Target]) -> None:
    """Round-robin: run i of every server comes before run i+1 of any, so drift hits all alike."""
    timeout = bench.args.timeout
    clients: list[tuple[str, Callable[[Target, int], float | None]]] = [
        (
            "raw HTTP GET (python)",
            lambda t, _i: _raw(t, lambda u: python_get(u, bench.size, timeout)),
        ),
        ("snapshot_download", lambda t, i: _snapshot(bench, t, i)),
    ]
    if shutil.which("curl") is None:
        bench.note("curl not found: curl rows skipped")
    else:
        clients.insert(
            1,
            (
                "raw HTTP GET (curl)",
                lambda t, _i: _raw(t, lambda u: curl_get(u, bench.size, timeout)),
            ),
        )
    for test, sample in clients:
        series = {t.name: Series(test, t.name) for t in targets}
        for index in range(bench.args.repeat):
            for target in targets:
                value = sample(target, index)
                if value is None:
                    continue
                series[target.name].mb_per_s.append(value)
                log(f"{test} from {target.name}: run {index + 1}: {value:.1f} MB/s")
        bench.series += [s for s in series.values() if s.mb_per_s]


def _raw(target: Target, get: Callable[[str], float]) -> float | None:
    return get(target.raw_url) if target.raw_url else None


def _snapshot(bench: Bench, target: Target, index: int) -> float | None:
    if target.snapshot is None:
        return None
    endpoint, commit, env = target.snapshot
    sha = bench.sha if index == 0 else None
    return snapshot_get(endpoint, commit, bench.work, env, bench.size, sha, bench.args.timeout)


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + suffix


def print_table(bench: Bench) -> None:
    header = ("test", "Kaiyuan MB/s", "reference", "ref MB/s", "ratio", "target", "result")
    lines = [header]
    for row in bench.rows():
        result = {True: "pass", False: "FAIL", None: "n/a"}[row.passed]
        lines.append(
            (
                row.test,
                fmt(row.kaiyuan, ".1f"),
                row.reference,
                fmt(row.reference_mb_per_s, ".1f"),
                fmt(row.ratio, ".2f", "x"),
                f">= {row.target:g}x",
                result,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(f"\nDownload throughput, {bench.size / MB:.0f} MB file, median of {bench.args.repeat}:")
    for index, line in enumerate(lines):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for note in bench.notes:
        print(f"note: {note}")


def write_json(bench: Bench, path: Path) -> None:
    report: dict[str, Any] = {
        "size_bytes": bench.size,
        "sha256": bench.sha,
        "repeat": bench.args.repeat,
        "targets": bench.args.targets,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "series": [asdict(s) | {"median": s.median} for s in bench.series if s.mb_per_s],
        "rows": [asdict(r) | {"ratio": r.ratio, "passed": r.passed} for r in bench.rows()],
        "notes": bench.notes,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {path}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download throughput of Kaiyuan against nginx (raw GET) and olah "
        "(snapshot_download), all on 127.0.0.1."
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="test file size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--compression",
        choices=("zstd", "lz4", "none"),
        default="zstd",
        help="the hub's KAIYUAN_XET_CHUNK_COMPRESSION (default zstd, the hub's default)",
    )
    parser.add_argument(
        "--content",
        choices=("random", "bf16"),
        default="random",
        help="random bytes (stored raw, sent zero-copy) or bf16 weights (stored compressed, "
        "decoded when sent)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help="comma list of kaiyuan,nginx,olah (default: all)",
    )
    parser.add_argument("--work-dir", type=Path, help="work directory (default: a fresh tempdir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--olah-venv",
        default=str(DEFAULT_OLAH_VENV),
        help=f"olah virtualenv (default {DEFAULT_OLAH_VENV}; created if missing)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="limit in seconds for one upload or download (default 600)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(ALL_TARGETS))
    if unknown or not targets:
        parser.error(f"--targets: unknown {unknown}; choose from {', '.join(ALL_TARGETS)}")
    if args.size_mib < 1 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be at least 1")
    args.targets = [t for t in ALL_TARGETS if t in targets]
    return args


@contextlib.contextmanager
def work_dir(args: argparse.Namespace) -> Iterator[Path]:
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="kaiyuan-bench-", dir=args.work_dir))
    else:
        path = Path(tempfile.mkdtemp(prefix="kaiyuan-bench-"))
    try:
        yield path
    finally:
        if args.keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv and argv[0].startswith("child-"):
        child_main(argv)
        return 0
    args = parse_args(argv)
    with work_dir(args) as work:
        size = args.size_mib * 1024 * 1024
        test_file = work / FILENAME
        log(f"writing {size / MB:.0f} MB of {args.content} data to {test_file}")
        sha = write_random_file(test_file, size, args.content)
        hf_home = work / "hf-home"
        hf_home.mkdir()
        bench = Bench(args, work, test_file, size, sha, hf_home)
        with contextlib.ExitStack() as stack:
            running = [stack.enter_context(TARGETS[name](bench)) for name in args.targets]
            measure_interleaved(bench, [t for t in running if t is not None])
        print_table(bench)
        if args.json is not None:
            write_json(bench, args.json)
        failed = any(row.passed is False for row in bench.rows())
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
