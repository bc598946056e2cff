"""The command line: check, convert and usage errors (no server involved)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sockmapd import __version__
from sockmapd.cli import main
from sockmapd.config import load_config
from tests.unit.test_config_legacy import LEGACY_SAMPLE


@pytest.fixture
def legacy_file(tmp_path: Path) -> Path:
    path = tmp_path / "sockmapd.json"
    path.write_text(LEGACY_SAMPLE)
    return path


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"sockmapd {__version__}\n"


def test_check_config_accepts_the_legacy_sample(
    legacy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check-config", "-c", str(legacy_file)]) == 0
    assert "configuration OK (2 maps, 2 databases)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("maps", "counts"),
    [
        ({"m": "t"}, "1 map, 1 database"),
        ({"m": "t", "n": "u"}, "2 maps, 1 database"),
        ({}, "0 maps, 1 database"),
    ],
)
def test_check_config_counts_in_the_singular_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], maps: dict[str, str], counts: str
) -> None:
    path = tmp_path / "one.toml"
    path.write_text(
        '[databases.d]\nurl = "sqlite+aiosqlite:////tmp/x.db"\n'
        + "".join(
            f'[maps.{n}]\ndatabase = "d"\ntable = "{t}"\nkey = "k"\n' for n, t in maps.items()
        )
    )
    assert main(["--check-config", "-c", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: configuration OK ({counts})\n"


def test_check_config_reports_every_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[server]\nlisten = ["tcp://127.0.0.1:99999"]\n'
        '[databases.d]\nurl = "sqlite+aiosqlite:////tmp/x.db"\n'
        '[maps.m]\ndatabase = "nope"\ntable = "t; DROP TABLE t"\nkey = "k"\n'
    )
    assert main(["--check-config", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: server.listen[0]:" in err
    assert f"{path}: maps.m.database:" in err
    assert f"{path}: maps.m.table:" in err
    assert "Traceback" not in err


def test_convert_round_trips(
    legacy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "convert", "--show-secrets", str(legacy_file)]) == 0
    converted = tmp_path / "converted.toml"
    converted.write_text(capsys.readouterr().out)
    assert load_config(converted) == load_config(legacy_file)


def test_convert_masks_passwords_by_default(
    legacy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "convert", str(legacy_file)]) == 0
    out = capsys.readouterr().out
    assert '"secret"' not in out
    assert tomllib.loads(out)["databases"]["postfix"]["password"] == "********"


def test_connect_needs_check_config(legacy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--connect", "-c", str(legacy_file)]) == 2
    assert "--check-config" in capsys.readouterr().err


def test_query_bad_server_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "-s", "http://x", "recipient", "a@b"]) == 2
    assert "sockmapd query:" in capsys.readouterr().err


def test_query_unreachable_server_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    assert main(["query", "-s", "tcp://127.0.0.1:1", "recipient", "a@b"]) == 3
    assert "cannot connect" in capsys.readouterr().err
