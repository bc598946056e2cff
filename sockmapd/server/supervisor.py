"""Run several worker processes: bind once, fork the workers, restart the dead, pass signals on.

The supervisor is the classic pre-fork parent. It binds the listeners (or takes
systemd's), drops privileges, and forks server.workers children that serve the
same listening sockets, each with its own event loop, databases and caches. It
never runs an event loop or a thread of its own, so every fork starts from a
quiet single-threaded process: a worker creates its loop (uvloop when installed)
after the fork, and inherits the sockets and the loaded config without
re-importing or re-parsing anything. With metrics.listen set it binds the metrics
listener too and forks one more process, the metrics process (sockmapd.server.gatherer),
restarted like a worker, with a socket pair to each worker slot.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from sockmapd.backends import DatabaseSetupError, create_databases
from sockmapd.config import Config, ConfigError, UnixAddress, load_config
from sockmapd.logs import configure_logging, reopen_log_file, restamp_after_fork
from sockmapd.server import systemd, workerlink
from sockmapd.server.daemon import Daemon
from sockmapd.server.gatherer import Gatherer
from sockmapd.server.listeners import ListenError, bind_sockets, bind_worker_sockets
from sockmapd.server.privileges import PrivilegeError
from sockmapd.server.startup import (
    StartupError,
    drop_to_run_as,
    unix_permissions,
    warn_about_exposure,
)
from sockmapd.text import counted

log = logging.getLogger(__name__)

# A worker that dies is started again after RESTART_BASE_DELAY, doubled for each
# death in a row up to RESTART_MAX_DELAY, so that a crash loop does not spin.
RESTART_BASE_DELAY = 0.5
RESTART_MAX_DELAY = 30.0
# A worker that ran this long before it died was healthy: its backoff starts anew.
STABLE_SECONDS = 10.0
# On stop, what a worker may take beyond shutdown_grace to close its databases and exit.
STOP_MARGIN = 5.0
# The longest the supervisor sleeps without looking at its workers.
POLL_SECONDS = 5.0
SUPERVISED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGCHLD,
)
EXIT_STARTUP = 1
EXIT_CRASHED = 70
PR_SET_PDEATHSIG = 1
# The slot of the metrics process, started and restarted like a worker.
METRICS_SLOT = 0
_PID = struct.Struct("<i")


class Action(enum.Enum):
    """What the supervisor does about a signal."""

    RELOAD = "reload"
    REOPEN_LOG = "reopen the log file"
    CLEAR_CACHES = "clear caches"
    STOP = "stop"
    REAP = "reap"


def action_for(signum: int) -> Action:
    """Return what a signal received by the supervisor means."""
    if signum == signal.SIGHUP:
        return Action.RELOAD
    if signum == signal.SIGUSR1:
        return Action.REOPEN_LOG
    if signum == signal.SIGUSR2:
        return Action.CLEAR_CACHES
    if signum in (signal.SIGTERM, signal.SIGINT):
        return Action.STOP
    if signum == signal.SIGCHLD:
        return Action.REAP
    raise ValueError(f"signal {signum} is not supervised")


def forwarded_signal(signum: int) -> int | None:
    """Return the signal passed on to every worker for signum, or None if none is."""
    action = action_for(signum)
    if action in (Action.RELOAD, Action.REOPEN_LOG):
        return signum
    if action is Action.CLEAR_CACHES:
        return signal.SIGUSR2
    if action is Action.STOP:
        # Workers stop gracefully on SIGTERM; SIGINT means the same to them.
        return signal.SIGTERM
    return None


def restart_delay(deaths_in_a_row: int) -> float:
    """Return how long to wait before starting a worker again after that many deaths."""
    if deaths_in_a_row <= 1:
        return RESTART_BASE_DELAY
    # The exponent is capped before it is used: a float power could overflow.
    return min(RESTART_MAX_DELAY, RESTART_BASE_DELAY * (1 << min(deaths_in_a_row - 1, 16)))


def deaths_after(deaths_in_a_row: int, uptime: float) -> int:
    """Return the deaths in a row after a worker that ran for uptime seconds died."""
    return 1 if uptime >= STABLE_SECONDS else deaths_in_a_row + 1


def describe_exit(status: int) -> str:
    """Return a waitpid status as words: "exited with status 3", "killed by SIGKILL"."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}"


