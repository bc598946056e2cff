"""The built release: the sdist and wheel in dist/ and a fresh venv with the wheel installed."""

# .ci/run builds dist/ with `python -m build`, installs the wheel with its [all] extra
# into a new venv and names that venv in SOCKMAPD_WHEEL_VENV. Without it these tests
# are skipped; with SOCKMAPD_REQUIRE_WHEEL=1 they fail instead, so that CI cannot
# pass without having tested the release artefacts.

from __future__ import annotations

import email.parser
import os
import tarfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Release:
    """The artefacts under test and the venv the wheel was installed into."""

    version: str
    sdist: Path
    wheel: Path
    venv: Path

    def bin(self, name: str) -> Path:
        """Return the path of a console script or interpreter in the venv."""
        return self.venv / "bin" / name


def _missing(reason: str) -> NoReturn:
    if os.environ.get("SOCKMAPD_REQUIRE_WHEEL") == "1":
        pytest.fail(f"{reason}, and SOCKMAPD_REQUIRE_WHEEL=1 requires it", pytrace=False)
    pytest.skip(f"{reason} (.ci/run builds the release and sets it)")


def _only(paths: list[Path], what: str) -> Path:
    if len(paths) != 1:
        _missing(f"expected one {what}, found {[p.name for p in paths]}")
    return paths[0]


def sdist_metadata(sdist: Path) -> Message:
    """Return the PKG-INFO of an sdist as parsed headers."""
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/PKG-INFO")
        assert member is not None
        return email.parser.BytesHeaderParser().parse(member)


@pytest.fixture(scope="session")
def release() -> Release:
    venv_text = os.environ.get("SOCKMAPD_WHEEL_VENV")
    if not venv_text:
        _missing("SOCKMAPD_WHEEL_VENV (a venv with the built wheel installed) is not set")
    venv = Path(venv_text)
    if not (venv / "bin" / "python").exists():
        _missing(f"SOCKMAPD_WHEEL_VENV={venv} is not a venv")
    dist = Path(os.environ.get("SOCKMAPD_DIST", ROOT / "dist"))
    sdist = _only(sorted(dist.glob("sockmapd-*.tar.gz")), f"sdist in {dist}")
    wheel = _only(sorted(dist.glob("sockmapd-*-py3-none-any.whl")), f"wheel in {dist}")
    version = sdist_metadata(sdist)["Version"]
    return Release(version=version, sdist=sdist, wheel=wheel, venv=venv)
