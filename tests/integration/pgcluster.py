"""A throwaway PostgreSQL primary with a streaming hot standby, for failover tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn

import pytest

from tests.integration.daemon import free_port

REQUIRED_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres", "psql")
OS_USER = "postgres"
DB_USER = "postgres"
INITDB_TIMEOUT = 120.0
PG_CTL_TIMEOUT = 30
QUERY_TIMEOUT = 30.0
STREAMING_TIMEOUT = 30.0
POLL_INTERVAL = 0.02
# A unix socket path is limited to 107 bytes on Linux; longer directories get no socket.
MAX_SOCKET_PATH = 100
PORT_ATTEMPTS = 3

ShutdownMode = Literal["smart", "fast", "immediate"]

SETTINGS = """
# Added for the sockmapd tests: small, fast and unsafe on purpose.
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockets}'
max_connections = 30
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = 128MB
# Short, so that async commits reach the standby quickly and a standby reconnects fast.
wal_writer_delay = 10ms
wal_retrieve_retry_interval = 100ms
wal_receiver_status_interval = 1s
hot_standby = on
autovacuum = off
log_line_prefix = '%m [%p] %q%a '
"""

# One initdb result per (bin dir, OS user) for the whole test process.
_templates: dict[tuple[str, tuple[int, int] | None], Path] = {}
_templates_lock = threading.Lock()

HBA = """
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


class PgClusterError(Exception):
    """An operation on a running cluster failed."""