@dataclass(slots=True)
class Worker:
    """One worker slot: the process in it now, if any, and its restart backoff."""

    slot: int
    pid: int | None = None
    started: float = 0.0
    ready: bool = False
    deaths_in_a_row: int = 0
    restart_at: float | None = None

    @property
    def name(self) -> str:
        """Return "worker N", or "the metrics process" for METRICS_SLOT."""
        return "the metrics process" if self.slot == METRICS_SLOT else f"worker {self.slot}"


class Supervisor:
    """The parent of server.workers worker processes; run() returns the exit status."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path,
        fallback_port: int | None = None,
        backend_options: dict[str, object] | None = None,
    ) -> None:
        self._config = config
        self._config_path = config_path
        self._fallback_port = fallback_port
        self._backend_options = backend_options or {}
        self._workers = [Worker(slot) for slot in range(1, config.server.workers + 1)]
        if config.metrics.listen is not None:
            self._workers.insert(0, Worker(METRICS_SLOT))
        self._sockets: list[socket.socket] = []
        self._metrics_sockets: list[socket.socket] = []
        # Each worker slot's link to the metrics process: (its end, the worker's end).
        self._links: dict[int, tuple[socket.socket, socket.socket]] = {}
        # The listeners each worker serves, by slot: the shared ones and its own.
        self._worker_sockets: dict[int, list[socket.socket]] = {}
        self._owned_paths: list[str] = []
        self._stopping = False
        self._kill_at: float | None = None
        self._announced = False
        self._start_failure: str | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = self._ready_r = self._ready_w = -1

    def run(self) -> int:
        """Bind, start the workers and supervise them until stopped; raise StartupError."""
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)
        # Taken over before anything listens, as in a single process: a SIGHUP
        # sent as soon as the socket answers must reload, not kill.
        previous = {signum: signal.signal(signum, _note) for signum in SUPERVISED_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            self._listen()
            try:
                return self._supervise()
            finally:
                self._close_listeners()
                for ours, theirs in self._links.values():
                    ours.close()
                    theirs.close()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)

    def _listen(self) -> None:
        server = self._config.server
        try:
            # As a single process does before it binds: a database that cannot be set
            # up stops the start here, and a SQLite file is created from init_sql once,
            # not raced by the workers. No connection is opened; the workers build
            # their own databases after the fork.
            create_databases(self._config.databases)
        except DatabaseSetupError as exc:
            raise StartupError(str(exc)) from exc
        try:
            inherited = systemd.inherited_sockets()
            if inherited:
                self._sockets = inherited
                log.info(
                    "using %s passed by systemd; server.listen is not bound",
                    counted(len(inherited), "socket"),
                )
            else:
                addresses = server.listen_addresses()
                shared, own = bind_worker_sockets(
                    addresses, unix_permissions(server), len(self._serving())
                )
                self._sockets = shared + [sock for sockets in own for sock in sockets]
                self._worker_sockets = {
                    worker.slot: shared + sockets
                    for worker, sockets in zip(self._serving(), own, strict=True)
                }
                self._owned_paths = [
                    address.path for address in addresses if isinstance(address, UnixAddress)
                ]
            self._listen_for_metrics()
            drop_to_run_as(server)
        except (ListenError, PrivilegeError, systemd.ActivationError) as exc:
            self._close_listeners()
            raise StartupError(str(exc)) from exc
        warn_about_exposure(self._config, self._config_path)

    def _listen_for_metrics(self) -> None:
        """Bind the metrics listener and make the workers' links, if metrics are on."""
        address = self._config.metrics.listen_address()
        if address is None:
            return
        try:
            self._metrics_sockets = bind_sockets(address)
        except ListenError as exc:
            raise ListenError(f"metrics: {exc}") from exc
        if isinstance(address, UnixAddress):
            self._owned_paths.append(address.path)
        self._links = {worker.slot: workerlink.socketpair() for worker in self._serving()}

    def _serving(self) -> list[Worker]:
        """Return the slots of the workers that serve clients (not the metrics process)."""
        return [worker for worker in self._workers if worker.slot != METRICS_SLOT]

    def _close_listeners(self) -> None:
        """Close this process's copies of the listeners; remove the unix socket files."""
        for sock in self._sockets + self._metrics_sockets:
            sock.close()
        self._sockets = []
        self._metrics_sockets = []
        for path in self._owned_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove %s: %s", path, exc)
        self._owned_paths = []

    def _supervise(self) -> int:
        for worker in self._workers:
            if not self._stopping:
                self._start(worker)
        with selectors.DefaultSelector() as selector:
            self._selector = selector
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(self._ready_r, selectors.EVENT_READ)
            while not self._stopping or self._live():
                self._reap()
                self._due()
                if self._stopping and not self._live():
                    break
                for key, _ in selector.select(self._timeout()):
                    if key.fd == self._ready_r:
                        self._read_ready()
                    else:
                        for signum in _drain(self._wake_r):
                            self._on_signal(signum)
        if self._start_failure is not None:
            raise StartupError(self._start_failure)
        log.info("all workers stopped")
        return 0

    def _live(self) -> list[Worker]:
        return [worker for worker in self._workers if worker.pid is not None]

    def _timeout(self) -> float:
        now = time.monotonic()
        moments = [w.restart_at for w in self._workers if w.restart_at is not None]
        if self._kill_at is not None:
            moments.append(self._kill_at)
        return max(0.0, min([POLL_SECONDS, *(moment - now for moment in moments)]))

    def _due(self) -> None:
        """Start the workers whose backoff is over; kill those that outlived the grace."""
        now = time.monotonic()
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            for worker in self._live():
                assert worker.pid is not None
                log.warning("%s (pid %d) did not stop in time: killing it", worker.name, worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        for worker in self._workers:
            if worker.restart_at is not None and now >= worker.restart_at:
                worker.restart_at = None
                self._start(worker)

    def _on_signal(self, signum: int) -> None:
        action = action_for(signum)
        name = signal.Signals(signum).name
        if action is Action.REAP:
            self._reap()
            return
        if action is Action.STOP:
            if not self._stopping:
                log.info("%s: stopping %s", name, counted(len(self._live()), "worker"))
                self._stop()
            return
        if self._stopping:
            return
        if action is Action.RELOAD:
            if not self._reload(name):
                return
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            self._forward(signum)
            systemd.notify("READY=1")
            return
        if action is Action.REOPEN_LOG:
            # No config check: the workers reopen their log file and nothing else.
            reopen_log_file()
        self._forward(signum)
        if action is Action.REOPEN_LOG:
            workers = counted(len(self._live()), "worker")
            log.info("%s: passed on to %s to reopen their log", name, workers)
        if action is Action.CLEAR_CACHES:
            workers = counted(len(self._live()), "worker")
            log.info("%s: passed on to %s to clear their caches", name, workers)

    def _reload(self, name: str) -> bool:
        """Check the config file; keep it for the workers started from now on."""
        log.info("%s: checking the configuration, then reloading every worker", name)
        try:
            config = load_config(self._config_path, fallback_port=self._fallback_port)
        except ConfigError as exc:
            log.error("reload failed, the workers keep the previous configuration:\n%s", exc)
            return False
        self._config = config
        try:
            configure_logging(config.log)
        except OSError as exc:
            log.error("cannot open the new log target, logging stays as it was: %s", exc)
        return True

    def _forward(self, signum: int) -> None:
        passed = forwarded_signal(signum)
        if passed is None:
            return
        for worker in self._live():
            assert worker.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, passed)

    def _stop(self) -> None:
        self._stopping = True
        systemd.notify("STOPPING=1")
        # Clients that connect now would wait in a backlog nobody accepts from.
        self._close_listeners()
        for worker in self._workers:
            worker.restart_at = None
        self._forward(signal.SIGTERM)
        self._kill_at = time.monotonic() + self._config.server.shutdown_grace + STOP_MARGIN

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self._workers if w.pid == pid), None)
            if worker is not None:
                self._died(worker, status)

    def _died(self, worker: Worker, status: int) -> None:
        assert worker.pid is not None
        how = describe_exit(status)
        pid, worker.pid = worker.pid, None
        if self._stopping:
            log.info("%s (pid %d) %s", worker.name, pid, how)
            return
        if not self._announced:
            # Like a single process that cannot start: give up instead of looping.
            self._not_started(worker, f"{worker.name} (pid {pid}) {how} before it served")
            return
        uptime = time.monotonic() - worker.started
        self._not_started(worker, f"{worker.name} (pid {pid}) {how} after {uptime:.1f} s")

    def _not_started(self, worker: Worker, what: str) -> None:
        """Schedule worker to start again after its backoff, or give up during start-up."""
        if not self._announced:
            self._start_failure = what
            log.error("%s: stopping the others", what)
            self._stop()
            return
        uptime = time.monotonic() - worker.started
        worker.deaths_in_a_row = deaths_after(worker.deaths_in_a_row, uptime)
        delay = restart_delay(worker.deaths_in_a_row)
        worker.restart_at = time.monotonic() + delay
        log.error("%s; starting it again in %.1f s", what, delay)

    def _read_ready(self) -> None:
        data = b"".join(_drain_bytes(self._ready_r))
        for (pid,) in _PID.iter_unpack(data[: len(data) - len(data) % _PID.size]):
            worker = next((w for w in self._workers if w.pid == pid), None)
            if worker is not None:
                worker.ready = True
        if not self._announced and all(w.ready for w in self._workers):
            self._announced = True
            serving = self._serving()
            log.info(
                "%d workers serving (pids %s)%s",
                len(serving),
                ", ".join(str(w.pid) for w in serving),
                "".join(
                    f"; metrics process pid {w.pid}" for w in self._workers if w not in serving
                ),
            )
            systemd.notify("READY=1")

    def _start(self, worker: Worker) -> None:
        # The forwarded signals stay blocked in the child until its daemon has
        # taken them over; the parent gets its mask back at once.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(self._be_worker(worker.slot))
        except OSError as exc:
            # A failed fork counts as a worker that died at once: the backoff grows.
            worker.started = time.monotonic()
            self._not_started(worker, f"cannot start {worker.name}: {exc}")
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        worker.pid = pid
        worker.started = time.monotonic()
        worker.ready = False
        log.info("started %s (pid %d)", worker.name, pid)

    def _be_worker(self, slot: int) -> int:
        """Serve as worker slot in the forked child; return its exit status."""
        code = EXIT_CRASHED
        try:
            code = self._serve_as_worker(slot)
        except BaseException:
            with contextlib.suppress(BaseException):
                log.exception("worker %d failed", slot)
        finally:
            with contextlib.suppress(BaseException):
                logging.shutdown()
        return code

    def _serve_as_worker(self, slot: int) -> int:
        parent = os.getppid()
        signal.set_wakeup_fd(-1)
        for signum in SUPERVISED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGCHLD,))
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.close(fd)
        if self._selector is not None:
            self._selector.close()
        # Only the supervisor speaks to systemd: it accepts messages from the main pid alone.
        os.environ.pop("NOTIFY_SOCKET", None)
        _die_with_parent(parent)
        # The log stays the one the supervisor opened (perhaps as root, before it
        # dropped privileges); a reload opens it anew in each worker.
        restamp_after_fork()
        ready_w = self._ready_w
        if slot == METRICS_SLOT:
            for sock in self._sockets:
                sock.close()
            for _, theirs in self._links.values():
                theirs.close()
            gatherer = Gatherer(
                self._config,
                self._config_path,
                self._fallback_port,
                self._metrics_sockets,
                {str(worker): ours for worker, (ours, _) in self._links.items()},
                _announcer(ready_w),
            )
            anyio.run(gatherer.run, backend_options=self._backend_options)
            return 0
        for sock in self._metrics_sockets:
            sock.close()
        link = None
        for worker, (ours, theirs) in self._links.items():
            ours.close()
            if worker == slot:
                link = theirs
            else:
                theirs.close()
        # Systemd's sockets are shared by all; bound ones are the shared ones and this
        # worker's own: the other workers' copies are closed here.
        sockets = self._worker_sockets.get(slot, self._sockets)
        for sock in self._sockets:
            if sock not in sockets:
                sock.close()
        daemon = Daemon(
            self._config,
            config_path=self._config_path,
            fallback_port=self._fallback_port,
            sockets=sockets,
            on_ready=_announcer(ready_w),
            metrics_link=link,
        )
        try:
            anyio.run(daemon.run, backend_options=self._backend_options)
        except StartupError as exc:
            log.error("worker %d cannot start: %s", slot, exc)
            return EXIT_STARTUP
        return 0


def _note(signum: int, frame: object) -> None:
    """Do nothing: the wakeup fd carries the signal number to the supervisor's loop."""


def _announcer(fd: int) -> Callable[[], None]:
    def announce() -> None:
        # Four bytes are below PIPE_BUF: workers writing at once never interleave.
        with contextlib.suppress(OSError):
            os.write(fd, _PID.pack(os.getpid()))

    return announce


def _drain_bytes(fd: int) -> list[bytes]:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return chunks


def _drain(fd: int) -> list[int]:
    """Return the signal numbers written to the wakeup fd since it was last read."""
    return [signum for chunk in _drain_bytes(fd) for signum in chunk]


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the supervisor dies (Linux), so no worker is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        # The supervisor died before prctl took effect.
        os.kill(os.getpid(), signal.SIGTERM)
