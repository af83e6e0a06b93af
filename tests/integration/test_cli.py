"""The `kaiyuan` command line as other tools call it: admin commands and their exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.hubs import HubProcess, wait_until_up
from tests.support.postgres import free_port


def kaiyuan(data_dir: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAIYUAN_FSYNC": "false", **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "kaiyuan", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_admin_commands_and_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert kaiyuan(data, "admin", "user", "create", "carol").returncode == 0
    assert kaiyuan(data, "admin", "user", "create", "dave").returncode == 0
    assert (
        kaiyuan(
            data, "admin", "org", "create", "lab", "--member", "carol", "--member", "dave"
        ).returncode
        == 0
    )
    token_run = kaiyuan(data, "admin", "token", "create", "carol", "--scope", "write")
    assert token_run.returncode == 0
    token = token_run.stdout.strip()
    assert token.startswith("ky_")
    assert token_run.stdout == token + "\n"  # nothing else on stdout: scripts capture it
    port = free_port()
    env = {**os.environ, "KAIYUAN_DATA_DIR": str(data), "KAIYUAN_FSYNC": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "kaiyuan", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server)
        me = httpx.get(f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"}).json()
        assert me["name"] == "carol"
        assert [o["name"] for o in me["orgs"]] == ["lab"]
        signed_in = httpx.post(f"{url}/-/login", data={"token": token}, follow_redirects=False)
        session = {"Cookie": f"kaiyuan_session={signed_in.cookies['kaiyuan_session']}"}
        assert "Sign out" in httpx.get(url, headers=session).text
        # revoking the token (by its id) ends the token and the browser session at once
        deleted = kaiyuan(data, "admin", "token", "delete", token[3:19])
        assert deleted.returncode == 0, deleted.stderr
        again = httpx.get(f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"})
        assert again.status_code == 401
        assert "Sign out" not in httpx.get(url, headers=session).text
        assert kaiyuan(data, "admin", "token", "delete", token).returncode != 0  # gone already
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_admin_errors_have_exit_codes_and_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert kaiyuan(data, "admin", "user", "create", "erin").returncode == 0
    taken = kaiyuan(data, "admin", "user", "create", "erin")
    assert taken.returncode == 4
    assert taken.stderr.startswith("error: ") and "next:" in taken.stderr
    missing = kaiyuan(data, "admin", "token", "create", "nobody")
    assert missing.returncode == 3
    assert missing.stdout == ""
    bad_name = kaiyuan(data, "admin", "user", "create", "../x")
    assert bad_name.returncode == 2
    bad_scope = kaiyuan(data, "admin", "token", "create", "erin", "--scope", "admin")
    assert bad_scope.returncode == 2
    assert kaiyuan(data, "admin", "org", "create", "team", "--member", "ghost").returncode == 3


def test_bad_settings_and_unreachable_database(tmp_path: Path) -> None:
    bad_port = kaiyuan(tmp_path, "serve", KAIYUAN_PORT="eighty")
    assert bad_port.returncode == 2
    assert "KAIYUAN_PORT" in bad_port.stderr
    assert "Traceback" not in bad_port.stderr
    down = kaiyuan(
        tmp_path,
        "admin",
        "user",
        "create",
        "x",
        KAIYUAN_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
    )
    assert down.returncode == 6
    assert down.stderr.count("\n") == 1
    assert "database is unavailable" in down.stderr


def test_admin_migrate_reports_and_leaves_a_newer_schema_alone(tmp_path: Path) -> None:
    data = tmp_path / "new" / "dir"  # not there yet: migrate creates it
    first = kaiyuan(data, "admin", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("schema migrated from empty to ")
    head = first.stdout.split()[-1]
    again = kaiyuan(data, "admin", "migrate")
    assert again.stdout == f"schema already at {head}\n"

    import sqlite3  # a newer version migrated this database further

    with sqlite3.connect(data / "kaiyuan.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffff0001'")
    newer = kaiyuan(data, "admin", "migrate")
    assert newer.returncode == 0, newer.stderr
    assert "newer than this version knows" in newer.stdout
    node = HubProcess(data, {**os.environ, "KAIYUAN_FSYNC": "false"})
    node.start()  # it serves on the newer schema
    node.stop()
