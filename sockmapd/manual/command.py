"""sockmapd(8): the commands and options from the argparse parser, then signals and files.

Every command, option and exit status list comes from sockmapd.cli, so a new subcommand
or option appears in the page when it is regenerated; only what the parser cannot know
(what the daemon does on each signal, which files it reads) is written here.
"""

from __future__ import annotations

import argparse
import re

from sockmapd import __version__
from sockmapd.cli import DEFAULT_CONFIG, EXIT_OK, EXIT_USAGE, build_parser
from sockmapd.manual import roff
from sockmapd.manual.arguments import Command, help_text, metavar, walk

DESCRIPTION = f"""\
sockmapd answers the socketmap lookups of Postfix (socketmap_table(5)) and Sendmail
(the `socket` map class) from SQL tables in SQLite, MySQL or MariaDB, and PostgreSQL.
Each lookup runs one prepared, parameterised query and is answered `OK value`,
`NOTFOUND` or, when the database cannot tell (it is down, slow or failing), `TEMP` or
`TIMEOUT`, so that an outage defers mail instead of bouncing it.

Without a command, sockmapd serves: it reads the configuration file (`-c`, default
`{DEFAULT_CONFIG}`, described in sockmapd.toml(5)), listens on `server.listen` or on
the sockets systemd passes, and runs until it is stopped. With `--check-config` it only
checks the file and exits. The other commands are tools that talk to a running server
or print configuration."""

SIGNALS: tuple[tuple[str, str], ...] = (
    (
        "SIGHUP",
        "Reload the configuration file and reopen the log target. A file with an error "
        "is logged, one line per problem, and the old configuration keeps serving. The "
        "listeners and the user and group are not changed by a reload: restart for those.",
    ),
    (
        "SIGUSR1",
        "Reopen the log file under its name if it was moved away, and nothing else; "
        "this is what logrotate's `postrotate` sends.",
    ),
    ("SIGUSR2", "Empty the answer cache of every map, without a reload."),
    (
        "SIGTERM, SIGINT",
        "Stop accepting, let the requests in flight finish within "
        "`server.shutdown_grace` seconds, close idle connections and exit 0.",
    ),
)
SIGNALS_NOTE = (
    "With `server.workers` above 1, send the signals to the supervising process (the "
    "main pid under systemd): it passes them on to every worker."
)

EXIT_STATUS: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "The server stopped on SIGTERM or SIGINT, or `--check-config` found no problem."),
    (
        1,
        "The configuration has a problem (listed on standard error, one line per "
        "problem, with the file and the option), or the server could not start.",
    ),
    (EXIT_USAGE, "Usage error."),
)
EXIT_STATUS_NOTE = "The exit status of each tool is given with its command above."

ENVIRONMENT: tuple[tuple[str, str], ...] = (
    (
        "LISTEN_FDS, LISTEN_PID",
        "Set by systemd socket activation: sockmapd serves the sockets passed and "
        "ignores `server.listen`.",
    ),
    (
        "NOTIFY_SOCKET",
        "Set by systemd for `Type=notify`: sockmapd reports `READY=1` once it listens, "
        "`RELOADING=1` during a reload and `STOPPING=1` when it stops.",
    ),
)
ENVIRONMENT_NOTE = (
    "A database's `password_env` names a further variable, which must be set when the "
    "configuration is loaded."
)

FILES: tuple[tuple[str, str], ...] = (
    (str(DEFAULT_CONFIG), "The default configuration file, TOML or legacy JSON."),
    (
        "/run/sockmapd/sockmapd.sock",
        "The unix socket of the systemd socket unit, for "
        "`socketmap:unix:/run/sockmapd/sockmapd.sock:MAPNAME`.",
    ),
    (
        "contrib/systemd/sockmapd.service",
        "systemd service unit, in the source distribution, for one instance.",
    ),
    (
        "contrib/systemd/sockmapd@.service",
        "systemd template unit: `sockmapd@NAME.service` serves "
        "`/etc/sockmapd/NAME.toml`, one instance per configuration file.",
    ),
    ("contrib/systemd/sockmapd.socket", "systemd socket unit, for socket activation."),
)

SEE_ALSO = (
    ("sockmapd.toml", 5),
    ("socketmap_table", 5),
    ("mysql_table", 5),
    ("pgsql_table", 5),
    ("sqlite_table", 5),
    ("postmap", 1),
    ("systemd.socket", 5),
)
SEE_ALSO_NOTE = (
    "The documentation in the source distribution: `docs/operations.md` (signals, logs, "
    "metrics, systemd), `docs/postfix.md` and `docs/sendmail.md`."
)


