"""Run the whole benchmark and write docs/performance.json and docs/performance.md.

    python -m bench.run [--duration 5] [--warmup 1] [--connections 1,10,100] [--workers 1,2]

One run measures, with the same generator and settings: the floor (a constant-reply
server), sockmapd answering from its cache, sockmapd with the cache off on SQLite,
MariaDB and PostgreSQL next to the ceiling for each (a minimal server on the raw driver),
sockmapd at log level info, sockmapd with several worker processes (--workers) at the
reference connection count; then sockmapd's memory with 1000 idle connections and with
100000 cached answers, its start-up time to the first answer, and (when py-spy is
installed) a short profile of sockmapd on SQLite with the cache off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from bench import overload, report
from bench.common import (
    MAP_NAME,
    NOTFOUND,
    POOL_MAX,
    found_key,
    free_port,
    machine_busy_seconds,
    missing_key,
    netstring,
    read_reply,
    rss_bytes,
    tree_cpu_seconds,
    tree_rss_bytes,
    value_of,
    wait_listening,
)
from bench.databases import (
    Backend,
    connections_opened,
    create_server_backend,
    drop_server_backend,
    make_sqlite,
)

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SPREAD_SHORT = 200
SPREAD_LONG = 100
IDLE_CONNECTIONS = 1000
WARM_TIMEOUT = 300.0
STARTUP_RUNS = 3
PROFILE_SECONDS = 5.0
# What a failing server or run raises; it is reported in the scenario's entry.
MEASURE_ERRORS = (RuntimeError, OSError, subprocess.TimeoutExpired, TimeoutError)


@dataclass
class Options:
    """The command line."""

    duration: float
    warmup: float
    connections: list[int]
    gen_procs: str
    pg_url: str
    mysql_url: str
    json_path: Path
    md_path: Path
    only: list[str] | None
    extras: bool
    profile: bool
    keep_logs: bool
    cached_entries: list[int]
    workers: list[int]
    baseline: Path | None
    repeat: int = 3


@dataclass
class Side:
    """One server measured: its scenario, how to start it, the keys to ask it first."""

    scenario: str
    title: str
    start: Callable[[], Server]
    prewarm: Sequence[str] = ()


def log(message: str) -> None:
    """Tell the person running the benchmark what is going on."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Server:
    """A server process under test, with its output sent to a log file."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.process.pid

    def wait_ready(self) -> None:
        """Wait until the port accepts connections; raise if the process died or hung."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.tail()}")
            if wait_listening(self.port, 0.2):
                return
        raise RuntimeError(f"{self.name} did not start listening: {self.tail()}")

    def tail(self) -> str:
        """Return the end of the process's output."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Wait for server to be ready, and stop it whatever happens."""
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def sockmapd_config(
    path: Path,
    port: int,
    url: str,
    *,
    level: str = "warning",
    cache: Mapping[str, float] | None = None,
    workers: int = 1,
) -> Path:
    """Write a sockmapd config serving the benchmark map from url."""
    cache_lines = "".join(f"{k} = {v}\n" for k, v in (cache or {}).items())
    path.write_text(
        f"""[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true
max_connections = 2000
{f"workers = {workers}" if workers > 1 else ""}

[log]
level = "{level}"

[databases.bench]
url = "{url}"

[maps.{MAP_NAME}]
database = "bench"
table = "bench_users"
key = "address"
value = "maildir"
{cache_lines}"""
    )
    return path


def sockmapd_argv(config: Path) -> list[str]:
    """Return the command that serves config."""
    return [sys.executable, "-m", "sockmapd", "-c", str(config)]


