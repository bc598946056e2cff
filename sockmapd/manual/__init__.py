"""The man pages and shell completion scripts, generated from the parser and the config models.

The generated files are committed (man/, completion/) and installed by the wheel under
share/; a unit test fails when one is out of date. ``python -m sockmapd.manual``
regenerates them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REGENERATE_COMMAND = "python -m sockmapd.manual"

# The date in a man page's .TH line: the day its text last changed.
_TH_DATE = re.compile(r"\A(\.TH \S+ \d) (\d{4}-\d{2}-\d{2}) ")


@dataclass(frozen=True, slots=True)
class Generated:
    """One generated file: its path in the source tree, where a wheel installs it, and how."""

    path: str
    installed_as: str
    render: Callable[[str], str]
    dated: bool


def _command_page(date: str) -> str:
    from sockmapd.manual.command import render_command_page

    return render_command_page(date)


def _config_page(date: str) -> str:
    from sockmapd.manual.configuration import render_config_page

    return render_config_page(date)


def _bash(date: str) -> str:
    from sockmapd.manual.completion import render_completion

    return render_completion("bash")


def _zsh(date: str) -> str:
    from sockmapd.manual.completion import render_completion

    return render_completion("zsh")


GENERATED: tuple[Generated, ...] = (
    Generated("man/sockmapd.8", "share/man/man8/sockmapd.8", _command_page, dated=True),
    Generated("man/sockmapd.toml.5", "share/man/man5/sockmapd.toml.5", _config_page, dated=True),
    # bash-completion loads a command's script by the command's name, zsh by _NAME.
    Generated(
        "completion/sockmapd",
        "share/bash-completion/completions/sockmapd",
        _bash,
        dated=False,
    ),
    Generated("completion/_sockmapd", "share/zsh/site-functions/_sockmapd", _zsh, dated=False),
)


def page_date(text: str) -> str | None:
    """Return the date of a man page's .TH line, or None if it has none."""
    match = _TH_DATE.match(text)
    return match.group(2) if match else None


def undated(text: str) -> str:
    """Return a man page with the date of its .TH line blanked, to compare texts."""
    return _TH_DATE.sub(r"\1 DATE ", text, count=1)


def regenerate(root: Path, today: str) -> list[str]:
    """Write every generated file under root; return the paths whose content changed.

    A man page keeps its date unless its text changed, so that regenerating an
    up-to-date tree changes nothing.
    """
    changed: list[str] = []
    for item in GENERATED:
        target = root / item.path
        old = target.read_text(encoding="utf-8") if target.exists() else None
        new = item.render(today)
        if item.dated and old is not None:
            if undated(old) == undated(new):
                continue
        elif old == new:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(new, encoding="utf-8")
        changed.append(item.path)
    return changed
