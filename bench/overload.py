"""The overload point: far more lookups than the database can serve in time.

OVERLOAD_CONNECTIONS clients ask sockmapd, each one request in flight, for keys of a
MariaDB map whose query takes QUERY_SECONDS (a SLEEP in a UNION branch, so that found
and missing keys take as long), through POOL database connections, with
query_timeout = QUERY_TIMEOUT. The database answers about POOL / QUERY_SECONDS
queries a second (more where concurrent lookups of one key share a query); the
clients ask many times that. What cannot be served in time must be answered TEMP or
TIMEOUT, none left hanging, and p99 of all answers (right ones and failures) must
stay below query_timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import MAP_NAME, TABLE

OVERLOAD_CONNECTIONS = 500
POOL = 5
QUERY_TIMEOUT = 1.0
QUERY_SECONDS = 0.02


def overload_config(path: Path, port: int, url: str) -> Path:
    """Write the sockmapd config of the overload point."""
    query = (
        f"SELECT maildir FROM {TABLE} WHERE address = '%s' "  # noqa: S608
        f"UNION ALL SELECT NULL FROM DUAL WHERE SLEEP({QUERY_SECONDS}) = 1"
    )
    path.write_text(
        f"""[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true
max_connections = 2000

[log]
level = "warning"

[databases.bench]
url = "{url}"
pool_size = {POOL}
max_overflow = 0
query_timeout = {QUERY_TIMEOUT}

[maps.{MAP_NAME}]
database = "bench"
query = "{query}"
"""
    )
    return path


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the overload result: every run's answers, and the run with the median p99."""

    def p99(run: dict[str, Any]) -> float:
        return float(run["answers"]["p99_ms"] or 0.0)

    ordered = sorted(runs, key=p99)
    median = ordered[(len(ordered) - 1) // 2]
    return {
        "connections": OVERLOAD_CONNECTIONS,
        "pool": POOL,
        "query_timeout_s": QUERY_TIMEOUT,
        "query_seconds": QUERY_SECONDS,
        "runs": [
            {
                "right_per_s": run["rps"],
                "answers": run["answers"],
                "stuck": run["failure_kinds"].get("stuck (no reply)", 0),
                "connections_closed": run["failure_kinds"].get("connection closed", 0),
                "wrong": run["wrong"],
                "server_cpu_share": run["server_cpu_share"],
            }
            for run in runs
        ],
        "median": {
            "right_per_s": median["rps"],
            "answers": median["answers"],
        },
        "p99_spread_ms": [p99(ordered[0]), p99(ordered[-1])],
        "stuck": sum(run["failure_kinds"].get("stuck (no reply)", 0) for run in runs),
        "wrong": sum(run["wrong"] for run in runs),
    }


def met(result: dict[str, Any]) -> bool | None:
    """Return whether p99 stayed below query_timeout with nothing left hanging or wrong."""
    p99 = result.get("median", {}).get("answers", {}).get("p99_ms")
    if p99 is None:
        return None
    return p99 < result["query_timeout_s"] * 1000.0 and not result["stuck"] and not result["wrong"]


def section(result: dict[str, Any] | None) -> list[str]:
    """The report's section on the overload point."""
    if not result:
        return []
    lines = [
        "## Overload",
        "",
        f"{result['connections']} connections, one request in flight each, against "
        f"{result['pool']} MariaDB connections running a query of "
        f"{result['query_seconds'] * 1000:.0f} ms, `query_timeout = "
        f"{result['query_timeout_s']:g}`. Latencies are of every answer in the window, "
        "right or not; *stuck*: requests never answered.",
        "",
    ]
    if result.get("error"):
        return [*lines, "Failed:", "", "```", result["error"].strip(), "```", ""]
    lines += [
        "| run | right answers/s | answers | p50 ms | p99 ms | max ms | right | TEMP "
        "| TIMEOUT | stuck | wrong |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, run in enumerate(result["runs"], 1):
        answers = run["answers"]
        shares = answers["shares"]

        def share(kind: str, shares: dict[str, float] = shares) -> str:
            return f"{shares.get(kind, 0.0) * 100:.1f}%"

        lines.append(
            f"| {number} | {run['right_per_s']:.0f} | {answers['count']} | "
            f"{answers['p50_ms'] or 0:.1f} | {answers['p99_ms'] or 0:.1f} | "
            f"{answers['max_ms'] or 0:.1f} | {share('right')} | {share('TEMP')} | "
            f"{share('TIMEOUT')} | {run['stuck']} | {run['wrong']} |"
        )
    low, high = result["p99_spread_ms"]
    lines += [
        "",
        f"Median p99 of all answers {result['median']['answers']['p99_ms']:.1f} ms "
        f"(runs {low:.1f} to {high:.1f} ms) against query_timeout "
        f"{result['query_timeout_s'] * 1000:.0f} ms.",
        "",
    ]
    return lines