def check_config(config: Path) -> str | None:
    """Return None if sockmapd accepts config, else its complaint."""
    done = subprocess.run(
        [*sockmapd_argv(config), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        return None
    return (done.stderr or done.stdout).strip()


def ask(port: int, key: str, timeout: float = 5.0) -> bytes:
    """Send one request on a new connection and return the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(netstring(f"{MAP_NAME} {key}".encode()))
        return read_reply(sock, bytearray())


async def pipeline(
    port: int, keys: Sequence[str], connections: int, batch: int = 200
) -> dict[str, int]:
    """Ask every key once, over connections pipelining batch requests each; check answers."""
    tally = {"answered": 0, "wrong": 0}
    shares = [keys[i::connections] for i in range(connections)]

    async def one(share: Sequence[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for start in range(0, len(share), batch):
                chunk = share[start : start + batch]
                writer.write(b"".join(netstring(f"{MAP_NAME} {k}".encode()) for k in chunk))
                await writer.drain()
                for key in chunk:
                    header = await reader.readuntil(b":")
                    reply = (await reader.readexactly(int(header[:-1]) + 1))[:-1]
                    tally["answered"] += 1
                    if reply != expected(key):
                        tally["wrong"] += 1
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(s) for s in shares if s)), WARM_TIMEOUT)
    return tally


def expected(key: str) -> bytes:
    """Return the right answer for a benchmark key."""
    if key.startswith("user"):
        return b"OK " + value_of(int(key[4:].split("@")[0])).encode()
    return NOTFOUND


def run_loadgen(port: int, connections: int, opts: Options, procs: int, pid: int) -> dict[str, Any]:
    """Run the generator against port once; add the server's CPU use to its result."""
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        str(port),
        "--connections",
        str(connections),
        "--duration",
        str(opts.duration),
        "--warmup",
        str(opts.warmup),
        "--procs",
        str(procs),
    ]
    # The whole process tree: sockmapd with workers is a supervisor and its children.
    cpu_before = tree_cpu_seconds(pid)
    busy_before = machine_busy_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=opts.warmup + opts.duration + 120,
        check=False,
    )
    wall = time.perf_counter() - started
    server_cpu = tree_cpu_seconds(pid) - cpu_before
    busy = machine_busy_seconds() - busy_before
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The generator's whole CPU: interpreter start-up and its worker processes included.
    generator_cpu = (children.ru_utime - children_before.ru_utime) + (
        children.ru_stime - children_before.ru_stime
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    gen = result["generator"]
    gen["cpu_share"] = gen["cpu_seconds"] / gen["wall_seconds"] if gen["wall_seconds"] else 0.0
    # The server's CPU over the generator's whole run (connect, warm-up, window).
    result["server_cpu_share"] = server_cpu / wall if wall else 0.0
    # Everything else that ran meanwhile: the database server, and any other load on
    # the machine, which makes the point less trustworthy.
    result["other_cpu_share"] = max(0.0, busy - server_cpu - generator_cpu) / wall if wall else 0.0
    result["server_rss_mb"] = tree_rss_bytes(pid) / 2**20
    return result


def median_point(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the run with the median req/s, with every run's summary and the spread."""
    ordered = sorted(runs, key=lambda run: float(run["rps"]))
    point = dict(ordered[(len(ordered) - 1) // 2])
    point["runs"] = [
        {k: run[k] for k in ("rps", "p50_ms", "p99_ms", "fairness", "failures", "wrong")}
        for run in runs
    ]
    point["rps_spread"] = [ordered[0]["rps"], ordered[-1]["rps"]]
    return point


def pair_up(reference: dict[str, Any], sockmapd: dict[str, Any]) -> bool:
    """Add to sockmapd's point run i of sockmapd / run i of the reference, and their median.

    Return False, adding nothing, if a run of the reference answered nothing.
    """
    if not all(run["rps"] for run in reference["runs"]):
        return False
    paired = [
        mine["rps"] / theirs["rps"]
        for mine, theirs in zip(sockmapd["runs"], reference["runs"], strict=True)
    ]
    sockmapd["paired_ratios"] = paired
    sockmapd["paired_ratio_median"] = statistics.median(paired)
    return True


def point_line(name: str, point: dict[str, Any]) -> str:
    """Return a one-line summary of one measured point."""
    spread = point.get("rps_spread")
    runs = f" (runs {spread[0]:.0f}..{spread[1]:.0f})" if spread and len(point["runs"]) > 1 else ""
    return (
        f"{name} c={point['connections']}: {point['rps']:.0f} req/s{runs}, "
        f"p50 {point['p50_ms'] or 0:.2f} ms, p99 {point['p99_ms'] or 0:.2f} ms, "
        f"wrong {point['wrong']}, failures {point['failures']}, fairness {point['fairness']:.2f}"
    )


class Bench:
    """One benchmark run: its options, work directory and results."""

    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.procs: dict[int, int] = {}
        self.results: dict[str, Any] = {
            "machine": machine(),
            "settings": {
                "duration_s": opts.duration,
                "warmup_s": opts.warmup,
                "connections": opts.connections,
                "found_ratio": 0.8,
                "found_keys": 1000,
                "missing_keys": 1000,
                "pool_max": POOL_MAX,
                "workers": opts.workers,
            },
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average_at_start": os.getloadavg()[0],
            "scenarios": {},
            "notes": [],
        }
        if opts.baseline is not None and opts.baseline.exists():
            # Shown beside this run's profile; its numbers are from another run.
            self.results["baseline"] = json.loads(opts.baseline.read_text())

    # -- servers -------------------------------------------------------------

    def floor(self) -> Server:
        """Start the floor server."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        return Server("floor", argv, port, self.workdir / "floor.log")

    def ceiling(self, backend: Backend) -> Server:
        """Start the ceiling server on backend."""
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--port",
            str(port),
            "--backend",
            backend.name,
            "--dsn",
            backend.ceiling_dsn,
            "--pool",
            str(POOL_MAX),
        ]
        return Server(
            f"ceiling-{backend.name}", argv, port, self.workdir / f"ceiling-{backend.name}.log"
        )

    def sockmapd(
        self,
        name: str,
        url: str,
        *,
        level: str = "warning",
        cache: Mapping[str, float] | None = None,
        workers: int = 1,
    ) -> Server:
        """Start sockmapd on url."""
        port = free_port()
        config = sockmapd_config(
            self.workdir / f"{name}.toml", port, url, level=level, cache=cache, workers=workers
        )
        return Server(name, sockmapd_argv(config), port, self.workdir / f"{name}.log")

    # -- measuring -----------------------------------------------------------

    def wanted(self, scenario: str) -> bool:
        """Return True if scenario is to be run."""
        return self.opts.only is None or any(part in scenario for part in self.opts.only)

    def measure(
        self,
        sides: Sequence[Side],
        db_connections: Callable[[], int] | None = None,
        connections: Sequence[int] | None = None,
    ) -> None:
        """Run the generator at every connection count (or those given) against each side.

        A pair is (reference, sockmapd): both servers run at once, and at every count
        their runs alternate in time (A, B, A, B, ...; sockmapd first at every other
        count), so that drift of the machine moves both alike. Run i of sockmapd divided
        by run i of the reference gives the paired ratios, kept in sockmapd's point.
        A side that fails is reported in its own entry; the other goes on alone.
        """
        sides = [side for side in sides if self.wanted(side.scenario)]
        entries: dict[str, dict[str, Any]] = {}
        for side in sides:
            entries[side.scenario] = {"title": side.title, "points": []}
            self.results["scenarios"][side.scenario] = entries[side.scenario]
            log(f"{side.scenario}: {side.title}")

        servers: dict[str, Server] = {}

        def failed(side: Side, exc: BaseException) -> None:
            entries[side.scenario]["error"] = str(exc)[-1500:]
            log(f"{side.scenario}: FAILED: {exc}")
            servers.pop(side.scenario, None)

        with contextlib.ExitStack() as stack:
            for side in sides:
                try:
                    server = stack.enter_context(running(side.start()))
                    if side.prewarm:
                        warm = asyncio.run(pipeline(server.port, side.prewarm, 4))
                        entries[side.scenario]["prewarm"] = warm
                    servers[side.scenario] = server
                except MEASURE_ERRORS as exc:
                    failed(side, exc)
            for index, count in enumerate(connections or self.opts.connections):
                order = sides if index % 2 == 0 else sides[::-1]
                runs: dict[str, list[dict[str, Any]]] = {side.scenario: [] for side in sides}
                opened = dict.fromkeys(runs, 0)
                for _ in range(self.opts.repeat):
                    for side in order:
                        if side.scenario not in servers:
                            continue
                        server = servers[side.scenario]
                        try:
                            before = db_connections() if db_connections else 0
                            runs[side.scenario].append(
                                run_loadgen(
                                    server.port, count, self.opts, self.procs[count], server.pid
                                )
                            )
                            if db_connections:
                                opened[side.scenario] += db_connections() - before
                        except MEASURE_ERRORS as exc:
                            failed(side, exc)
                measured: dict[str, dict[str, Any]] = {}
                for side in sides:
                    if side.scenario not in servers:
                        continue
                    point = median_point(runs[side.scenario])
                    if db_connections:
                        # New database connections during this side's runs: pool churn
                        # shows here.
                        point["db_connections_opened"] = opened[side.scenario]
                    measured[side.scenario] = point
                    entries[side.scenario]["points"].append(point)
                    log(point_line(side.scenario, point))
                pair = [measured[side.scenario] for side in sides if side.scenario in measured]
                if len(pair) == 2 and pair_up(*pair):
                    log(
                        f"{sides[1].scenario} / {sides[0].scenario} c={count}: paired runs "
                        + ", ".join(f"{r:.2f}" for r in pair[1]["paired_ratios"])
                    )

    def skip(self, scenario: str, title: str, reason: str) -> None:
        """Record a scenario that could not run."""
        if self.wanted(scenario):
            self.results["scenarios"][scenario] = {"title": title, "points": [], "skipped": reason}
            log(f"{scenario}: skipped: {reason}")

    def calibrate(self) -> None:
        """Choose the generator processes per connection count, driving the floor with 1 and 2."""
        runs: list[dict[str, Any]] = []
        if self.opts.gen_procs != "auto":
            self.procs = {c: int(self.opts.gen_procs) for c in self.opts.connections}
        else:
            with running(self.floor()) as server:
                for connections in self.opts.connections:
                    if connections == 1:
                        self.procs[connections] = 1
                        continue
                    rates: dict[int, float] = {}
                    for procs in (1, 2):
                        point = run_loadgen(server.port, connections, self.opts, procs, server.pid)
                        rates[procs] = point["rps"]
                        runs.append(
                            {
                                "procs": procs,
                                "connections": connections,
                                "rps": point["rps"],
                                "generator_cpu_share": point["generator"]["cpu_share"],
                                "server_cpu_share": point["server_cpu_share"],
                            }
                        )
                        log(
                            f"calibration: {procs} generator process(es), c={connections}: "
                            f"{point['rps']:.0f} req/s, "
                            f"generator CPU {point['generator']['cpu_share']:.2f} "
                            f"cores, floor CPU {point['server_cpu_share']:.2f} cores"
                        )
                    # A second process only pays if it brings clearly more: the two
                    # cores are shared with the server under test.
                    self.procs[connections] = 2 if rates[2] > 1.1 * rates[1] else 1
        self.results["generator"] = {
            "procs": {str(c): n for c, n in self.procs.items()},
            "calibration": runs,
        }
        log(f"generator processes by connection count: {self.procs}")

    def cache_settings(self, url: str, cache: Mapping[str, float]) -> str | None:
        """Return None if this sockmapd accepts the cache options, else why not."""
        probe = sockmapd_config(self.workdir / "probe.toml", 1, url, cache=cache)
        return check_config(probe)

    # -- scenarios -----------------------------------------------------------

    def run(self) -> None:
        """Run every scenario; databases are created first and dropped at the end."""
        sqlite = make_sqlite(self.workdir / "bench.sqlite3")
        servers: dict[str, Backend] = {}
        for kind, url in (("mariadb", self.opts.mysql_url), ("postgresql", self.opts.pg_url)):
            uses = (f"sockmapd-{kind}", f"ceiling-{kind}", *(["overload"] * (kind == "mariadb")))
            if not any(self.wanted(s) for s in uses):
                continue
            try:
                servers[kind] = create_server_backend(kind, url)
            except Exception as exc:
                self.results["notes"].append(f"{kind}: cannot set up the database: {exc}")
                log(f"{kind}: cannot set up the database: {exc}")
        try:
            self.calibrate()
            floor = Side("floor", "floor: constant-reply server (dict lookup)", self.floor)
            cache = {"cache_ttl": 300, "negative_cache_ttl": 300}
            hits_title = "sockmapd, cache hits (SQLite behind, every key cached)"
            refused = self.cache_settings(sqlite.sockmapd_url, cache)
            if refused is None:
                every_key = [found_key(i) for i in range(1000)] + [
                    missing_key(i) for i in range(1000)
                ]
                hits = Side(
                    "sockmapd-hits",
                    hits_title,
                    lambda: self.sockmapd("sockmapd-hits", sqlite.sockmapd_url, cache=cache),
                    prewarm=every_key,
                )
                self.measure([floor, hits])
            else:
                self.measure([floor])
                self.skip(
                    "sockmapd-hits", hits_title, f"sockmapd refuses the cache options: {refused}"
                )
            for backend in (sqlite, servers.get("mariadb"), servers.get("postgresql")):
                if backend is None:
                    continue
                counter = None
                if backend.name != "sqlite":
                    admin = self.opts.mysql_url if backend.name == "mariadb" else self.opts.pg_url
                    counter = partial(connections_opened, backend.name, admin)
                ceiling = Side(
                    f"ceiling-{backend.name}",
                    f"ceiling: minimal server on the raw driver, {backend.name}",
                    partial(self.ceiling, backend),
                )
                mine = Side(
                    f"sockmapd-{backend.name}",
                    f"sockmapd, cache off, {backend.name}",
                    partial(self.sockmapd, f"sockmapd-{backend.name}", backend.sockmapd_url),
                )
                self.measure([ceiling, mine], db_connections=counter)
            self.measure_workers(
                [b for b in (sqlite, servers.get("mariadb"), servers.get("postgresql")) if b],
                cache if refused is None else None,
            )
            if servers.get("mariadb") is not None and self.wanted("overload"):
                self.overload(servers["mariadb"])
            self.measure(
                [
                    Side(
                        "sockmapd-sqlite-info",
                        "sockmapd, cache off, sqlite, log level info (one line per request)",
                        lambda: self.sockmapd(
                            "sockmapd-sqlite-info", sqlite.sockmapd_url, level="info"
                        ),
                    )
                ]
            )
            if self.opts.extras:
                if any(w > 1 for w in self.opts.workers):
                    self.worker_spread(sqlite)
                self.memory_idle(sqlite)
                self.memory_cached()
                self.startup(sqlite, servers.get("postgresql"))
            if self.opts.profile:
                self.profile(sqlite)
        finally:
            for kind in servers:
                url = self.opts.mysql_url if kind == "mariadb" else self.opts.pg_url
                try:
                    drop_server_backend(kind, url)
                except Exception as exc:
                    log(f"{kind}: cannot drop the database: {exc}")
        self.results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.results["load_average_at_end"] = os.getloadavg()[0]

    def overload(self, mariadb: Backend) -> None:
        """Far more lookups than MariaDB can serve within query_timeout (bench.overload)."""
        log(
            f"overload: {overload.OVERLOAD_CONNECTIONS} connections, {overload.POOL} database "
            "connections, a slow query"
        )
        port = free_port()
        config = overload.overload_config(
            self.workdir / "overload.toml", port, mariadb.sockmapd_url
        )
        try:
            server = Server("overload", sockmapd_argv(config), port, self.workdir / "overload.log")
            with running(server):
                runs = [
                    run_loadgen(port, overload.OVERLOAD_CONNECTIONS, self.opts, 1, server.pid)
                    for _ in range(self.opts.repeat)
                ]
            result = overload.summarise(runs)
            answers = result["median"]["answers"]
            log(
                f"overload: median p99 {answers['p99_ms']:.1f} ms, p50 {answers['p50_ms']:.1f} "
                f"ms, shares {answers['shares']}, stuck {result['stuck']}"
            )
        except (RuntimeError, OSError, subprocess.TimeoutExpired, TimeoutError) as exc:
            result = {"error": str(exc)[-1500:]}
            log(f"overload: FAILED: {exc}")
        self.results["overload"] = result

    def measure_workers(
        self, backends: Sequence[Backend], cache: Mapping[str, float] | None
    ) -> None:
        """Cache hits and each database with the cache off, with each --workers count above 1.

        Only at the reference connection count: the point is the scaling with cores,
        compared with the one-process scenarios measured at the same count.
        """
        measured = self.opts.connections
        at = [
            report.REFERENCE_CONNECTIONS
            if report.REFERENCE_CONNECTIONS in measured
            else max(measured)
        ]
        for workers in (w for w in self.opts.workers if w > 1):
            sqlite = backends[0]
            if cache is not None:
                every_key = [found_key(i) for i in range(1000)] + [
                    missing_key(i) for i in range(1000)
                ]
                name = f"sockmapd-hits-workers{workers}"
                self.measure(
                    [
                        Side(
                            name,
                            f"sockmapd, cache hits, {workers} worker processes",
                            partial(
                                self.sockmapd,
                                name,
                                sqlite.sockmapd_url,
                                cache=cache,
                                workers=workers,
                            ),
                            prewarm=every_key,
                        )
                    ],
                    connections=at,
                )
            for backend in backends:
                name = f"sockmapd-{backend.name}-workers{workers}"
                self.measure(
                    [
                        Side(
                            name,
                            f"sockmapd, cache off, {backend.name}, {workers} worker processes",
                            partial(self.sockmapd, name, backend.sockmapd_url, workers=workers),
                            # One answered request: the workers accept once the listener is bound.
                            prewarm=[found_key(1)],
                        )
                    ],
                    connections=at,
                )

    def worker_spread(self, sqlite: Backend) -> None:
        """How evenly two workers share SPREAD_SHORT short and SPREAD_LONG long connections.

        Which worker accepted a connection is read from /proc: the server side of
        each accepted connection is a socket inode that one worker holds.
        """
        log("workers: spread of connections over 2 worker processes")
        entry: dict[str, Any] = {"workers": 2}
        self.results["worker_spread"] = entry
        try:
            name = "sockmapd-spread"
            with running(self.sockmapd(name, sqlite.sockmapd_url, workers=2)) as server:
                ask(server.port, found_key(1))
                pids = children_of(server.pid)
                short = dict.fromkeys(pids, 0)
                for i in range(SPREAD_SHORT):
                    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                        sock.sendall(netstring(f"{MAP_NAME} {found_key(i % 1000)}".encode()))
                        read_reply(sock, bytearray())
                        pid = serving_pid(sock, pids)
                        if pid is not None:
                            short[pid] += 1
                socks: list[socket.socket] = []
                try:
                    for i in range(SPREAD_LONG):
                        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                        socks.append(sock)
                        sock.sendall(netstring(f"{MAP_NAME} {found_key(i % 1000)}".encode()))
                        read_reply(sock, bytearray())
                    held = dict.fromkeys(pids, 0)
                    for sock in socks:
                        pid = serving_pid(sock, pids)
                        if pid is not None:
                            held[pid] += 1
                finally:
                    for sock in socks:
                        sock.close()
            for label, counts in (("short", short), ("long", held)):
                values = sorted(counts.values())
                entry[label] = {
                    "connections": SPREAD_SHORT if label == "short" else SPREAD_LONG,
                    "per_worker": values,
                    "busiest_to_quietest": values[-1] / values[0] if values[0] else None,
                }
            log(f"workers spread: {entry}")
        except (RuntimeError, OSError, EOFError) as exc:
            entry["error"] = str(exc)[-1500:]
            log(f"workers spread: FAILED: {exc}")

    def memory_idle(self, sqlite: Backend) -> None:
        """RSS of sockmapd before and with IDLE_CONNECTIONS idle connections."""
        log(f"memory: sockmapd with {IDLE_CONNECTIONS} idle connections")
        entry: dict[str, Any] = {"connections": IDLE_CONNECTIONS}
        self.results["memory_idle"] = entry
        socks: list[socket.socket] = []
        try:
            with running(self.sockmapd("sockmapd-idle", sqlite.sockmapd_url)) as server:
                ask(server.port, found_key(1))
                entry["rss_mb_start"] = rss_bytes(server.pid) / 2**20
                for i in range(IDLE_CONNECTIONS):
                    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                    socks.append(sock)
                    # One answered request each: every connection is accepted and served.
                    sock.sendall(netstring(f"{MAP_NAME} {found_key(i % 1000)}".encode()))
                for i, sock in enumerate(socks):
                    if read_reply(sock, bytearray()) != expected(found_key(i % 1000)):
                        entry["wrong"] = entry.get("wrong", 0) + 1
                time.sleep(1.0)
                entry["rss_mb"] = rss_bytes(server.pid) / 2**20
                entry["per_connection_kb"] = (
                    (entry["rss_mb"] - entry["rss_mb_start"]) * 1024 / IDLE_CONNECTIONS
                )
                log(f"memory: {entry}")
        except (RuntimeError, OSError, EOFError) as exc:
            entry["error"] = str(exc)[-1500:]
            log(f"memory idle: FAILED: {exc}")
        finally:
            for sock in socks:
                sock.close()

    def memory_cached(self) -> None:
        """RSS of sockmapd as its cache fills up to each of --cached-entries distinct answers."""
        checkpoints = self.opts.cached_entries
        most = checkpoints[-1]
        cache = {"cache_ttl": 3600, "negative_cache_ttl": 3600, "cache_size": 2 * most}
        big = make_sqlite(self.workdir / "bench-big.sqlite3", most)
        refused = self.cache_settings(big.sockmapd_url, cache)
        entry: dict[str, Any] = {"entries": most, "checkpoints": []}
        self.results["memory_cached"] = entry
        if refused is not None:
            entry["skipped"] = f"sockmapd refuses the cache options: {refused}"
            log(f"memory cached: skipped: {refused}")
            return
        log(f"memory: sockmapd with up to {most} cached answers")
        try:
            with running(self.sockmapd("sockmapd-cached", big.sockmapd_url, cache=cache)) as server:
                ask(server.port, found_key(0))
                entry["rss_mb_start"] = rss_bytes(server.pid) / 2**20
                warm = {"answered": 0, "wrong": 0}
                started = time.perf_counter()
                filled = 0
                for count in checkpoints:
                    keys = [found_key(i) for i in range(filled, count)]
                    got = asyncio.run(pipeline(server.port, keys, 10))
                    warm = {k: warm[k] + got[k] for k in warm}
                    filled = count
                    rss = rss_bytes(server.pid) / 2**20
                    entry["checkpoints"].append(
                        {
                            "entries": count,
                            "rss_mb": rss,
                            "per_entry_bytes": (rss - entry["rss_mb_start"]) * 2**20 / count,
                        }
                    )
                entry["warm"] = warm
                entry["warm_seconds"] = time.perf_counter() - started
                last = entry["checkpoints"][-1]
                entry["rss_mb"] = last["rss_mb"]
                entry["per_entry_bytes"] = last["per_entry_bytes"]
                # Asked again, every key must now come from the cache: time a second pass.
                keys = [found_key(i) for i in range(most)]
                started = time.perf_counter()
                entry["second_pass"] = asyncio.run(pipeline(server.port, keys, 10))
                entry["second_pass_seconds"] = time.perf_counter() - started
                log(f"memory: {entry}")
        except (RuntimeError, OSError, EOFError, TimeoutError) as exc:
            entry["error"] = str(exc)[-1500:]
            log(f"memory cached: FAILED: {exc}")

    def startup(self, sqlite: Backend, postgresql: Backend | None) -> None:
        """Time from process start to the first OK answer."""
        entry: dict[str, Any] = {}
        self.results["startup"] = entry
        for backend in (sqlite, postgresql):
            if backend is None:
                continue
            times: list[float] = []
            for run in range(STARTUP_RUNS):
                port = free_port()
                config = sockmapd_config(
                    self.workdir / f"startup-{backend.name}.toml", port, backend.sockmapd_url
                )
                server = Server(
                    f"startup-{backend.name}",
                    sockmapd_argv(config),
                    port,
                    self.workdir / f"startup-{backend.name}-{run}.log",
                )
                try:
                    times.append(first_answer(server))
                except RuntimeError as exc:
                    entry[f"{backend.name}_error"] = str(exc)[-1500:]
                    break
                finally:
                    server.stop()
            if times:
                entry[backend.name] = {"runs_s": times, "median_s": statistics.median(times)}
                log(f"startup {backend.name}: {times}")

    def profile(self, sqlite: Backend) -> None:
        """Sample sockmapd (cache off, SQLite, 10 connections) with py-spy; summarise."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            self.results["profile"] = {"skipped": "py-spy is not installed"}
            return
        log("profile: py-spy on sockmapd, cache off, SQLite, 10 connections")
        raw = self.workdir / "profile.txt"
        entry: dict[str, Any] = {"connections": 10, "seconds": PROFILE_SECONDS}
        self.results["profile"] = entry
        opts = Options(**{**self.opts.__dict__, "duration": PROFILE_SECONDS, "warmup": 1.0})
        try:
            with running(self.sockmapd("sockmapd-profile", sqlite.sockmapd_url)) as server:
                spy = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        str(int(PROFILE_SECONDS + 1)),
                        "--rate",
                        "100",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--threads",
                        "--output",
                        str(raw),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                point = run_loadgen(server.port, 10, opts, 1, server.pid)
                spy.wait(60)
                entry["rps_while_sampled"] = point["rps"]
            entry.update(summarise_profile(raw.read_text()))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            entry["error"] = str(exc)[-1500:]
            log(f"profile: FAILED: {exc}")


def children_of(pid: int) -> list[int]:
    """Return the pids of the children of pid (Linux)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def serving_pid(client: socket.socket, pids: Sequence[int]) -> int | None:
    """Return which of pids holds the server side of the client's TCP connection."""
    local = client.getsockname()
    wanted = f"{local[1]:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        # The server side: its remote end is the client's local port, established.
        if fields[2].rsplit(":", 1)[1] == wanted and fields[3] == "01":
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


def first_answer(server: Server) -> float:
    """Return seconds from the server's process start to its first OK answer."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.tail()}")
        try:
            reply = ask(server.port, found_key(1), timeout=2.0)
        except (OSError, EOFError):
            time.sleep(0.005)
            continue
        if reply.startswith(b"OK "):
            return time.perf_counter() - server.started
        time.sleep(0.005)
    raise RuntimeError(f"{server.name}: no OK answer within {START_TIMEOUT}s")


# Where a sampled stack's time goes: the innermost frame of these files names the layer.
LAYERS = (
    ("sockmapd/server", "sockmapd server (connection, framing)"),
    ("sockmapd/protocol", "sockmapd protocol (netstring, parsing)"),
    ("sockmapd/lookup", "sockmapd lookup (map, answer)"),
    ("sockmapd/backends", "sockmapd backends"),
    ("sqlalchemy", "SQLAlchemy (pool, engine, dialect)"),
    ("aiosqlite", "aiosqlite (hand-off to its thread)"),
    ("threading", "threads (start, hand-off)"),
    ("anyio", "anyio"),
    ("logging", "logging"),
    ("asyncio/runners", "event loop itself (uvloop, in C: I/O and callbacks)"),
    ("asyncio", "asyncio (Python parts)"),
)


def summarise_profile(raw: str) -> dict[str, Any]:
    """Summarise py-spy's raw (collapsed) stacks.

    The event-loop thread is where sockmapd can only use one core: its samples are
    split by layer and by function. The other threads are counted by name, and their
    distinct ids tell how many were started during the sample (aiosqlite runs one
    thread per database connection).
    """
    own: dict[str, int] = {}
    layers: dict[str, int] = {}
    by_name: dict[str, int] = {}
    ids: dict[str, set[str]] = {}
    main = 0
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        head = frames[0]
        name = head.split("): ", 1)[1] if "): " in head else head
        # "Thread-7 (_connection_worker_thread)" and its kin are one kind of thread.
        kind = name.split(" (", 1)[1].rstrip(")") if " (" in name else name
        by_name[kind] = by_name.get(kind, 0) + count
        ids.setdefault(kind, set()).add(head.split(")", 1)[0])
        if kind != "MainThread":
            continue
        main += count
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        layer = "other"
        for frame in reversed(frames[1:]):
            named = next((label for part, label in LAYERS if part in frame), None)
            if named is not None:
                layer = named
                break
        layers[layer] = layers.get(layer, 0) + count
    top = sorted(own.items(), key=lambda kv: -kv[1])[:12]
    return {
        "samples": total,
        "main_samples": main,
        "threads": {
            kind: {"samples": n, "distinct_threads": len(ids[kind])}
            for kind, n in sorted(by_name.items(), key=lambda kv: -kv[1])
        },
        "layers": dict(sorted(layers.items(), key=lambda kv: -kv[1])),
        "top_self": [{"frame": frame, "samples": n} for frame, n in top],
    }


def machine() -> dict[str, Any]:
    """Describe the machine and the interpreter."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib import metadata

    try:
        loop = f"uvloop {metadata.version('uvloop')}"
    except metadata.PackageNotFoundError:
        loop = "asyncio (uvloop not installed)"
    versions: dict[str, str] = {}

    for dist in ("sockmapd", "SQLAlchemy", "anyio", "aiosqlite", "asyncpg", "asyncmy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "event_loop": loop,
        "packages": versions,
    }


def raise_fd_limit() -> None:
    """Lift the open-files limit to its hard maximum (1000 idle connections need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None) -> Options:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--connections", default="1,10,100", help="comma-separated counts")
    parser.add_argument(
        "--gen-procs", default="auto", help="generator processes: auto (measured), 1 or 2"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "SOCKMAPD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL database to connect to while creating the benchmark's own",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SOCKMAPD_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        help="a MariaDB/MySQL server to create the benchmark's own database on",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "performance.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument(
        "--only", default=None, help="comma-separated parts of scenario names to run"
    )
    parser.add_argument("--no-extras", action="store_true", help="skip memory and start-up")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated server.workers counts; each above 1 adds cache hits and "
        "SQLite cache off at the reference connection count",
    )
    parser.add_argument(
        "--cached-entries",
        default="100000,1000000",
        help="comma-separated counts of cached answers at which the memory check reads RSS",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of every point; the point reported is the run with the median req/s",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=ROOT / "bench" / "baselines" / "76d8fb4.json",
        help="an earlier profile to show next to this one ('none' for none)",
    )
    args = parser.parse_args(argv)
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=[int(c) for c in args.connections.split(",") if c.strip()],
        gen_procs=args.gen_procs,
        pg_url=args.pg_url,
        mysql_url=args.mysql_url,
        json_path=args.json,
        md_path=args.markdown,
        only=args.only.split(",") if args.only else None,
        extras=not args.no_extras,
        profile=not args.no_profile,
        keep_logs=args.keep_logs,
        cached_entries=sorted(int(n) for n in args.cached_entries.split(",") if n.strip()),
        workers=[int(w) for w in args.workers.split(",") if w.strip()],
        baseline=None if str(args.baseline) == "none" else args.baseline,
        repeat=max(1, args.repeat),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the JSON results and the Markdown report."""
    opts = parse_args(argv)
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="sockmapd-bench-"))
    bench = Bench(opts, workdir)
    try:
        bench.run()
    finally:
        if opts.keep_logs:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    opts.json_path.write_text(json.dumps(bench.results, indent=1) + "\n")
    opts.md_path.write_text(report.render(bench.results))
    log(f"wrote {opts.json_path} and {opts.md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
