"""``sockmapd test``: load the cases, run them directly or against a server, report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import anyio

from sockmapd.backends import DatabaseSetupError, create_databases
from sockmapd.config import Config, ConfigError, load_config, parse_listen_address
from sockmapd.maptest.cases import Case, config_cases, file_cases
from sockmapd.maptest.report import Summary, junit_xml, text_report
from sockmapd.maptest.runner import Outcome, run_direct, run_server

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2


def _error(message: object) -> int:
    print(message, file=sys.stderr)
    return EXIT_UNUSABLE


def run_tests(args: argparse.Namespace, default_config: Path) -> int:
    """Run ``sockmapd test`` with its parsed arguments and return the exit status."""
    path: Path | None = args.test_config
    if path is None and args.server is None:
        path = default_config
    config: Config | None = None
    cases: list[Case] = []
    try:
        if path is not None:
            config = load_config(path)
            cases += config_cases(path, config)
        for file in args.files:
            cases += file_cases(file, None if config is None else config.maps)
    except ConfigError as exc:
        return _error(exc)
    if not cases:
        where = f"{path} has no [[tests]]" if path is not None else "no config was given"
        return _error(f"sockmapd test: nothing to run: {where}, and no test file was given")
    if args.server is not None:
        try:
            address = parse_listen_address(args.server)
        except ValueError as exc:
            return _error(f"sockmapd test: {exc}")
        outcomes = run_server(address, cases, timeout=args.timeout)
    else:
        assert config is not None
        try:
            outcomes = _run_direct(config, cases)
        except DatabaseSetupError as exc:
            return _error(f"{path}: {exc}")
    sys.stdout.write(text_report(outcomes))
    if args.junit_xml is not None:
        try:
            args.junit_xml.write_bytes(junit_xml(outcomes))
        except OSError as exc:
            return _error(f"sockmapd test: cannot write {args.junit_xml}: {exc.strerror or exc}")
    return EXIT_PASSED if Summary.of(outcomes).ok else EXIT_FAILED


def _run_direct(config: Config, cases: list[Case]) -> list[Outcome]:
    """Return the outcomes; raise DatabaseSetupError if a database cannot be prepared."""
    # Why a lookup answered TEMP (a refused connection, a missing table) is in the log.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sockmapd: %(levelname)s: %(message)s"))
    logger = logging.getLogger("sockmapd")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    databases = create_databases(config.databases)

    async def run() -> list[Outcome]:
        try:
            return await run_direct(config, databases, cases)
        finally:
            await databases.dispose()

    try:
        return anyio.run(run)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
