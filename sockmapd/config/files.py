"""Reading the small files a configuration names, each within a size limit."""

from __future__ import annotations

import stat
from pathlib import Path


class UnreadableFile(ValueError):
    """A file cannot be read, is too large or is not what it must be; the message says which."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _check_regular(path: Path, what: str) -> None:
    # Opening a FIFO or a device such as /dev/zero could block or never end.
    if not stat.S_ISREG(path.stat().st_mode):
        raise UnreadableFile(f"{what} is not a regular file")


def read_bounded(path: Path, limit: int, what: str, *, regular: bool = True) -> bytes:
    """Return the bytes of path, at most limit of them; raise UnreadableFile naming it as what.

    At most limit + 1 bytes are read, so a wrong path such as /dev/zero cannot fill
    memory. regular=False also accepts a pipe or device (a config on standard input).
    """
    try:
        if regular:
            _check_regular(path, what)
        with path.open("rb") as stream:
            raw = stream.read(limit + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what}: {_reason(exc)}") from None
    if len(raw) > limit:
        raise UnreadableFile(f"{what} is larger than {limit} bytes")
    return raw


def read_bounded_text(path: Path, limit: int, what: str, *, regular: bool = True) -> str:
    """Return the UTF-8 text of path (at most limit bytes); raise UnreadableFile naming it."""
    raw = read_bounded(path, limit, what, regular=regular)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{what} is not valid UTF-8") from None


def check_readable(path: Path, what: str) -> None:
    """Return if path is a regular file this process can read; raise UnreadableFile otherwise."""
    try:
        _check_regular(path, what)
        with path.open("rb") as stream:
            stream.read(1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what}: {_reason(exc)}") from None