def render_command_page(date: str, parser: argparse.ArgumentParser | None = None) -> str:
    """Return sockmapd(8) as man(7) source, dated date (YYYY-MM-DD)."""
    commands = list(walk(parser or build_parser()))
    main, tools = commands[0], [c for c in commands[1:] if not c.subcommands()]
    lines = [
        f'.TH SOCKMAPD 8 {date} "sockmapd {__version__}" "System Manager\'s Manual"',
        roff.RAGGED_RIGHT,
        ".SH NAME",
        "sockmapd \\- answer Postfix and Sendmail socketmap lookups from SQL tables",
        ".SH SYNOPSIS",
    ]
    for index, command in enumerate([main, *tools]):
        if index:
            lines.append(".br")
        lines += _synopsis(command)
    lines += [".SH DESCRIPTION", *roff.blocks(DESCRIPTION)]
    lines += [".SH OPTIONS", *_arguments(main)]
    lines.append(".SH COMMANDS")
    for command in tools:
        lines += _command(command)
    exits = tuple((str(code), text) for code, text in EXIT_STATUS)
    lines += _section("SIGNALS", SIGNALS, SIGNALS_NOTE)
    lines += _section("EXIT STATUS", exits, EXIT_STATUS_NOTE)
    lines += _section("ENVIRONMENT", ENVIRONMENT, ENVIRONMENT_NOTE)
    lines += [".SH FILES", *_items(FILES)]
    lines += [
        ".SH SEE ALSO",
        ",\n".join(f".BR {name} ({section})" for name, section in SEE_ALSO),
        ".PP",
        *roff.fill(roff.inline(SEE_ALSO_NOTE)),
    ]
    return "\n".join(lines) + "\n"


def _synopsis(command: Command) -> list[str]:
    rest = command.usage().removeprefix(command.name)
    return roff.fill(f"\\fB{roff.escape(command.name, literal=True)}\\fR{roff.escape(rest)}")


def _command(command: Command) -> list[str]:
    lines = [f".SS {roff.quoted(command.name)}", *_synopsis(command), ".PP"]
    lines += roff.fill(roff.inline(command.parser.description or command.summary))
    lines += _arguments(command)
    lines += _epilog(command.parser.epilog or "")
    return lines


def _arguments(command: Command) -> list[str]:
    lines: list[str] = []
    for action in command.arguments():
        value = metavar(action)
        if action.option_strings:
            names = ", ".join(
                f"\\fB{roff.escape(o, literal=True)}\\fR" for o in action.option_strings
            )
            term = f"{names} \\fI{roff.escape(value)}\\fR" if value else names
        else:
            term = f"\\fI{roff.escape(value)}\\fR"
            if action.nargs in (argparse.ONE_OR_MORE, argparse.ZERO_OR_MORE):
                term += " ..."
        lines += [".TP", term, *roff.fill(roff.inline(help_text(command, action)))]
    return lines


_STATUS_LINE = re.compile(r"\s+(\d+)\s+(.*)")


def _epilog(epilog: str) -> list[str]:
    """Return an epilog as paragraphs, with its "exit status:" list as tagged items."""
    lines: list[str] = []
    for block in re.split(r"\n\s*\n", epilog.strip()):
        if not block:
            continue
        heading, _, rest = block.partition("\n")
        items = [_STATUS_LINE.fullmatch(item) for item in rest.splitlines()]
        if heading.endswith(":") and items and all(items):
            lines += [".PP", f"{roff.escape(heading[:1].upper() + heading[1:])}"]
            for match in items:
                assert match is not None
                lines += [".TP", match.group(1), *roff.fill(roff.inline(match.group(2)))]
        else:
            lines += [".PP", *roff.fill(roff.inline(block))]
    return lines


def _section(title: str, items: tuple[tuple[str, str], ...], note: str) -> list[str]:
    return [f".SH {title}", *_items(items), ".PP", *roff.fill(roff.inline(note))]


def _items(items: tuple[tuple[str, str], ...]) -> list[str]:
    lines: list[str] = []
    for term, text in items:
        tag = f"\\fB{roff.escape(term, literal=True)}\\fR"
        lines += [".TP", tag, *roff.fill(roff.inline(text))]
    return lines
