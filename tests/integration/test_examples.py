"""The examples per backend on real servers: schema loaded, tests run, main.cf asked through.

Each directory of examples/ (PostgreSQL, MariaDB, dbmail on MariaDB) has a config, its
schema SQL, a test file and a main.cf snippet. Here the schema goes into a database of
its own on this run's server, the config is pointed at it (only the listener and the
database connection change), and its [[tests]] and test file must pass: run directly,
by --check-config --connect, against a running daemon, and through Postfix's postmap
with the socketmap tables of the main.cf snippet.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from sockmapd.config.map_tests import expectation_matches
from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Server, unique_name
from tests.integration.test_container_config import _statements
from tests.unit.test_container import ROOT, SOCKETMAP_RE

EXAMPLES = ROOT / "examples"
# Example directory -> the server it runs on.
SERVERS = {"postgresql": "pg_server", "mariadb": "mysql_server", "dbmail": "mysql_server"}


@dataclass(frozen=True)
class Loaded:
    """An example's config, pointed at a database loaded from its schema, and its tests."""

    name: str
    config: Path
    tests: Path
    port: int

    def document(self) -> dict[str, Any]:
        """Return the config as loaded."""
        return tomllib.loads(self.config.read_text())

    def cases(self) -> list[dict[str, str]]:
        """Return every test: the config's [[tests]], then the test file's."""
        file_tests: list[dict[str, str]] = tomllib.loads(self.tests.read_text())["tests"]
        config_tests: list[dict[str, str]] = self.document().get("tests", [])
        return config_tests + file_tests


@pytest.fixture(params=sorted(SERVERS))
def example(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Loaded]:
    """An example loaded into its own database on the real server; dropped afterwards."""
    name: str = request.param
    server: Server = request.getfixturevalue(SERVERS[name])
    directory = EXAMPLES / name
    database_name = unique_name(f"ex_{name}")
    database = server.create_database(database_name)
    try:
        database.execute(_statements((directory / "schema.sql").read_text()))
        document = tomllib.loads((directory / "sockmapd.toml").read_text())
        port = free_port()
        # The tests run as root; the example runs as its own user.
        document["server"] = {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True}
        (database_key,) = document["databases"]
        document["databases"][database_key] = {"url": database.url}
        config = tmp_path / "sockmapd.toml"
        # As [[tests]] tables, one header per test, as the example writes them.
        tests_text = "".join(
            "\n[[tests]]\n" + tomli_w.dumps(test) for test in document.pop("tests")
        )
        config.write_text(tomli_w.dumps(document) + tests_text)
        tests = tmp_path / "tests.toml"
        shutil.copy(directory / "tests.toml", tests)
        yield Loaded(name, config, tests, port)
    finally:
        server.drop_database(database_name)


def _sockmapd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sockmapd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _summary(stdout: str) -> str:
    return stdout.splitlines()[-1].strip("= ")


def test_example_has_every_part() -> None:
    for name in SERVERS:
        parts = sorted(path.name for path in (EXAMPLES / name).iterdir())
        assert parts == ["main.cf", "schema.sql", "sockmapd.toml", "tests.toml"], name


def test_example_tests_pass_on_its_database(example: Loaded, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    result = _sockmapd(
        "test", "-c", str(example.config), "--junit-xml", str(report), str(example.tests)
    )
    count = len(example.cases())
    assert (result.returncode, _summary(result.stdout)) == (0, f"{count} passed"), result.stdout
    root = ET.fromstring(report.read_bytes())
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == (str(count), "0", "0")


def test_example_config_passes_check_config_connect(example: Loaded) -> None:
    result = _sockmapd("--check-config", "--connect", "-c", str(example.config))
    assert result.returncode == 0, result.stderr
    count = len(example.document()["tests"])
    assert f"{example.config}: tests: {count} passed\n" in result.stdout


def test_example_fails_when_its_data_changes(example: Loaded, tmp_path: Path) -> None:
    """The example's tests can fail: a test file expecting other data does."""
    case = example.cases()[-1]
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[[tests]]\n" + tomli_w.dumps({**case, "expect": "OK changed-data"}))
    result = _sockmapd("test", "-c", str(example.config), str(wrong))
    assert result.returncode == 1, result.stdout
    assert f"FAILED {wrong}:1 {case['map']} " in result.stdout
    # The same test in the config: --check-config --connect (the unit's ExecReload) refuses it.
    config = tmp_path / "changed.toml"
    config.write_text(example.config.read_text() + "\n" + wrong.read_text())
    result = _sockmapd("--check-config", "--connect", "-c", str(config))
    assert result.returncode == 1, result.stdout
    assert f"FAILED {config}:" in result.stderr
    passed = len(example.document()["tests"])
    assert result.stderr.endswith(f"{config}: tests: 1 failed, {passed} passed\n")
    assert result.stdout == ""


def test_example_answers_postfix_as_its_tests_expect(
    example: Loaded, postmap: list[str], tmp_path: Path
) -> None:
    main_cf = (EXAMPLES / example.name / "main.cf").read_text()
    tables = {
        found["map"]: found.group().replace(f":{found['port']}:", f":{example.port}:")
        for found in SOCKETMAP_RE.finditer(main_cf)
    }
    # Every map of the example is used by its main.cf, and nothing else is.
    assert sorted(tables) == sorted(example.document()["maps"])
    daemon = Daemon(example.config, example.port)
    try:
        result = _sockmapd(
            "test", "--server", f"tcp://127.0.0.1:{example.port}", "-c", str(example.config)
        )
        assert result.returncode == 0, result.stdout
        result = _sockmapd(
            "test", "--server", f"tcp://127.0.0.1:{example.port}", str(example.tests)
        )
        assert result.returncode == 0, result.stdout
        for case in example.cases():
            answer = subprocess.run(
                [*postmap, "-q", case["key"], tables[case["map"]]],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if case["expect"] == "NOTFOUND":
                assert (answer.returncode, answer.stdout) == (1, ""), (case, answer.stderr)
            else:
                assert answer.returncode == 0, (case, answer.stderr)
                got = "OK " + answer.stdout.removesuffix("\n")
                assert expectation_matches(case["expect"], got), (case, got)
    finally:
        assert daemon.stop() == 0


def test_example_main_cf_is_clean_for_postconf(postmap: list[str], tmp_path: Path) -> None:
    """postconf warns about every parameter it does not know (a typo, a removed one)."""
    postconf = Path(postmap[0]).with_name("postconf")
    (tmp_path / "master.cf").write_text("")
    for name in SERVERS:
        shutil.copy(EXAMPLES / name / "main.cf", tmp_path / "main.cf")
        result = subprocess.run(
            [str(postconf), "-c", str(tmp_path), "-n"], capture_output=True, text=True, check=False
        )
        assert (result.returncode, result.stderr) == (0, ""), name


def test_quickstart_tests_pass_against_a_running_server(tmp_path: Path) -> None:
    port = free_port()
    text = (EXAMPLES / "quickstart.toml").read_text()
    config = tmp_path / "quickstart.toml"
    config.write_text(text.replace("127.0.0.1:2224", f"127.0.0.1:{port}"))
    for name in ("quickstart.sql", "quickstart.tests.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    daemon = Daemon(config, port)
    try:
        result = _sockmapd(
            "test",
            "--server",
            f"tcp://127.0.0.1:{port}",
            "-c",
            str(config),
            str(tmp_path / "quickstart.tests.toml"),
        )
        assert (result.returncode, _summary(result.stdout)) == (0, "10 passed"), result.stdout
    finally:
        assert daemon.stop() == 0
