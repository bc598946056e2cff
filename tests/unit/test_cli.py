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


def test_convert_prints_only_what_differs_from_the_defaults(
    legacy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "convert", str(legacy_file)]) == 0
    data = tomllib.loads(capsys.readouterr().out)
    # The Go daemon's exposure differs from sockmapd's defaults and is written; the rest is not.
    assert data["server"] == {
        "listen": ["tcp://0.0.0.0:2224"],
        "allow": ["0.0.0.0/0"],
        "run_as_user": "nobody",
        "run_as_group": "nogroup",
        "allow_root": True,
    }
    assert data["log"] == {"target": "file", "file": "/var/log/sockmapd.log"}


@pytest.mark.parametrize("command", [["config", "convert"], ["config", "import-postfix"]])
def test_all_prints_every_setting_and_round_trips(
    command: list[str], legacy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if command[-1] == "import-postfix":
        source = tmp_path / "virtual.cf"
        source.write_text("hosts = db\ndbname = mail\nquery = SELECT a FROM t WHERE k = '%s'\n")
        argument = f"mysql:{source}"
    else:
        argument = str(legacy_file)
    assert main([*command, "--show-secrets", argument]) == 0
    short = capsys.readouterr().out
    assert main([*command, "--show-secrets", "--all", argument]) == 0
    every = capsys.readouterr().out
    assert "max_connections = 1000\n" in every
    assert "max_connections" not in short
    assert 'syslog_facility = "mail"\n' in every
    assert "pool_size = 10\n" in every
    assert "pool_size" not in short
    (tmp_path / "short.toml").write_text(short)
    (tmp_path / "every.toml").write_text(every)
    assert load_config(tmp_path / "every.toml") == load_config(tmp_path / "short.toml")


def test_import_postfix_all_goes_anywhere_among_names_and_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for name in ("a", "b"):
        (tmp_path / f"{name}.cf").write_text(
            f"dbpath = /srv/{name}.db\nquery = SELECT v FROM t WHERE k = '%s'\n"
        )
        files.append(f"sqlite:{tmp_path / name}.cf")
    for option in ("--all", "--al"):
        argv = [
            "config",
            "import-postfix",
            "--name",
            "first",
            files[0],
            option,
            "--name",
            "second",
            files[1],
        ]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert list(tomllib.loads(out)["maps"]) == ["first", "second"]
        assert "max_connections = 1000\n" in out


def test_import_postfix_writes_no_server_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "virtual.cf"
    source.write_text("hosts = db\ndbname = mail\nquery = SELECT a FROM t WHERE k = '%s'\n")
    assert main(["config", "import-postfix", f"mysql:{source}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[databases.virtual]\n")
    assert tomllib.loads(out) == {
        "databases": {
            "virtual": {
                "driver": "mysql",
                "hosts": ["db"],
                "name": "mail",
                "host_order": "random",
            }
        },
        "maps": {
            "virtual": {
                "database": "virtual",
                "query": "SELECT a FROM t WHERE k = '%s'",
                "key_transform": ["lowercase"],
            }
        },
    }


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
