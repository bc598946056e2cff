"""Command line: build the config, then serve, check, query, convert or document it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from sockmapd import __version__
from sockmapd.config import (
    Config,
    ConfigError,
    Problem,
    TcpAddress,
    UnixAddress,
    load_config,
    parse_listen_address,
    to_toml,
)
from sockmapd.config.descriptions import REGENERATE_COMMAND
from sockmapd.config.files import UnreadableFile, read_bounded_text
from sockmapd.config.loader import MAX_CONFIG_BYTES
from sockmapd.config.postfix_import import (
    PostfixImportError,
    PostfixSource,
    import_postfix,
    split_table_argument,
)
from sockmapd.config.reference import render_reference
from sockmapd.logs import configure_logging
from sockmapd.text import counted

if TYPE_CHECKING:
    from sockmapd.maptest import Outcome

DEFAULT_CONFIG = Path("/etc/sockmapd/sockmapd.toml")
DEFAULT_QUERY_ADDRESS = "tcp://127.0.0.1:2224"

EXIT_OK = 0
EXIT_NOTFOUND = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_DROPPED = 1

QUERY_EPILOG = """\
exit status:
  0  every key was found (OK)
  1  at least one key was not found (NOTFOUND), and nothing failed
  2  usage error
  3  a lookup failed (TEMP, TIMEOUT or PERM), or the server could not be reached
"""
TEST_EPILOG = """\
Without --server the maps are built from the config and asked directly, as the
server would ask them: no server needs to run, the databases must be reachable.
The tests are the config's [[tests]] and those of each FILE (TOML, [[tests]]
tables with map, key, expect and an optional note). See docs/testing-maps.md.

exit status:
  0  every test passed
  1  a test failed, or got no reply
  2  usage error, or a config or test file that does not load
"""
IMPORT_EPILOG = """\
Each file becomes one map and one database named after the map (files with the
same connection settings share one). A --name names the first file after it that
no earlier --name names, so both of these work:
  --name A mysql:a.cf --name B mysql:b.cf
  --name A --name B mysql:a.cf mysql:b.cf
A file without a --name is named after the file, without .cf.
Parameters that cannot be carried over are listed on stderr as FILE: NAME: REASON.

exit status:
  0  every parameter was carried over
  1  some parameters were dropped (listed on stderr); the config is printed all the same
  2  usage error, or a file that cannot be read or imported
