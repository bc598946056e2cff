"""Programs of the machine that tests drive: absent, they skip a test, or fail it if required."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def require_tool(name: str, *, variable: str, package: str, path: str | None = None) -> str:
    """Return the path of program name; fail if variable=1 requires it, else skip, if absent.

    path: a file to look for instead of a program on PATH (a script that is sourced).
    """
    found = (path if Path(path).exists() else None) if path else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed (Debian package {package})"
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason}, and {variable}=1 requires it", pytrace=False)
    pytest.skip(reason)


def run(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run command with env added to this environment; return its exit status and output."""
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
