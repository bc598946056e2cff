"""The compose example without Docker: its config, schema and main.cf on real servers."""

# compose.yaml fills PostgreSQL from examples/quickstart.sql, runs sockmapd on
# contrib/docker/sockmapd.toml and points Postfix at it with contrib/docker/postfix/main.cf.
# Here the same three files meet on this run's PostgreSQL, a real sockmapd and postmap;
# only the host names and ports change. Docker itself is exercised by the CI workflow.

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tomli_w

from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Server, unique_name
from tests.unit.test_container import (
    CONTAINER_CONFIG,
    POSTFIX_DIR,
    ROOT,
    SOCKETMAP_RE,
    container_config_document,
)

pytestmark = pytest.mark.postfix


def _statements(sql: str) -> list[str]:
    """Split a plain SQL script (no ';' inside literals) into statements."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def _postmap(postmap: list[str], key: str, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*postmap, "-q", key, table], capture_output=True, text=True, timeout=60, check=False
    )


def test_main_cf_is_clean_for_postconf(tmp_path: Path, postmap: list[str]) -> None:
    """postconf warns about every parameter it does not know (a typo, a removed one)."""
    postconf = Path(postmap[0]).with_name("postconf")
    shutil.copy(POSTFIX_DIR / "main.cf", tmp_path / "main.cf")
    (tmp_path / "master.cf").write_text("")
    result = subprocess.run(
        [str(postconf), "-c", str(tmp_path), "-n"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_compose_example_answers_postfix(
    pg_server: Server, postmap: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("compose")
    database = pg_server.create_database(name)
    try:
        database.execute(_statements((ROOT / "examples" / "quickstart.sql").read_text()))
        port = free_port()
        document = container_config_document()
        document["server"]["listen"] = [f"tcp://127.0.0.1:{port}"]
        # The tests run as root in CI; the image itself runs as uid 10000.
        document["server"]["allow_root"] = True
        metrics_port = free_port()
        document["metrics"]["listen"] = f"tcp://127.0.0.1:{metrics_port}"
        url = pg_server.url
        document["databases"]["mail"].update(
            hosts=[url.host or "127.0.0.1"], port=url.port or 5432, name=name, user=url.username
        )
        monkeypatch.setenv("SOCKMAPD_DB_PASSWORD", url.password or "")
        config = tmp_path / CONTAINER_CONFIG.name
        config.write_text(tomli_w.dumps(document))

        daemon = Daemon(config, port)
        try:
            main_cf = (POSTFIX_DIR / "main.cf").read_text()
            tables = {m["map"]: m[0] for m in SOCKETMAP_RE.finditer(main_cf)}
            here = {k: v.replace("sockmapd:2224", f"127.0.0.1:{port}") for k, v in tables.items()}
            answers = {
                ("recipient", "alice@example.com"): "example.com/alice/\n",
                ("alias", "info@example.com"): "alice@example.com,bob@example.com\n",
                ("access", "spammer@example.net"): "REJECT spam source\n",
            }
            for (map_name, key), expected in answers.items():
                result = _postmap(postmap, key, here[map_name])
                assert result.stdout == expected, (map_name, key, result.stderr)
            missing = _postmap(postmap, "nobody@example.com", here["recipient"])
            assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", "")
            health = f"http://127.0.0.1:{metrics_port}/healthz"
            with urllib.request.urlopen(health, timeout=10) as response:
                assert response.status == 200
        finally:
            assert daemon.stop() == 0, daemon.log()
    finally:
        pg_server.drop_database(name)
