"""Shell completion scripts for bash and zsh, made by shtab from the argparse parser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from sockmapd.cli import build_parser
from sockmapd.manual.arguments import walk

Shell = Literal["bash", "zsh"]


def render_completion(shell: Shell, parser: argparse.ArgumentParser | None = None) -> str:
    """Return the completion script for shell; file arguments complete file names."""
    # shtab is a development dependency: only regenerating the scripts needs it.
    import shtab

    parser = parser or build_parser()
    for command in walk(parser):
        for action in command.arguments():
            if action.type is Path:
                # shtab's documented way to mark an argument: an attribute on the action.
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell)
