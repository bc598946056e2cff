"""Render docs/performance.md from the results of bench.run (``python -m bench.report``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import overload

REFERENCE_CONNECTIONS = 100
# The goals of the performance work, as docs/performance.md checks them.
HITS_GOAL = 0.75
CEILING_GOAL = 0.85
CACHE_BYTES_GOAL = 300
BAR_WIDTH = 40
BACKENDS = ("sqlite", "mariadb", "postgresql")
BACKEND_TITLES = {"sqlite": "SQLite", "mariadb": "MariaDB", "postgresql": "PostgreSQL"}

Results = dict[str, Any]
Point = dict[str, Any]


def points(results: Results, scenario: str) -> dict[int, Point]:
    """Return the measured points of scenario by connection count."""
    entry = results["scenarios"].get(scenario) or {}
    return {p["connections"]: p for p in entry.get("points", [])}


def ratio(top: float | None, bottom: float | None) -> float | None:
    """Return top / bottom, or None when either is missing or bottom is 0."""
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    """Format a number, or a dash when it is missing."""
    return "-" if value is None else pattern.format(value)


def field(results: Results, scenario: str, connections: int, name: str) -> float | None:
    """Return one field of one point, or None."""
    point = points(results, scenario).get(connections)
    return None if point is None else point.get(name)


def paired_range(results: Results, scenario: str, connections: int) -> str | None:
    """Return the lowest and highest paired ratio of sockmapd's point, or None."""
    point = points(results, scenario).get(connections) or {}
    paired = point.get("paired_ratios")
    if not paired:
        return None
    return f"{min(paired):.2f}..{max(paired):.2f}"


def counts(results: Results) -> list[int]:
    """Return the connection counts measured."""
    return list(results["settings"]["connections"])


def reference(results: Results) -> int:
    """Return the connection count the targets are judged at."""
    measured = counts(results)
    if REFERENCE_CONNECTIONS in measured:
        return REFERENCE_CONNECTIONS
    return max(measured)


