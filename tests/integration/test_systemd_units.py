"""The systemd units of contrib/systemd/ as systemd itself reads them (systemd-analyze)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.tools import require_tool, run

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("sockmapd.socket", "sockmapd.service", "sockmapd@.service")
# The exposure level docs/security.md reports; the units must not become more exposed.
REPORTED_EXPOSURE = 1.6


def systemd_analyze() -> str:
    return require_tool("systemd-analyze", variable="SOCKMAPD_REQUIRE_SYSTEMD", package="systemd")


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as shipped, with ExecStart pointing at this environment's sockmapd."""
    sockmapd = Path(sys.executable).parent / "sockmapd"
    assert os.access(sockmapd, os.X_OK), sockmapd
    directory = tmp_path / "units"
    directory.mkdir()
    for name in UNITS:
        text = (ROOT / "contrib" / "systemd" / name).read_text(encoding="utf-8")
        (directory / name).write_text(text.replace("/usr/bin/sockmapd", str(sockmapd)))
    # Documentation=man:... is checked by running man: give it the pages of this tree.
    manpath = tmp_path / "man"
    for page in ("sockmapd.8", "sockmapd.toml.5"):
        section = manpath / f"man{page.rsplit('.', 1)[1]}"
        section.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "man" / page, section / page)
    return directory


def test_the_units_pass_systemd_analyze_verify(units: Path) -> None:
    result = run(
        [systemd_analyze(), "verify", *(str(units / name) for name in UNITS)],
        env={"MANPATH": str(units.parent / "man")},
        cwd=units,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_reports_a_unit_it_cannot_run(units: Path) -> None:
    # The check above can fail: a start command that does not exist is reported.
    service = units / "sockmapd.service"
    service.write_text(
        re.sub(
            r"^ExecStartPre=\S+",
            "ExecStartPre=/nonexistent/sockmapd",
            service.read_text(),
            flags=re.M,
        )
    )
    result = run(
        [systemd_analyze(), "verify", str(service)],
        env={"MANPATH": str(units.parent / "man")},
        cwd=units,
    )
    assert result.returncode != 0
    assert "/nonexistent/sockmapd" in result.stderr


@pytest.mark.parametrize("name", ["sockmapd.service", "sockmapd@.service"])
def test_the_sandbox_keeps_the_exposure_docs_security_reports(units: Path, name: str) -> None:
    unit = units / name.replace("@.", "@mail.")
    if unit.name != name:
        shutil.copy(units / name, unit)
    result = run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit)], cwd=units
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) <= REPORTED_EXPOSURE, result.stdout
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert f"Overall exposure level for sockmapd.service: {REPORTED_EXPOSURE} OK" in security
