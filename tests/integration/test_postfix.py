"""Real Postfix (postmap -q) queries a running sockmapd over TCP and a unix socket."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import DaemonFactory
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.postfix


def _table(daemon: Daemon, map_name: str, *, unix: bool = False) -> str:
    if unix:
        return f"socketmap:unix:{daemon.unix_path}:{map_name}"
    return f"socketmap:inet:127.0.0.1:{daemon.port}:{map_name}"


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("unix", [False, True], ids=["inet", "unix"])
def test_postmap_found_key_prints_the_value(
    start_daemon: DaemonFactory, postmap: list[str], unix: bool
) -> None:
    daemon = start_daemon(unix=True)
    result = _run([*postmap, "-q", "alice@example.com", _table(daemon, "recipient", unix=unix)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "alice@example.com\n"
    result = _run(
        [*postmap, "-q", "hello@buydirect4u.co.uk", _table(daemon, "blacklist", unix=unix)]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "REJECT Sender identified as spammer\n"


@pytest.mark.parametrize("unix", [False, True], ids=["inet", "unix"])
def test_postmap_missing_key_exits_1_without_error(
    start_daemon: DaemonFactory, postmap: list[str], unix: bool
) -> None:
    daemon = start_daemon(unix=True)
    result = _run([*postmap, "-q", "nobody@example.com", _table(daemon, "recipient", unix=unix)])
    assert result.returncode == 1
    assert result.stdout == ""
    # Not found is silent; an error would say so on stderr.
    assert result.stderr == "", result.stderr


def test_postmap_temp_failure_is_reported_as_an_error(daemon: Daemon, postmap: list[str]) -> None:
    result = _run([*postmap, "-q", "alice@example.com", _table(daemon, "broken")])
    assert result.returncode == 1
    assert "temporary" in result.stderr.lower() or "TEMP" in result.stderr, result.stderr


def test_postmap_several_keys_over_one_connection(
    start_daemon: DaemonFactory, postmap: list[str]
) -> None:
    daemon = start_daemon(unix=True)
    keys = ["alice@example.com", "nobody@example.com", "bob@example.com", "*", "user@[192.0.2.1]"]
    for unix in (False, True):
        result = _run(
            [*postmap, "-q", "-", _table(daemon, "recipient", unix=unix)],
            stdin="".join(f"{key}\n" for key in keys),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "alice@example.com\talice@example.com",
            "bob@example.com\tbob@example.com",
            "*\t*",
            "user@[192.0.2.1]\tuser@[192.0.2.1]",
        ]
    # postmap -q - keeps one connection open for all its keys.
    connects = [line for line in daemon.log().splitlines() if "map=recipient" in line]
    assert len(connects) == 2 * len(keys)


def test_quickstart_example_answers_postmap(tmp_path: Path, postmap: list[str]) -> None:
    """The README's quick start: the example config creates its own database and answers."""
    from tests.integration.daemon import free_port

    example = Path(__file__).parents[2] / "examples"
    work = tmp_path / "example"
    work.mkdir()
    port = free_port()
    text = (example / "quickstart.toml").read_text().replace("127.0.0.1:2224", f"127.0.0.1:{port}")
    (work / "quickstart.toml").write_text(text)
    shutil.copy(example / "quickstart.sql", work / "quickstart.sql")
    daemon = Daemon(work / "quickstart.toml", port)
    try:
        assert (work / "quickstart.sqlite3").exists()
        result = _run([*postmap, "-q", "alice@example.com", _table(daemon, "recipient")])
        assert result.stdout == "example.com/alice/\n", result.stderr
        result = _run([*postmap, "-q", "spammer@example.net", _table(daemon, "access")])
        assert result.stdout == "REJECT spam source\n", result.stderr
        result = _run([*postmap, "-q", "nobody@example.com", _table(daemon, "recipient")])
        assert (result.returncode, result.stdout) == (1, "")
    finally:
        assert daemon.stop() == 0
