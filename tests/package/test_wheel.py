"""The release as a user gets it: the built wheel installed in a fresh venv, and the sdist."""

from __future__ import annotations

import email.parser
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
import zipfile
from email.message import Message
from pathlib import Path

import pytest

import sockmapd
from sockmapd.manual import GENERATED
from tests.package.conftest import ROOT, Release, sdist_metadata
from tests.tools import require_tool

START_TIMEOUT = 15.0


def outside_env() -> dict[str, str]:
    """Return the environment without anything that would put the source tree on sys.path."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}


def run(release: Release, program: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a program of the wheel's venv away from the source tree (no PYTHONPATH, other cwd)."""
    return subprocess.run(
        [str(release.bin(program)), *args],
        cwd=cwd,
        env=outside_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wheel_metadata(wheel: Path) -> tuple[Message, str]:
    """Return the METADATA headers and its long description."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    message = email.parser.Parser().parsestr(text)
    return message, str(message.get_payload())


def test_all_versions_are_the_single_sourced_one(release: Release, tmp_path: Path) -> None:
    assert release.version == sockmapd.__version__
    assert release.sdist.name == f"sockmapd-{release.version}.tar.gz"
    assert release.wheel.name == f"sockmapd-{release.version}-py3-none-any.whl"
    result = run(release, "sockmapd", "--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"sockmapd {release.version}\n")


def test_the_venv_runs_the_installed_wheel_not_the_source_tree(
    release: Release, tmp_path: Path
) -> None:
    probe = (
        "import importlib.metadata as m, json, sockmapd; "
        "d = m.distribution('sockmapd'); "
        "print(json.dumps({'file': sockmapd.__file__, 'version': d.version, "
        "'direct_url': json.loads(d.read_text('direct_url.json') or 'null')}))"
    )
    result = run(release, "python", "-c", probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    package = Path(found["file"]).resolve()
    assert package.is_relative_to(release.venv.resolve()), package
    assert not package.is_relative_to(ROOT), package
    assert found["version"] == release.version
    # pip records where it installed from: the wheel file, not an editable checkout.
    assert "dir_info" not in found["direct_url"], found["direct_url"]
    assert found["direct_url"]["url"].endswith("/" + release.wheel.name)


def test_the_all_extra_brings_every_driver(release: Release, tmp_path: Path) -> None:
    drivers = "import aiosqlite, asyncmy, asyncpg, uvloop"
    result = run(release, "python", "-c", drivers, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_wheel_holds_the_package_its_manual_and_nothing_else(release: Release) -> None:
    with zipfile.ZipFile(release.wheel) as archive:
        names = set(archive.namelist())
    dist_info = f"sockmapd-{release.version}.dist-info/"
    data = f"sockmapd-{release.version}.data/data/"
    assert {n for n in names if not n.startswith(("sockmapd/", dist_info))} == {
        data + item.installed_as for item in GENERATED
    }
    assert "sockmapd/py.typed" in names
    assert f"{dist_info}licenses/LICENSE" in names
    # Every module of the source tree made it in (a subpackage missed by find would not).
    source = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sockmapd").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert source <= names, sorted(source - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".sqlite3"))]


def test_the_wheel_metadata_is_complete_for_pypi(release: Release) -> None:
    meta, description = wheel_metadata(release.wheel)
    assert meta["Name"] == "sockmapd"
    assert meta["Version"] == release.version
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    assert description.startswith("# sockmapd\n")
    assert {"all", "mysql", "postgresql", "uvloop"} <= set(meta.get_all("Provides-Extra") or [])
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    with zipfile.ZipFile(release.wheel) as archive:
        entry_points = archive.read(f"sockmapd-{release.version}.dist-info/entry_points.txt")
    assert b"sockmapd = sockmapd.cli:main" in entry_points


def test_the_sdist_carries_the_quick_start_and_the_project_files(release: Release) -> None:
    prefix = f"sockmapd-{release.version}/"
    with tarfile.open(release.sdist) as archive:
        names = {n.removeprefix(prefix) for n in archive.getnames()}
    expected = {
        "PKG-INFO",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "examples/quickstart.toml",
        "examples/quickstart.sql",
        "sockmapd/py.typed",
        "tests/conftest.py",
        "contrib/systemd/sockmapd@.service",
        *(item.path for item in GENERATED),
    }
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".sqlite3"))]
    assert sdist_metadata(release.sdist)["Name"] == "sockmapd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sockmapd exited {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    pytest.fail(f"sockmapd did not listen on {port}:\n{log.read_text()}")


def test_the_quick_start_works_from_the_wheel_and_the_sdist(
    release: Release, tmp_path: Path
) -> None:
    """README's quick start with the installed wheel and the examples shipped in the sdist."""
    prefix = f"sockmapd-{release.version}/examples/"
    with tarfile.open(release.sdist) as archive:
        for name in ("quickstart.toml", "quickstart.sql"):
            member = archive.extractfile(prefix + name)
            assert member is not None, name
            (tmp_path / name).write_bytes(member.read())
    port = _free_port()
    config = tmp_path / "quickstart.toml"
    config.write_text(config.read_text().replace("127.0.0.1:2224", f"127.0.0.1:{port}"))

    checked = run(release, "sockmapd", "--check-config", "-c", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    log = tmp_path / "sockmapd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(release.bin("sockmapd")), "-c", str(config)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=outside_env(),
        )
    try:
        _wait_listening(process, port, log)
        assert (tmp_path / "quickstart.sqlite3").exists()
        answers = [
            run(release, "sockmapd", "query", "-c", str(config), *query, cwd=tmp_path)
            for query in (
                ("recipient", "alice@example.com"),
                ("access", "spammer@example.net"),
                ("recipient", "nobody@example.com"),
            )
        ]
        assert [(a.returncode, a.stdout) for a in answers] == [
            (0, "OK example.com/alice/\n"),
            (0, "OK REJECT spam source\n"),
            (1, "NOTFOUND\n"),
        ], [a.stderr for a in answers]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=15) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_man_finds_the_installed_pages_through_path(release: Release, tmp_path: Path) -> None:
    """man-db looks in PREFIX/share/man for every PREFIX/bin on PATH: a venv's bin is enough."""
    man = require_tool("man", variable="SOCKMAPD_REQUIRE_MANUAL", package="man-db")
    path = f"{release.venv / 'bin'}:/usr/bin:/bin"
    env = {**outside_env(), "PATH": path, "MANWIDTH": "80"}
    env.pop("MANPATH", None)
    for section, page in (("8", "sockmapd"), ("5", "sockmapd.toml")):
        found = subprocess.run(
            [man, "-w", section, page], env=env, capture_output=True, text=True, check=False
        )
        expected = release.venv / "share" / "man" / f"man{section}" / f"{page}.{section}"
        assert (found.returncode, found.stdout.strip()) == (0, str(expected)), found.stderr
    shown = subprocess.run(
        [man, "8", "sockmapd"], env=env, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("SOCKMAPD(8)")


def test_bash_completion_loads_the_installed_script(release: Release, tmp_path: Path) -> None:
    """The venv's share/ is a data directory as bash-completion expects one.

    bash-completion looks in ~/.local/share (pip install --user) and /usr/local/share
    (a system-wide pip) by itself; a venv's share/ is added to XDG_DATA_DIRS.
    """
    loader = require_tool(
        "bash-completion",
        variable="SOCKMAPD_REQUIRE_MANUAL",
        package="bash-completion",
        path="/usr/share/bash-completion/bash_completion",
    )
    program = f"source {loader}\n__load_completion sockmapd\ncomplete -p sockmapd\n"
    env = {
        **outside_env(),
        "PATH": f"{release.venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_DIRS": str(release.venv / "share"),
    }
    result = subprocess.run(
        ["bash", "--norc", "--noprofile"],
        input=program,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout == "complete -o bashdefault -F _shtab_sockmapd sockmapd\n", result.stderr