# -- targets ----------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    """Return the mark of a target."""
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def targets(results: Results) -> list[tuple[str, bool | None, str]]:
    """Return (target, met, numbers) for every target."""
    ref = reference(results)
    rows: list[tuple[str, bool | None, str]] = []

    def rps_ratio(top: str, bottom: str, connections: int) -> float | None:
        return ratio(
            field(results, top, connections, "rps"), field(results, bottom, connections, "rps")
        )

    def paired_note(scenario: str, connections: int) -> str:
        spread = paired_range(results, scenario, connections)
        return "" if spread is None else f"; paired runs {spread}"

    hits = rps_ratio("sockmapd-hits", "floor", ref)
    rows.append(
        (
            f"cache hits ≥ {HITS_GOAL}x floor (req/s, {ref} connections)",
            None if hits is None else hits >= HITS_GOAL,
            f"{fmt(hits)}x ({fmt(field(results, 'sockmapd-hits', ref, 'rps'), '{:.0f}')} vs "
            f"{fmt(field(results, 'floor', ref, 'rps'), '{:.0f}')} req/s"
            f"{paired_note('sockmapd-hits', ref)})",
        )
    )
    for backend in ("postgresql", "mariadb"):
        for connections in sorted({ref, 1} & set(counts(results)), reverse=True):
            r = rps_ratio(f"sockmapd-{backend}", f"ceiling-{backend}", connections)
            mine = field(results, f"sockmapd-{backend}", connections, "rps")
            theirs = field(results, f"ceiling-{backend}", connections, "rps")
            latency = ""
            if connections == 1:
                latency = (
                    f"; p50 {fmt(field(results, f'sockmapd-{backend}', 1, 'p50_ms'))} vs "
                    f"{fmt(field(results, f'ceiling-{backend}', 1, 'p50_ms'))} ms, p99 "
                    f"{fmt(field(results, f'sockmapd-{backend}', 1, 'p99_ms'))} vs "
                    f"{fmt(field(results, f'ceiling-{backend}', 1, 'p99_ms'))} ms"
                )
            rows.append(
                (
                    f"cache off, {BACKEND_TITLES[backend]} ≥ {CEILING_GOAL}x ceiling (req/s, "
                    f"{connections} connection{'s' if connections > 1 else ''})",
                    None if r is None else r >= CEILING_GOAL,
                    f"{fmt(r)}x ({fmt(mine, '{:.0f}')} vs {fmt(theirs, '{:.0f}')} req/s"
                    f"{paired_note(f'sockmapd-{backend}', connections)}{latency})",
                )
            )
    fairness = {
        name: field(results, name, ref, "fairness")
        for name in results["scenarios"]
        if name.startswith("sockmapd-")
    }
    measured = {k: v for k, v in fairness.items() if v is not None}
    worst = min(measured.items(), key=lambda kv: kv[1]) if measured else None
    rows.append(
        (
            f"fairness ≥ 0.5 at {ref} connections (every sockmapd scenario)",
            None if worst is None else worst[1] >= 0.5,
            "-" if worst is None else f"lowest {worst[1]:.2f} ({worst[0]})",
        )
    )
    for backend in BACKENDS:
        p99 = field(results, f"sockmapd-{backend}", ref, "p99_ms")
        ceiling = field(results, f"ceiling-{backend}", ref, "p99_ms")
        r = ratio(p99, ceiling)
        rows.append(
            (
                f"p99 cache off, {BACKEND_TITLES[backend]} ≤ 1.5x ceiling p99 ({ref} connections)",
                None if r is None else r <= 1.5,
                f"{fmt(r)}x ({fmt(p99)} vs {fmt(ceiling)} ms)",
            )
        )
    p99_pg = field(results, "sockmapd-postgresql", 10, "p99_ms")
    rows.append(
        (
            "p99 < 5 ms at 10 connections, PostgreSQL, cache off",
            None if p99_pg is None else p99_pg < 5.0,
            f"{fmt(p99_pg)} ms",
        )
    )
    idle = results.get("memory_idle") or {}
    idle_rss = idle.get("rss_mb")
    rows.append(
        (
            f"RSS < 150 MB with {idle.get('connections', 1000)} idle connections",
            None if idle_rss is None else idle_rss < 150,
            f"{fmt(idle_rss, '{:.1f}')} MB",
        )
    )
    cached = results.get("memory_cached") or {}
    per_entry = cached.get("per_entry_bytes") if not cached.get("warm", {}).get("wrong") else None
    rows.append(
        (
            f"≤ {CACHE_BYTES_GOAL} bytes per cached answer above the daemon with none, at "
            f"{cached.get('entries', 0):,} cached answers",
            None if per_entry is None else per_entry <= CACHE_BYTES_GOAL,
            f"{fmt(per_entry, '{:.0f}')} bytes (RSS {fmt(cached.get('rss_mb'), '{:.1f}')} MB "
            f"against {fmt(cached.get('rss_mb_start'), '{:.1f}')} MB)"
            + (f" ({cached['skipped']})" if cached.get("skipped") else ""),
        )
    )
    loaded = results.get("overload") or {}
    if loaded and not loaded.get("error"):
        answers = loaded["median"]["answers"]
        rows.append(
            (
                f"overload ({loaded['connections']} connections): p99 of all answers < "
                f"query_timeout, none hanging or wrong",
                overload.met(loaded),
                f"p99 {fmt(answers['p99_ms'], '{:.0f}')} ms vs "
                f"{loaded['query_timeout_s'] * 1000:.0f} ms; p50 "
                f"{fmt(answers['p50_ms'], '{:.1f}')} ms; TEMP "
                f"{answers['shares'].get('TEMP', 0) * 100:.0f}%, TIMEOUT "
                f"{answers['shares'].get('TIMEOUT', 0) * 100:.1f}%; stuck {loaded['stuck']}",
            )
        )
    startup = results.get("startup") or {}
    for backend in ("sqlite", "postgresql"):
        got = startup.get(backend) or {}
        median = got.get("median_s")
        rows.append(
            (
                f"first answer < 1.5 s after process start ({BACKEND_TITLES[backend]})",
                None if median is None else median < 1.5,
                f"{fmt(median, '{:.2f}')} s (median of {len(got.get('runs_s', []))} starts)",
            )
        )
    return rows


