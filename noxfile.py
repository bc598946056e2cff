"""Developer sessions: nox -s lint | tests | integration | bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests", "integration"]
nox.options.reuse_existing_virtualenvs = True

PASSTHROUGH = (
    "SOCKMAPD_TEST_MYSQL_URL",
    "SOCKMAPD_TEST_PG_URL",
    "SOCKMAPD_REQUIRE_DB",
    "SOCKMAPD_REQUIRE_POSTFIX",
    "SOCKMAPD_REQUIRE_SENDMAIL",
    "SOCKMAPD_SENDMAIL",
)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff and mypy --strict."""
    session.install("-e", ".[all,dev]")
    session.run("ruff", "check", "sockmapd", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "sockmapd", "tests", "noxfile.py")
    session.run("mypy", "--strict", "sockmapd")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the unit tests (pure, fast, no sockets or databases)."""
    session.install("-e", ".[all,dev]")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Run the tests against real sockets, databases, Postfix and Sendmail."""
    session.install("-e", ".[all,dev]")
    session.run("pytest", "tests/integration", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmark and write docs/performance.json and docs/performance.md.

    Not a default session. Options go after --, e.g.
    nox -s bench -- --duration 5 --connections 1,10,100
    """
    session.install("-e", ".[all]", "py-spy")
    session.run("python", "-m", "bench.run", *session.posargs)