"""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {port}")
    return port


class _ToolParser(argparse.ArgumentParser):
    """The parser of a `sockmapd config` tool; import-postfix's lets --name and files alternate.

    argparse reads all the files of one positional in one run, so a file after a --name
    that follows another file would be an unrecognized argument. With `names_files` set,
    the options and the files are parsed apart (parse_known_intermixed_args), and each
    file is then paired with its --name by the order of the arguments: `tables` becomes a
    list of (TYPE:FILE, MAP or None).
    """

    names_files = False
    _parsing = False

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        if not self.names_files or self._parsing:
            return super().parse_known_args(args, namespace)
        arguments = list(sys.argv[1:] if args is None else args)
        self._parsing = True
        try:
            parsed, extras = self.parse_known_intermixed_args(arguments, namespace)
        finally:
            self._parsing = False
        if extras:
            return parsed, extras
        tables, unused = _name_files(arguments)
        if unused:
            names = ", ".join(f"--name {name}" for name in unused)
            self.error(
                f"{names}: no file left to name (a --name names the first file after it "
                "that no earlier --name names)"
            )
        parsed.tables = tables
        return parsed, extras


def _is_option(text: str, option: str) -> bool:
    """Whether text is option or an abbreviation of it, as argparse accepts them."""
    return len(text) > 2 and text.startswith("--") and option.startswith(text)


def _name_files(arguments: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Pair import-postfix's files with their --name; also return the names left over.

    The arguments are ones argparse accepted, so every option is --name (with its value
    inline or next), --all, --show-secrets, or an abbreviation of one of them. Each file
    takes the oldest --name before it that no earlier file took.
    """
    pending: list[str] = []
    tables: list[tuple[str, str | None]] = []
    remaining = iter(arguments)
    files_only = False
    for argument in remaining:
        if not files_only:
            option, inline, value = argument.partition("=")
            if argument == "--":
                files_only = True
                continue
            if _is_option(option, "--name"):
                pending.append(value if inline else next(remaining))
                continue
            if any(_is_option(option, flag) for flag in ("--all", "--show-secrets")):
                continue
        tables.append((argument, pending.pop(0) if pending else None))
    return tables, pending


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser (also read by the man page and completion generators)."""
    parser = argparse.ArgumentParser(
        prog="sockmapd",
        description="Answer Postfix and Sendmail socketmap lookups from SQL tables.",
    )
    parser.add_argument("--version", action="version", version=f"sockmapd {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"config file, TOML or legacy JSON (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=_port,
        help="TCP port to use when the config names none (the config's own port wins)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config and exit 0 if it is valid, 1 if not",
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="with --check-config: also connect to the databases, check tables and columns, "
        "and run the config's [[tests]]",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    query = commands.add_parser(
        "query",
        help="send lookups to a running sockmapd and print the replies",
        description="Send socketmap lookups to a running server and print each reply.",
        epilog=QUERY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = query.add_mutually_exclusive_group()
    target.add_argument(
        "-c",
        "--config",
        dest="query_config",
        type=Path,
        metavar="FILE",
        help="take the server address from this config's first listener",
    )
    target.add_argument(
        "-s",
        "--server",
        metavar="ADDRESS",
        help="server address, tcp://HOST:PORT or unix:///path "
        f"(default: first listener of {DEFAULT_CONFIG} if it exists, else {DEFAULT_QUERY_ADDRESS})",
    )
    query.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait (default: 10)",
    )
    query.add_argument("map", metavar="MAP", help="map name")
    query.add_argument("keys", metavar="KEY", nargs="+", help="key to look up")

    test = commands.add_parser(
        "test",
        help="run the map tests of a config and of test files",
        description="Look up each test's key in its map and compare the reply with the "
        "one expected.",
        epilog=TEST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument(
        "-c",
        "--config",
        dest="test_config",
        type=Path,
        metavar="CONFIG",
        help=f"config whose maps and [[tests]] to use (default: {DEFAULT_CONFIG}; "
        "with --server only if given)",
    )
    test.add_argument(
        "-s",
        "--server",
        metavar="ADDRESS",
        help="ask the running server at this address (tcp://HOST:PORT or unix:///path) "
        "instead of the databases",
    )
    test.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --server: seconds to wait for each reply (default: 10)",
    )
    test.add_argument(
        "--junit-xml", type=Path, metavar="FILE", help="also write the results as JUnit XML"
    )
    test.add_argument("files", nargs="*", type=Path, metavar="FILE", help="test file")

    config_cmd = commands.add_parser("config", help="config file tools")
    config_tools = config_cmd.add_subparsers(
        dest="config_command", metavar="TOOL", required=True, parser_class=_ToolParser
    )
    convert = config_tools.add_parser(
        "convert",
        help="print a config (legacy JSON or TOML) as canonical TOML",
        description="Print the config as canonical TOML: the settings that differ from "
        "their defaults, or every setting with --all; passwords are masked unless "
        "--show-secrets is given.",
    )
    convert.add_argument("file", type=Path, metavar="FILE", help="config file, TOML or legacy JSON")
    _add_output_options(convert)
    config_tools.add_parser(
        "reference",
        help="print the configuration reference (every option) as Markdown",
        description="Print the configuration reference, generated from the config models: "
        f"{REGENERATE_COMMAND} updates the documentation.",
    )
    postfix = config_tools.add_parser(
        "import-postfix",
        help="print a config made from Postfix mysql:, pgsql: and sqlite: table files",
        description="Print the TOML config equivalent to Postfix SQL table files\n"
        "(mysql_table(5), pgsql_table(5), sqlite_table(5)): the settings that differ\n"
        "from their defaults, or every setting with --all; passwords are masked\n"
        "unless --show-secrets is given.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    postfix.add_argument(
        "tables",
        nargs="+",
        metavar="TYPE:FILE.cf",
        help="mysql:FILE, pgsql:FILE or sqlite:FILE; a plain FILE with dbpath is taken as sqlite",
    )
    postfix.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="MAP",
        help="map name of the next file (default: the file name without .cf)",
    )
    _add_output_options(postfix)
    postfix.names_files = True
    return parser


def _add_output_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--all",
        action="store_true",
        dest="include_defaults",
        help="also print the settings left at their defaults",
    )
    command.add_argument(
        "--show-secrets", action="store_true", help="print passwords instead of a mask"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "query":
        return _query(args)
    if args.command == "test":
        from sockmapd.maptest.command import run_tests

        return run_tests(args, DEFAULT_CONFIG)
    if args.command == "config":
        if args.config_command == "import-postfix":
            return _import_postfix(args)
        if args.config_command == "reference":
            sys.stdout.write(render_reference())
            return EXIT_OK
        return _convert(args)
    if args.connect and not args.check_config:
        print("sockmapd: --connect only goes with --check-config", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config, fallback_port=args.port)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.check_config:
        return _check(args.config, config, connect=args.connect)
    return _serve(args.config, config, args.port)


def _check(path: Path, config: Config, *, connect: bool) -> int:
    if connect:
        from sockmapd.backends import DatabaseSetupError, create_databases

        # Every finding is printed below as one line with its field path; the
        # daemon's own log lines about the same failures would only repeat them.
        quiet = logging.getLogger("sockmapd")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        from sockmapd.backends.schema import check_databases
        from sockmapd.maptest import config_cases, run_direct

        try:
            databases = create_databases(config.databases)
        except DatabaseSetupError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1

        async def run() -> tuple[list[Problem], list[Outcome]]:
            try:
                problems = await check_databases(config, databases)
                if problems:
                    return problems, []
                return [], await run_direct(config, databases, config_cases(path, config))
            finally:
                await databases.dispose()

        problems, outcomes = anyio.run(run)
        if problems:
            print(ConfigError(str(path), problems), file=sys.stderr)
            return 1
        if outcomes and not _tests_passed(path, outcomes):
            return 1
    what = "configuration and databases OK" if connect else "configuration OK"
    counts = f"{counted(len(config.maps), 'map')}, {counted(len(config.databases), 'database')}"
    print(f"{path}: {what} ({counts})")
    return 0


def _tests_passed(path: Path, outcomes: list[Outcome]) -> bool:
    """Print the [[tests]] that failed (stderr), or how many passed; return True if all did."""
    from sockmapd.maptest import Summary, problem_line

    summary = Summary.of(outcomes)
    if not summary.ok:
        for outcome in outcomes:
            if not outcome.passed:
                print(problem_line(outcome), file=sys.stderr)
        print(f"{path}: tests: {summary}", file=sys.stderr)
        return False
    print(f"{path}: tests: {summary}")
    return True


def _serve(path: Path, config: Config, fallback_port: int | None) -> int:
    from sockmapd.server import Daemon, StartupError

    try:
        configure_logging(config.log)
    except OSError as exc:
        print(f"sockmapd: cannot open the log ({config.log.target}): {exc}", file=sys.stderr)
        return 1
    try:
        if config.server.workers > 1:
            from sockmapd.server.supervisor import Supervisor

            supervisor = Supervisor(
                config,
                config_path=path,
                fallback_port=fallback_port,
                backend_options=_backend_options(),
            )
            return supervisor.run()
        daemon = Daemon(config, config_path=path, fallback_port=fallback_port)
        anyio.run(daemon.run, backend_options=_backend_options())
    except StartupError as exc:
        logging.getLogger("sockmapd").error("cannot start: %s", exc)
        if config.log.target != "stderr":
            print(f"sockmapd: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _backend_options() -> dict[str, object]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _query_address(args: argparse.Namespace) -> TcpAddress | UnixAddress:
    from sockmapd.client import connect_address

    if args.server:
        return parse_listen_address(args.server)
    path: Path | None = args.query_config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is None:
        return parse_listen_address(DEFAULT_QUERY_ADDRESS)
    config = load_config(path)
    return connect_address(config.server.listen_addresses()[0])


def _query(args: argparse.Namespace) -> int:
    from sockmapd.client import ClientError, query
    from sockmapd.protocol import Status

    try:
        address = _query_address(args)
    except (ValueError, ConfigError) as exc:
        print(f"sockmapd query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    show_key = len(args.keys) > 1
    try:
        replies = query(address, ((args.map, key) for key in args.keys), timeout=args.timeout)
        for key, reply in zip(args.keys, replies, strict=False):
            text = (
                f"{reply.status.value} {reply.text}".rstrip() if reply.text else reply.status.value
            )
            print(f"{key}\t{text}" if show_key else text)
            if reply.status is Status.NOTFOUND:
                status = max(status, EXIT_NOTFOUND)
            elif reply.status is not Status.OK:
                status = EXIT_FAILED
    except ClientError as exc:
        print(f"sockmapd query: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return status


def _convert(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(_toml(config, args))
    return 0


def _toml(config: Config, args: argparse.Namespace) -> str:
    return to_toml(config, reveal_secrets=args.show_secrets, include_defaults=args.include_defaults)


def _import_postfix(args: argparse.Namespace) -> int:
    tables: list[tuple[str, str | None]] = args.tables
    sources: list[PostfixSource] = []
    unreadable = False
    for argument, name in tables:
        table_type, path = split_table_argument(argument)
        try:
            text = read_bounded_text(Path(path), MAX_CONFIG_BYTES, "the file", regular=False)
        except UnreadableFile as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            unreadable = True
            continue
        sources.append(PostfixSource(path, text, table_type, name))
    if unreadable:
        return EXIT_USAGE
    try:
        imported = import_postfix(sources)
    except PostfixImportError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    for dropped in imported.dropped:
        print(dropped, file=sys.stderr)
    sys.stdout.write(_toml(imported.config, args))
    return EXIT_DROPPED if imported.dropped else EXIT_OK