# -- sections ---------------------------------------------------------------


def machine_section(results: Results) -> list[str]:
    """Describe the machine, the versions and the settings."""
    m = results["machine"]
    s = results["settings"]
    gen = results.get("generator") or {}
    packages = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    return [
        "## Machine and settings",
        "",
        f"* CPU: {m['cpu']}, {m['cores']} cores (the servers, the generator and the "
        "database servers all share them)",
        f"* Python {m['python']} ({m['implementation']}), kernel {m['kernel']}, "
        f"event loop: {m['event_loop']} (sockmapd and the generator use it when installed)",
        f"* Packages: {packages}",
        f"* Run: {results.get('started', '?')} to {results.get('finished', '?')}; 1-minute "
        f"load average {fmt(results.get('load_average_at_start'))} before the run and "
        f"{fmt(results.get('load_average_at_end'))} after it (the *other CPU* column of each "
        "table shows what else ran during each point: the database server, and any "
        "unrelated load, which makes that point less trustworthy)",
        f"* Each point: {s['warmup_s']:g} s warm-up, then {s['duration_s']:g} s measured; "
        f"connections {', '.join(str(c) for c in s['connections'])}; each connection has one "
        f"request in flight (as Postfix); keys: {s['found_ratio']:.0%} from "
        f"{s['found_keys']} that exist, the rest from {s['missing_keys']} that do not; "
        "every reply is checked",
        f"* Database connections: at most {s['pool_max']} (sockmapd's default pool_size "
        "and max_overflow, and the same for each ceiling)",
        "* Generator processes by connection count (chosen by driving the floor with one "
        "and two): " + ", ".join(f"{c}: {n}" for c, n in (gen.get("procs") or {}).items()),
        "",
    ]


def generator_section(results: Results) -> list[str]:
    """Say whether the generator could have been the bottleneck."""
    gen = results.get("generator") or {}
    lines = ["## Is the generator the bottleneck?", ""]
    calibration = gen.get("calibration") or []
    if calibration:
        lines += [
            "The floor server driven by one and by two generator processes (two are used "
            "where they bring over 10 % more):",
            "",
            "| generator processes | connections | req/s | generator CPU (cores) "
            "| floor CPU (cores) |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {c['procs']} | {c['connections']} | {c['rps']:.0f} | "
            f"{c['generator_cpu_share']:.2f} | {c['server_cpu_share']:.2f} |"
            for c in calibration
        ]
        lines.append("")
    floor = points(results, "floor")
    if floor:
        top = floor[max(floor)]
        gen_cpu = top["generator"]["cpu_share"]
        srv_cpu = top["server_cpu_share"]
        other = top.get("other_cpu_share") or 0.0
        cores = results["machine"]["cores"] or 2
        lines.append(
            f"Against the floor at {top['connections']} connections the generator used "
            f"{gen_cpu:.2f} cores, the floor {srv_cpu:.2f} and everything else "
            f"{other:.2f}, of {cores}. "
            + (
                "The machine was full: the floor's figure is what this machine could do "
                "with this generator at the time, a lower bound of the floor itself, so a "
                "ratio against it flatters sockmapd rather than hurts it."
                if gen_cpu + srv_cpu + other > 0.85 * cores
                else "Neither the generator nor the floor used a whole core: what bounds the "
                "floor is the loopback round trip and scheduling, not the generator's CPU."
            )
        )
        slowest_server = max(
            (
                p["server_cpu_share"]
                for name in results["scenarios"]
                if name.startswith("sockmapd-")
                for p in points(results, name).values()
            ),
            default=0.0,
        )
        lines += [
            "",
            "Every sockmapd point is far below the floor's rate, with sockmapd at up to "
            f"{slowest_server:.2f} cores (one Python process can use one): there it is "
            "sockmapd, not the generator, that sets the pace (per-point CPU shares are in the "
            "tables below).",
            "",
        ]
    return lines