class PgClusterUnavailable(PgClusterError):
    """This machine cannot run a temporary cluster (binaries, OS user, initdb, first start)."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def pg_binaries_available() -> str | None:
    """Return a directory holding initdb, pg_ctl, pg_basebackup, postgres and psql, or None."""
    candidates: list[Path] = []
    if env := os.environ.get("SOCKMAPD_PG_BINDIR"):
        candidates.append(Path(env))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES):
            return str(directory)
    return None


def _scratch_root() -> str | None:
    """Return /dev/shm when usable, else None for the default temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return str(shm)
    return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class PgCluster:
    """A primary and a streaming standby on free loopback ports, run as the postgres user."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.primary_port = 0
        self.standby_port = 0
        self.work_dir = self.base_dir
        self._bindir = Path()
        self._owner: tuple[int, int] | None = None
        self._own_work_dir = False
        self._env: dict[str, str] = {}

    # -- paths -------------------------------------------------------------

    @property
    def primary_dir(self) -> Path:
        """The primary's data directory."""
        return self.work_dir / "primary"

    @property
    def standby_dir(self) -> Path:
        """The standby's data directory."""
        return self.work_dir / "standby"

    @property
    def primary_log(self) -> Path:
        """The primary's server log."""
        return self.work_dir / "primary.log"

    @property
    def standby_log(self) -> Path:
        """The standby's server log."""
        return self.work_dir / "standby.log"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> PgCluster:
        """Create and start the primary, clone the standby from it and wait until it streams."""
        bindir = pg_binaries_available()
        if bindir is None:
            raise PgClusterUnavailable(
                "PostgreSQL server binaries not found "
                f"({', '.join(REQUIRED_BINARIES)} in /usr/lib/postgresql/*/bin, "
                "$SOCKMAPD_PG_BINDIR or PATH)"
            )
        self._bindir = Path(bindir)
        try:
            self._prepare_dirs()
            self._init_primary()
            self.primary_port = self._start_new(self.primary_dir, self.primary_log)
            self._clone_standby()
            self.standby_port = self._start_new(self.standby_dir, self.standby_log)
            self._wait_streaming()
            self.wait_replayed(STREAMING_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers at once, ignoring errors; copy the logs to base_dir, drop the data."""
        for data_dir in (self.standby_dir, self.primary_dir):
            self._stop_quietly(data_dir)
        if self._own_work_dir:
            # Keep the logs next to the test's other files for a post-mortem.
            for log_file in (self.primary_log, self.standby_log):
                with contextlib.suppress(OSError):
                    shutil.copyfile(log_file, self.base_dir / log_file.name)
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self._own_work_dir = False

    def stop_standby(self, mode: ShutdownMode = "fast") -> None:
        """Stop the standby; its port refuses connections afterwards."""
        self._stop(self.standby_dir, mode)

    def start_standby(self) -> None:
        """Start the standby again on its port; it reconnects to the primary by itself."""
        self._pg_ctl_start(self.standby_dir, self.standby_log, self.standby_port)

    def stop_primary(self, mode: ShutdownMode = "fast") -> None:
        """Stop the primary; the standby keeps serving reads."""
        self._stop(self.primary_dir, mode)

    def start_primary(self) -> None:
        """Start the primary again on its port."""
        self._pg_ctl_start(self.primary_dir, self.primary_log, self.primary_port)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- SQL -------------------------------------------------------------------

    def execute_primary(self, sql: str) -> None:
        """Run SQL on the primary (one -c string, one implicit transaction)."""
        self.psql(self.primary_port, sql)

    def query_primary(self, sql: str) -> str:
        """Run SQL on the primary and return psql's unaligned, tuples-only output."""
        return self.psql(self.primary_port, sql)

    def query_standby(self, sql: str) -> str:
        """Run SQL on the standby and return psql's unaligned, tuples-only output."""
        return self.psql(self.standby_port, sql)

    def psql(self, port: int, *commands: str, timeout: float = QUERY_TIMEOUT) -> str:
        """Run each command as its own psql -c on 127.0.0.1:port and return the output."""
        args = [
            str(self._bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            DB_USER,
            "-d",
            "postgres",
        ]
        for command in commands:
            args += ["-c", command]
        result = self._run(args, timeout=timeout)
        if result.returncode != 0:
            raise PgClusterError(
                f"psql on port {port} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout.strip()

    def wait_replayed(self, timeout: float = 10) -> None:
        """Wait until the standby has replayed everything the primary has committed so far."""
        # With synchronous_commit=off recent commits may still sit in WAL buffers; one synchronous
        # commit flushes them, so the write position afterwards covers every earlier commit.
        target = self.psql(
            self.primary_port,
            "SET synchronous_commit = on",
            "SELECT pg_current_xact_id() IS NOT NULL",
            "SELECT pg_current_wal_lsn()",
        ).splitlines()[-1]
        deadline = time.monotonic() + timeout
        query = f"SELECT pg_last_wal_replay_lsn(), pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
        while True:
            replayed, _, done = self.psql(self.standby_port, query).partition("|")
            if done == "t":
                return
            if time.monotonic() > deadline:
                raise PgClusterError(
                    f"standby replayed {replayed or 'nothing'}, not {target}, "
                    f"within {timeout}s\n{_tail(self.standby_log)}"
                )
            time.sleep(POLL_INTERVAL)

    # -- internals -------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        self._env.update(LC_ALL="C", PGCONNECT_TIMEOUT="5", TZ="UTC")
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PgClusterUnavailable(
                    f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL"
                ) from None
            self._owner = (entry.pw_uid, entry.pw_gid)
        # Data lives outside base_dir: pytest's temp root is private to root, so the postgres user
        # cannot reach it, and a RAM-backed dir keeps the start fast when the disk is busy.
        self.work_dir = Path(tempfile.mkdtemp(prefix="sockmapd-pg-", dir=_scratch_root()))
        self._own_work_dir = True
        self._env["HOME"] = str(self.work_dir)
        if self._owner is None:
            return
        os.chown(self.work_dir, *self._owner)
        if not self._can_write(self.work_dir):
            raise PgClusterUnavailable(f"the {OS_USER!r} OS user cannot write to {self.work_dir}")

    def _can_write(self, path: Path) -> bool:
        try:
            result = self._run(["test", "-w", str(path), "-a", "-x", str(path)], timeout=10)
        except (OSError, PgClusterError) as exc:
            raise PgClusterUnavailable(f"cannot run commands as {OS_USER!r}: {exc}") from exc
        return result.returncode == 0

    def _run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command as the server's OS user, bounded by timeout."""
        extra: dict[str, Any] = {}
        if self._owner is not None:
            extra = {"user": self._owner[0], "group": self._owner[1], "extra_groups": []}
        try:
            return subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.work_dir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                check=False,
                **extra,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(f"{Path(args[0]).name} timed out after {timeout}s") from exc

    def _init_primary(self) -> None:
        sockets = self.work_dir / "sockets"
        self._run(["mkdir", "-p", str(sockets)], timeout=10)
        sockets_setting = "" if len(str(sockets)) > MAX_SOCKET_PATH else str(sockets)
        result = self._run(
            ["cp", "-a", str(self._template()), str(self.primary_dir)], timeout=INITDB_TIMEOUT
        )
        if result.returncode != 0:
            raise PgClusterUnavailable(f"cannot copy the initdb template: {result.stderr.strip()}")
        self._append(self.primary_dir / "postgresql.conf", SETTINGS.format(sockets=sockets_setting))
        self._write(self.primary_dir / "pg_hba.conf", HBA)

    def _template(self) -> Path:
        """Return a pristine initdb data dir, made once per process and bin dir."""
        key = (str(self._bindir), self._owner)
        with _templates_lock:
            if key in _templates:
                return _templates[key]
            # initdb is most of a cluster's start time; copying its result is much cheaper.
            holder = Path(tempfile.mkdtemp(prefix="sockmapd-pg-template-", dir=_scratch_root()))
            atexit.register(shutil.rmtree, holder, ignore_errors=True)
            if self._owner is not None:
                os.chown(holder, *self._owner)
            data = holder / "data"
            result = self._run(
                [
                    str(self._bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    DB_USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    # Small segments: less to write, copy and back up than the default 16 MB.
                    "--wal-segsize=1",
                ],
                timeout=INITDB_TIMEOUT,
            )
            if result.returncode != 0:
                shutil.rmtree(holder, ignore_errors=True)
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise PgClusterUnavailable(f"initdb failed ({result.returncode}):\n{tail}")
            _templates[key] = data
            return data

    def _append(self, path: Path, text: str) -> None:
        with path.open("a") as handle:
            handle.write(text)

    def _write(self, path: Path, text: str) -> None:
        # Written by root, so ownership is handed back to the server's user.
        path.write_text(text)
        if self._owner is not None:
            os.chown(path, *self._owner)

    def _clone_standby(self) -> None:
        result = self._run(
            [
                str(self._bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary_port),
                "-U",
                DB_USER,
                "-D",
                str(self.standby_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            timeout=INITDB_TIMEOUT,
        )
        if result.returncode != 0:
            raise PgClusterError(
                f"pg_basebackup failed ({result.returncode}): {result.stderr.strip()}\n"
                f"{_tail(self.primary_log)}"
            )

    def _start_new(self, data_dir: Path, log_file: Path) -> int:
        """Start a server on a fresh port, trying another if the port was taken meanwhile."""
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            try:
                self._pg_ctl_start(data_dir, log_file, port)
            except PgClusterError:
                in_use = "could not bind" in _tail(log_file, 10)
                if in_use and attempt + 1 < PORT_ATTEMPTS:
                    continue
                if data_dir == self.primary_dir:
                    raise PgClusterUnavailable(
                        f"the primary did not start:\n{_tail(log_file)}"
                    ) from None
                raise
            return port
        raise AssertionError("unreachable")

    def _pg_ctl_start(self, data_dir: Path, log_file: Path, port: int) -> None:
        result = self._run(
            [
                str(self._bindir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(log_file),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                str(PG_CTL_TIMEOUT),
                "start",
            ],
            timeout=PG_CTL_TIMEOUT + 10,
        )
        if result.returncode != 0:
            raise PgClusterError(
                f"pg_ctl start of {data_dir.name} on port {port} failed: "
                f"{result.stderr.strip()}\n{_tail(log_file)}"
            )

    def _stop(self, data_dir: Path, mode: ShutdownMode) -> None:
        result = self._run(
            [
                str(self._bindir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(PG_CTL_TIMEOUT),
                "stop",
            ],
            timeout=PG_CTL_TIMEOUT + 10,
        )
        if result.returncode != 0:
            raise PgClusterError(f"pg_ctl stop of {data_dir.name} failed: {result.stderr.strip()}")

    def _stop_quietly(self, data_dir: Path) -> None:
        pid_file = data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        with contextlib.suppress(PgClusterError, OSError):
            self._stop(data_dir, "immediate")
        if not pid_file.exists():
            return
        # pg_ctl could not do it; SIGQUIT is what an immediate shutdown sends the postmaster.
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGQUIT)

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + STREAMING_TIMEOUT
        query = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        while self.psql(self.primary_port, query) == "0":
            if time.monotonic() > deadline:
                raise PgClusterError(
                    f"standby not streaming after {STREAMING_TIMEOUT}s\n{_tail(self.standby_log)}"
                )
            time.sleep(POLL_INTERVAL)
        if self.psql(self.standby_port, "SELECT pg_is_in_recovery()") != "t":
            raise PgClusterError("the standby is not in recovery")


__all__ = ["PgCluster", "PgClusterError", "PgClusterUnavailable", "pg_binaries_available"]


def cluster_unavailable(reason: str) -> NoReturn:
    """Fail when the databases are required, skip otherwise."""
    if os.environ.get("SOCKMAPD_REQUIRE_DB") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PgCluster]:
    """A running primary with a streaming standby, stopped at the end."""
    if pg_binaries_available() is None:
        cluster_unavailable("PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found")
    pg = PgCluster(tmp_path)
    try:
        pg.start()
    except PgClusterUnavailable as exc:
        cluster_unavailable(f"cannot run a temporary PostgreSQL cluster: {exc}")
    try:
        yield pg
    finally:
        pg.stop()
