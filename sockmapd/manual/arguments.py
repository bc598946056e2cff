"""The command line as data: every (sub)command's parser and its arguments, in order.

argparse has no public way to walk a parser. The attributes read here (_actions and
_choices_actions) are the ones every argparse-to-man-page or completion tool reads;
this module is the only place in sockmapd that touches them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Command:
    """One parser of the command line: its words after the program name, and its text."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser
    summary: str

    @property
    def name(self) -> str:
        """Return the command as typed, e.g. "sockmapd config convert"."""
        return " ".join((self.parser.prog.split()[0], *self.words))

    def arguments(self) -> list[argparse.Action]:
        """Return the options and positionals, without the subcommand choice."""
        return [action for action in self.parser._actions if not _is_subcommands(action)]

    def subcommands(self) -> list[Command]:
        """Return the commands directly below this one, in the order they were added."""
        found: list[Command] = []
        for action in self.parser._actions:
            if not _is_subcommands(action):
                continue
            assert isinstance(action.choices, dict)
            helps = {
                choice.dest: choice.help or ""
                for choice in action._choices_actions  # type: ignore[attr-defined]
            }
            for name, parser in action.choices.items():
                found.append(Command((*self.words, name), parser, helps.get(name, "")))
        return found

    def usage(self) -> str:
        """Return the usage line, unwrapped and without "usage: "."""
        return " ".join(self.parser.format_usage().split()).removeprefix("usage: ")


def _is_subcommands(action: argparse.Action) -> bool:
    return action.nargs == argparse.PARSER


def walk(parser: argparse.ArgumentParser) -> Iterator[Command]:
    """Yield the program's own command, then every subcommand, depth first."""
    pending = [Command((), parser, parser.description or "")]
    while pending:
        command = pending.pop(0)
        yield command
        pending[:0] = command.subcommands()


def metavar(action: argparse.Action) -> str:
    """Return the placeholder argparse shows for an action's value ("" for a flag)."""
    if action.nargs == 0:
        return ""
    if isinstance(action.metavar, str):
        return action.metavar
    if action.option_strings:
        return action.dest.upper()
    return action.dest


def help_text(command: Command, action: argparse.Action) -> str:
    """Return an action's help with argparse's %(...)s fields filled in."""
    text = action.help or ""
    if "%(" not in text:
        return text
    fields = {**vars(action), "prog": command.parser.prog}
    return text % fields
