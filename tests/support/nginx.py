"""A private nginx in front of hub processes, configured with the deployment guide's own block.

The guide (`docs/deployment.md`) marks its nginx configuration with `GUIDE_MARK`; `site_from_guide`
takes that block as written and changes only what a test must: the upstream servers, the listen
ports, the certificate paths and the access log. Each change must find its target, so a guide
edit that the test can no longer follow fails loudly instead of testing something else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
GUIDE_MARK = "<!-- tested: tests/integration/test_deployment.py runs this block -->"

LOG_FORMAT = "deployment_test"
MAIN_CONF = """\
worker_processes 2;
{user}
error_log {prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    log_format {log_format} '"$request" $status upstream=$upstream_addr';
    include {site};
}}
"""


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None


def guide_block(guide: Path = GUIDE) -> str:
    """The fenced nginx block right after the guide's mark."""
    _, mark, rest = guide.read_text().partition(GUIDE_MARK)
    if not mark:
        raise AssertionError(f"{guide} lost its mark {GUIDE_MARK!r}")
    block = re.match(r"\s*```nginx\n(.*?)\n```", rest, re.DOTALL)
    if block is None:
        raise AssertionError(f"no ```nginx block follows the mark in {guide}")
    return block.group(1) + "\n"


@dataclass(frozen=True)
class Tls:
    certificate: Path
    key: Path


def _sub(pattern: str, replace: str, text: str, what: str) -> str:
    changed, count = re.subn(pattern, replace, text, flags=re.MULTILINE)
    if count == 0:
        raise AssertionError(
            f"the guide's nginx block has no {what}; update tests/support/nginx.py"
        )
    return changed


def site_from_guide(
    block: str,
    *,
    upstreams: list[str],
    port: int,
    redirect_port: int,
    access_log: Path,
    tls: Tls | None,
) -> str:
    """The guide's block for 127.0.0.1: `port` serves (TLS or not), `redirect_port` redirects."""
    upstream = re.search(r"^upstream\s+\w+\s*\{\n(.*?)^\}", block, re.MULTILINE | re.DOTALL)
    if upstream is None:
        raise AssertionError("the guide's nginx block has no upstream")
    lines = upstream.group(1).splitlines(keepends=True)
    servers = [n for n, line in enumerate(lines) if re.match(r"\s*server\s+\S+", line)]
    if not servers:
        raise AssertionError("the guide's upstream lists no server")
    template = lines[servers[0]]
    ours = "".join(re.sub(r"server\s+\S+?(?=[\s;])", f"server {u}", template) for u in upstreams)
    kept = [line for n, line in enumerate(lines) if n not in servers[1:]]
    kept[servers[0]] = ours
    site = block[: upstream.start(1)] + "".join(kept) + block[upstream.end(1) :]

    # IPv6 listen lines are optional in the guide; the test listens on 127.0.0.1 only.
    site = re.sub(r"^[ \t]*listen[ \t]+\[::\][^;]*;[^\n]*\n", "", site, flags=re.MULTILINE)
    site = _sub(r"listen\s+80\b[^;]*;", f"listen 127.0.0.1:{redirect_port};", site, "listen 80")
    ssl = " ssl" if tls else ""
    site = _sub(r"listen\s+443\b[^;]*;", f"listen 127.0.0.1:{port}{ssl};", site, "listen 443")
    if tls is None:
        site = _sub(r"^[ \t]*ssl_\w+[^;]*;[^\n]*\n", "", site, "ssl_ directives")
    else:
        site = _sub(
            r"ssl_certificate\s+[^;]+;", f"ssl_certificate {tls.certificate};", site, "certificate"
        )
        site = _sub(r"ssl_certificate_key\s+[^;]+;", f"ssl_certificate_key {tls.key};", site, "key")
    # The test's own format: which process answered each request, whatever the guide logs.
    return _sub(
        r"access_log\s+[^;]+;", f"access_log {access_log} {LOG_FORMAT};", site, "access_log"
    )


class Nginx:
    """nginx -p PREFIX -c CONF -g 'daemon off; pid …;' as a child process."""

    def __init__(self, prefix: Path, site: str, ports: list[int]) -> None:
        self.prefix = prefix
        self.ports = ports
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.site_path = prefix / "kaiyuan.conf"
        self.site_path.write_text(site)
        self.conf_path = prefix / "nginx.conf"
        # As root, workers would drop to `nobody`, who cannot enter the test's temp directories.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf_path.write_text(
            MAIN_CONF.format(user=user, prefix=prefix, site=self.site_path, log_format=LOG_FORMAT)
        )
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, nginx: str, *extra: str) -> list[str]:
        return [
            nginx,
            "-p",
            str(self.prefix),
            "-e",
            str(self.prefix / "error.log"),
            "-c",
            str(self.conf_path),
            "-g",
            f"daemon off; pid {self.prefix / 'nginx.pid'};",
            *extra,
        ]

    def start(self, nginx: str) -> None:
        check = subprocess.run(
            self.command(nginx, "-t"), capture_output=True, text=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise AssertionError(f"nginx -t refused the configuration:\n{check.stderr}")
        with (self.prefix / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(
                self.command(nginx), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        for port in self.ports:
            while not _listening(port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not come up:\n{self.error_log()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextlib.contextmanager
def running_nginx(nginx: str, prefix: Path, site: str, ports: list[int]) -> Iterator[Nginx]:
    server = Nginx(prefix, site, ports)
    server.start(nginx)
    try:
        yield server
    finally:
        server.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def make_private_ca(directory: Path) -> tuple[Path, Tls]:
    """A private CA (ca.pem) and a server certificate it signed for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kaiyuan test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certificate = directory / "fullchain.pem"
    certificate.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path = directory / "privkey.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, Tls(certificate, key_path)