def outside_load(results: Results) -> float | None:
    """Return the median CPU (cores) used by other processes during the database-free points."""
    shares = sorted(
        p["other_cpu_share"]
        for name in ("floor", "sockmapd-hits")
        for p in points(results, name).values()
        if p.get("other_cpu_share") is not None
    )
    return shares[len(shares) // 2] if shares else None


def caveat_section(results: Results) -> list[str]:
    """Warn when other work shared the machine during the run."""
    other = outside_load(results)
    if other is None or other < 0.25:
        return []
    return [
        f"> **Caveat**: other work shared the machine during this run: in the scenarios "
        f"that use no database (floor, cache hits), processes other than the server and "
        f"the generator used a median {other:.2f} cores of {results['machine']['cores']}. "
        "Absolute figures are therefore low and noisy; ratios taken within one connection "
        "count are more telling than the absolute numbers, and a run on a quiet machine "
        "should replace this one.",
        "",
    ]


def targets_section(results: Results) -> list[str]:
    """List every target as met or not met with its numbers."""
    lines = ["## Targets", "", "| target | result | numbers |", "|---|---|---|"]
    lines += [f"| {name} | {verdict(ok)} | {numbers} |" for name, ok, numbers in targets(results)]
    return [*lines, ""]


def ratio_section(results: Results) -> list[str]:
    """Ratios of sockmapd against the floor and the ceilings, at every count."""
    measured = counts(results)
    header = "| ratio | " + " | ".join(f"{c} conn." for c in measured) + " |"
    rule = "|---|" + "---:|" * len(measured)
    lines = [
        "## Ratios",
        "",
        "Throughput (req/s) of sockmapd divided by that of the reference server, and p99 "
        "latency of sockmapd divided by the reference's (lower is better for p99); each is "
        "the median run of sockmapd over the median run of the reference, the number the "
        "targets are judged on. "
        "In brackets after a req/s ratio: the lowest and highest paired ratio, run i of "
        "sockmapd divided by run i of the reference, the two run one after the other.",
        "",
        header,
        rule,
    ]

    def row(label: str, top: str, bottom: str, name: str) -> str:
        cells = []
        for c in measured:
            cell = fmt(ratio(field(results, top, c, name), field(results, bottom, c, name)))
            spread = paired_range(results, top, c) if name == "rps" else None
            cells.append(cell if spread is None else f"{cell} ({spread})")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines.append(row("req/s: cache hits / floor", "sockmapd-hits", "floor", "rps"))
    for b in BACKENDS:
        lines.append(
            row(
                f"req/s: cache off / ceiling, {BACKEND_TITLES[b]}",
                f"sockmapd-{b}",
                f"ceiling-{b}",
                "rps",
            )
        )
    lines.append(row("p99: cache hits / floor", "sockmapd-hits", "floor", "p99_ms"))
    for b in BACKENDS:
        lines.append(
            row(
                f"p99: cache off / ceiling, {BACKEND_TITLES[b]}",
                f"sockmapd-{b}",
                f"ceiling-{b}",
                "p99_ms",
            )
        )
    lines.append(
        row(
            "req/s: log level info / warning, SQLite",
            "sockmapd-sqlite-info",
            "sockmapd-sqlite",
            "rps",
        )
    )
    return [*lines, ""]


def runs_cell(point: Point) -> str:
    """Return every run's req/s of a point, lowest to highest ("-" for a single run)."""
    runs = point.get("runs") or []
    if len(runs) < 2:
        return "-"
    return ", ".join(f"{run['rps']:.0f}" for run in sorted(runs, key=lambda run: run["rps"]))


def scenario_tables(results: Results) -> list[str]:
    """One table per scenario."""
    lines = [
        "## Scenarios",
        "",
        "Each point was run several times (*runs req/s*); the row shows the run with the "
        "median req/s. The two servers of a pair (the floor and cache hits; each ceiling and "
        "sockmapd with the cache off on the same database) run at the same time, the one "
        "not measured idle, and their runs alternate in time (reference, sockmapd, "
        "reference, ... at the first connection count; sockmapd first at the next, and so "
        "on), so that drift of the machine moves both alike. "
        "Latencies are from the generator's side (send to reply). *wrong*: a reply other "
        "than the expected `OK <value>` or `NOTFOUND `; *failures*: TEMP, TIMEOUT, PERM, "
        "connections lost or requests never answered; *fairness*: fewest requests any one "
        "connection got divided by the mean; *starved*: connections that got no answer "
        "inside the measured window; *slowest 1st reply*: the longest any connection waited "
        "for its first answer after the load started; *server CPU*, *generator CPU* and "
        "*other CPU* (everything else on the machine, database server included): cores "
        "used over the point's whole run; *new DB connections*: connections the database server "
        "saw opened during the point (PostgreSQL: sessions of the benchmark database; "
        "MariaDB: the server's Connections counter, which includes one probe connection per run).",
        "",
    ]
    for name, entry in results["scenarios"].items():
        lines += [f"### {entry['title']} (`{name}`)", ""]
        if entry.get("skipped"):
            lines += [f"Skipped: {entry['skipped']}", ""]
            continue
        if entry.get("error"):
            lines += ["Failed:", "", "```", entry["error"].strip(), "```", ""]
        if not entry.get("points"):
            continue
        lines += [
            "| connections | req/s | runs req/s | p50 ms | p99 ms | p99.9 ms | wrong | failures "
            "| fairness | starved | slowest 1st reply ms | server CPU | generator CPU "
            "| other CPU | new DB connections |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in entry["points"]:
            kinds = ", ".join(f"{k}: {n}" for k, n in p["failure_kinds"].items())
            failures = f"{p['failures']}" + (f" ({kinds})" if kinds else "")
            lines.append(
                f"| {p['connections']} | {p['rps']:.0f} | {runs_cell(p)} | {fmt(p['p50_ms'])} | "
                f"{fmt(p['p99_ms'])} | {fmt(p['p999_ms'])} | {p['wrong']} | {failures} | "
                f"{p['fairness']:.2f} | {p.get('connections_without_counted_reply', '-')} | "
                f"{fmt(p.get('slowest_first_reply_ms'), '{:.0f}')} | {p['server_cpu_share']:.2f} | "
                f"{p['generator']['cpu_share']:.2f} | {fmt(p.get('other_cpu_share'))} | "
                f"{p.get('db_connections_opened', '-')} |"
            )
        examples = [e for p in entry["points"] for e in p.get("wrong_examples", [])]
        if examples:
            lines += ["", "Wrong answers, for example: " + "; ".join(examples[:3])]
        lines.append("")
    return lines


def chart_section(results: Results) -> list[str]:
    """A text bar chart of throughput against connections."""
    measured = counts(results)
    top = max(
        (p["rps"] for name in results["scenarios"] for p in points(results, name).values()),
        default=0.0,
    )
    if not top:
        return []
    width = max(len(name) for name in results["scenarios"])
    lines = [
        "## Throughput against connections",
        "",
        f"Requests per second; one `#` is {top / BAR_WIDTH:.0f} req/s.",
        "",
        "```",
    ]
    for c in measured:
        lines.append(f"{c} connection{'s' if c != 1 else ''}")
        for name in results["scenarios"]:
            point = points(results, name).get(c)
            if point is None:
                continue
            bar = "#" * max(1, round(point["rps"] / top * BAR_WIDTH)) if point["rps"] else ""
            lines.append(f"  {name:<{width}} {bar:<{BAR_WIDTH}} {point['rps']:>8.0f}")
        lines.append("")
    return [*lines[:-1], "```", ""]


def overload_section(results: Results) -> list[str]:
    """Far more lookups than the database serves in time."""
    return overload.section(results.get("overload"))


def memory_section(results: Results) -> list[str]:
    """Memory and start-up."""
    lines = ["## Memory and start-up", ""]
    idle = results.get("memory_idle")
    if idle:
        if idle.get("error"):
            lines.append(f"* Idle connections: failed: {idle['error']}")
        else:
            lines.append(
                f"* {idle['connections']} idle connections (each answered once, then left "
                f"open): RSS {fmt(idle.get('rss_mb'), '{:.1f}')} MB, against "
                f"{fmt(idle.get('rss_mb_start'), '{:.1f}')} MB after start-up and one answer "
                f"(≈ {fmt(idle.get('per_connection_kb'), '{:.1f}')} KB per connection)"
            )
    cached = results.get("memory_cached")
    if cached:
        if cached.get("skipped"):
            lines.append(f"* {cached['entries']} cached answers: skipped: {cached['skipped']}")
        elif cached.get("error"):
            lines.append(f"* {cached['entries']} cached answers: failed: {cached['error']}")
        else:
            warm = cached.get("warm", {})
            second = cached.get("second_pass", {})
            steps = "; ".join(
                f"{step['entries']:,}: RSS {step['rss_mb']:.1f} MB "
                f"(≈ {step['per_entry_bytes']:.0f} bytes per answer)"
                for step in cached.get("checkpoints", [])
            )
            lines.append(
                f"* Cached answers (SQLite table of {cached['entries']:,} rows, cache_size "
                f"{2 * cached['entries']:,}, every key asked once): RSS with none "
                f"{fmt(cached.get('rss_mb_start'), '{:.1f}')} MB; with {steps}. Filling took "
                f"{fmt(cached.get('warm_seconds'), '{:.1f}')} s "
                f"({warm.get('answered', 0)} answers, {warm.get('wrong', 0)} wrong), asking "
                f"every key again {fmt(cached.get('second_pass_seconds'), '{:.1f}')} s "
                f"({second.get('wrong', 0)} wrong)"
            )
    startup = results.get("startup") or {}
    for backend in ("sqlite", "postgresql"):
        got = startup.get(backend)
        if got:
            runs = ", ".join(f"{t:.2f}" for t in got["runs_s"])
            lines.append(
                f"* Start-up to the first `OK` answer, {BACKEND_TITLES[backend]}: median "
                f"{got['median_s']:.2f} s (runs: {runs} s), from process start through "
                "imports, config load, binding, the first database connection and the query"
            )
        if startup.get(f"{backend}_error"):
            lines.append(
                f"* Start-up, {BACKEND_TITLES[backend]}: failed: {startup[f'{backend}_error']}"
            )
    return [*lines, ""]


def logging_section(results: Results) -> list[str]:
    """What per-request logging costs."""
    info = points(results, "sockmapd-sqlite-info")
    warning = points(results, "sockmapd-sqlite")
    if not info or not warning:
        return []
    lines = [
        "## Cost of per-request logging",
        "",
        'sockmapd on SQLite with the cache off, `log.level = "info"` (one line per request, '
        'written to a file) against `"warning"`:',
        "",
        "| connections | req/s warning | req/s info | info / warning | p99 ms warning "
        "| p99 ms info |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in counts(results):
        if c in info and c in warning:
            lines.append(
                f"| {c} | {warning[c]['rps']:.0f} | {info[c]['rps']:.0f} | "
                f"{fmt(ratio(info[c]['rps'], warning[c]['rps']))} | "
                f"{fmt(warning[c]['p99_ms'])} | {fmt(info[c]['p99_ms'])} |"
            )
    return [*lines, ""]


def workers_section(results: Results) -> list[str]:
    """Throughput with several worker processes against one, at the reference count."""
    several = [w for w in results["settings"].get("workers", []) if w > 1]
    ref = reference(results)
    if not several:
        return []
    lines = [
        "## Worker processes",
        "",
        f"sockmapd with `server.workers` above 1, at {ref} connections, against the "
        "one-process scenarios above. Each worker has its own cache: the answers asked "
        "before measuring and during the warm-up fill the cache of the worker that served "
        "them. *server CPU* counts the supervisor and all its workers.",
        "",
        "| scenario | workers | req/s | against 1 worker | p99 ms | server CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for base, label in (
        ("sockmapd-hits", "cache hits"),
        ("sockmapd-sqlite", "cache off, SQLite"),
        ("sockmapd-mariadb", "cache off, MariaDB"),
        ("sockmapd-postgresql", "cache off, PostgreSQL"),
    ):
        one = points(results, base).get(ref)
        rows = [(1, one)] + [(w, points(results, f"{base}-workers{w}").get(ref)) for w in several]
        for workers, point in rows:
            if point is None:
                continue
            against = ratio(point["rps"], one["rps"] if one else None)
            lines.append(
                f"| {label} | {workers} | {point['rps']:.0f} | {fmt(against)} | "
                f"{fmt(point['p99_ms'])} | {point['server_cpu_share']:.2f} |"
            )
    return [*lines, ""]


def spread_section(results: Results) -> list[str]:
    """How evenly two workers share short and long connections."""
    spread = results.get("worker_spread")
    if not spread:
        return []
    lines = [
        "### Connections per worker",
        "",
        "Two workers, each accepting on its own `SO_REUSEPORT` socket; which worker "
        "accepted each connection is read from /proc. Goal: the busiest worker serves at "
        "most 1.5 times the quietest.",
        "",
    ]
    if "error" in spread:
        return [*lines, f"Not measured: {spread['error']}", ""]
    lines += [
        "| connections | per worker | busiest / quietest | goal |",
        "|---|---|---:|---|",
    ]
    for label, what in (("short", "short (one request each)"), ("long", "long (held open)")):
        entry = spread.get(label)
        if not entry:
            continue
        skew = entry["busiest_to_quietest"]
        ok = None if skew is None else skew <= 1.5
        lines.append(
            f"| {entry['connections']} {what} | {', '.join(map(str, entry['per_worker']))} | "
            f"{fmt(skew)} | {verdict(ok)} |"
        )
    return [*lines, ""]


def profile_section(results: Results) -> list[str]:
    """Where the time goes, from the py-spy samples."""
    prof = results.get("profile")
    if not prof:
        return []
    lines = ["## Where the time goes", ""]
    if prof.get("skipped") or prof.get("error"):
        return [*lines, f"Not profiled: {prof.get('skipped') or prof.get('error')}", ""]
    samples = prof.get("samples", 0)
    if not samples:
        return [*lines, "py-spy recorded no samples.", ""]
    main = prof.get("main_samples") or samples
    lines += [
        f"py-spy sampled sockmapd (cache off, SQLite, {prof['connections']} connections, "
        f"{prof['seconds']:g} s, without pausing it; "
        f"{fmt(prof.get('rps_while_sampled'), '{:.0f}')} req/s while sampled): "
        f"{samples} samples of running (not idle) threads.",
        "",
        "| thread | samples | threads seen |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| `{kind}` | {t['samples']} | {t['distinct_threads']} |"
        for kind, t in prof["threads"].items()
    ]
    lines += [
        "",
        "The event-loop thread (`MainThread`) is the one that bounds throughput, as it "
        "can use one core. Its samples by layer (the innermost frame of a known "
        "package names the layer):",
        "",
        "| layer | share of the event-loop thread |",
        "|---|---:|",
    ]
    before = (results.get("baseline") or {}).get("profile") or {}
    if before.get("layers"):
        before_main = before.get("main_samples") or before.get("samples") or 1
        lines[-2:] = [
            f"| layer | share now | share {results['baseline']['label']} |",
            "|---|---:|---:|",
        ]
        layers = list(prof["layers"]) + [k for k in before["layers"] if k not in prof["layers"]]
        lines += [
            f"| {layer} | {prof['layers'].get(layer, 0) / main:.0%} | "
            f"{before['layers'].get(layer, 0) / before_main:.0%} |"
            for layer in layers
        ]
        lines += [
            "",
            f"Requests per second while sampled: now "
            f"{fmt(prof.get('rps_while_sampled'), '{:.0f}')}, before "
            f"{fmt(before.get('rps_while_sampled'), '{:.0f}')}. Threads seen: now "
            + ", ".join(f"{k} {v['distinct_threads']}" for k, v in prof["threads"].items())
            + "; before "
            + ", ".join(f"{k} {v['distinct_threads']}" for k, v in before["threads"].items())
            + ".",
        ]
    else:
        lines += [f"| {layer} | {n / main:.0%} |" for layer, n in prof["layers"].items()]
    lines += [
        "",
        "Its functions with the most samples of their own:",
        "",
        "| function | share |",
        "|---|---:|",
    ]
    lines += [
        f"| {frame_label(t['frame'])} | {t['samples'] / main:.1%} |" for t in prof["top_self"]
    ]
    return [*lines, ""]


def frame_label(frame: str) -> str:
    """Return a profile frame for a table cell; a bare thread name means no Python frame."""
    if frame.startswith(("thread (", "process ")):
        return "(no Python frame: in C code of the loop or the interpreter)"
    return f"`{frame.replace('|', '/')}`"


def notes_section(results: Results) -> list[str]:
    """Skipped scenarios and set-up problems."""
    notes = list(results.get("notes", []))
    notes += [
        f"{name}: skipped: {e['skipped']}"
        for name, e in results["scenarios"].items()
        if e.get("skipped")
    ]
    if not notes:
        return []
    return ["## Notes", "", *[f"* {n}" for n in notes], ""]


SECTIONS: tuple[Callable[[Results], list[str]], ...] = (
    caveat_section,
    machine_section,
    targets_section,
    ratio_section,
    chart_section,
    scenario_tables,
    logging_section,
    workers_section,
    spread_section,
    overload_section,
    memory_section,
    profile_section,
    generator_section,
    notes_section,
)


def render(results: Results) -> str:
    """Return the whole Markdown report."""
    lines = [
        "# Performance",
        "",
        "Measured by `nox -s bench` (`python -m bench.run`; options: `nox -s bench -- --help`). "
        "These numbers come from one run on one machine; they are written to "
        "[performance.json](performance.json) and this page is rendered from it "
        "(`python -m bench.report`). Nothing here is asserted by the test suite.",
        "",
        "What is compared, under the same load generator and settings:",
        "",
        "* **floor**: a constant-reply socketmap server (asyncio Protocol, answers from a dict): "
        "what the machine, the loopback and the generator allow;",
        "* **sockmapd, cache hits**: every key cached (`cache_ttl = 300`, "
        "`negative_cache_ttl = 300`, all keys asked once before measuring);",
        "* **sockmapd, cache off** on SQLite, MariaDB and PostgreSQL (table `bench_users`, "
        '1000 rows, in its own database `sockmapd_bench`), `log.level = "warning"`;',
        "* **ceiling**: a minimal socketmap server (asyncio Protocol, no framework) running the "
        "same SELECT through the raw driver (aiosqlite, asyncmy pool, asyncpg pool) with as "
        "many database connections as sockmapd may open;",
        '* sockmapd at `log.level = "info"` on SQLite, to show what per-request logging costs;',
        "* sockmapd with several worker processes (`server.workers`), cache hits and SQLite "
        "with the cache off, to show how it scales with cores.",
        "",
    ]
    for section in SECTIONS:
        lines += section(results)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Render a results file (default docs/performance.json) to Markdown."""
    args = argv if argv is not None else sys.argv[1:]
    root = Path(__file__).resolve().parent.parent
    source = Path(args[0]) if args else root / "docs" / "performance.json"
    target = Path(args[1]) if len(args) > 1 else source.with_suffix(".md")
    target.write_text(render(json.loads(source.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
