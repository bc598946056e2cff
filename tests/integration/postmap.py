"""Asking Postfix's own postmap: table files, lookups and their outcomes, for parity tests."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.integration.databases import Database

WORKERS = 8


@dataclass(frozen=True)
class Outcome:
    """What one postmap lookup printed and returned."""

    status: int
    stdout: str
    # postmap reported a lookup error ("fatal: table ...: query error"); the text may differ.
    failed: bool
    stderr: str = field(default="", compare=False)


def postfix_types(postmap: list[str]) -> set[str]:
    """Return the table types Postfix supports (postconf -m) for postmap's config dir."""
    postconf = Path(postmap[0]).with_name("postconf")
    result = subprocess.run(
        [str(postconf), "-c", postmap[2], "-m"], capture_output=True, text=True, timeout=60
    )
    return set(result.stdout.split())


def connection_lines(db: Database) -> str:
    """Return the .cf lines that connect Postfix to the backend's database."""
    url = make_url(db.url)
    if db.name == "sqlite":
        return f"dbpath = {url.database}\n"
    # Both host forms of the manuals: inet:host:port for MySQL, host:port for PostgreSQL.
    prefix, default_port = ("inet:", 3306) if db.name == "mariadb" else ("", 5432)
    lines = [
        f"hosts = {prefix}{url.host}:{url.port or default_port}",
        f"user = {url.username}",
        f"dbname = {url.database}",
    ]
    if url.password:
        lines.append(f"password = {url.password}")
    return "\n".join(lines) + "\n"


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        encoding="utf-8",
        errors="backslashreplace",
        timeout=120,
    )


def _failed(stderr: str) -> bool:
    return "fatal:" in stderr


def one(postmap: list[str], table: str, key: str) -> Outcome:
    """Look one key up with postmap -q KEY TABLE."""
    result = _run([*postmap, "-q", key, table])
    return Outcome(result.returncode, result.stdout, _failed(result.stderr), result.stderr)


def _batch(postmap: list[str], table: str, keys: list[str]) -> dict[str, Outcome] | None:
    """Look every key up in one postmap run; None when that run cannot tell every outcome.

    postmap stops at a failed lookup, and a value with a newline cannot be told apart
    from the next line.
    """
    result = _run([*postmap, "-q", "-", table], stdin="".join(f"{key}\n" for key in keys))
    if _failed(result.stderr) or result.returncode not in (0, 1):
        return None
    found: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, tab, value = line.partition("\t")
        if not tab:
            return None
        found.setdefault(key, []).append(value)
    if not set(found) <= set(keys):
        return None
    return {
        key: Outcome(0, "".join(f"{v}\n" for v in found[key]), False)
        if key in found
        else Outcome(1, "", False)
        for key in keys
    }


def lookups(postmap: list[str], table: str, keys: list[str]) -> dict[str, Outcome]:
    """Every key's outcome: one batch run, or one run per key when the batch cannot tell."""
    batch = _batch(postmap, table, keys)
    if batch is not None:
        return batch
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda key: one(postmap, table, key), keys))
    return dict(zip(keys, outcomes, strict=True))


def show(outcome: Outcome) -> str:
    """Describe an outcome for a failure message."""
    text = f"exit {outcome.status}, stdout {outcome.stdout!r}"
    if outcome.failed:
        text += f", error: {outcome.stderr.strip()!r}"
    return text
