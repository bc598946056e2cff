"""Run the server: bind, accept, reload on SIGHUP, reopen the log on SIGUSR1, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry

from sockmapd.backends import Database, Databases, DatabaseSetupError, create_databases
from sockmapd.backends.health import HealthCheck
from sockmapd.config import Config, ConfigError, ServerConfig, load_config
from sockmapd.logs import configure_logging, reopen_log_file
from sockmapd.lookup import Router, build_router
from sockmapd.lookup.query import failures
from sockmapd.metrics import ListenerMetrics, Metrics
from sockmapd.server import systemd, workerlink
from sockmapd.server.access import AccessList
from sockmapd.server.connection import SocketmapProtocol
from sockmapd.server.http import MetricsServer, health_document
from sockmapd.server.listeners import (
    BoundListener,
    accept_socket_in_slot,
)
from sockmapd.server.startup import StartupError, start_listening
from sockmapd.text import counted

log = logging.getLogger(__name__)

# After each accept, take up to this many more connections that are already
# waiting: one accept per event-loop turn starves new clients when the loop is
# busy answering (measured: 500 clients connecting at once to a busy server,
# the last waited 4 s for their first answer).
ACCEPT_BATCH = 64
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
# Settings a reload cannot apply: the sockets are bound and root is gone.
RESTART_ONLY = (
    "listen",
    "run_as_user",
    "run_as_group",
    "allow_root",
    "workers",
    "unix_mode",
    "unix_owner",
    "unix_group",
)
# After max_connections was reached, it is logged again only once the number of
# connections has fallen below this share of it: once per burst, not per client.
FULL_RELOG_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class Generation:
    """Everything built from one loaded config; swapped whole on reload."""

    config: Config
    databases: Databases
    router: Router
    access: AccessList


def build_generation(
    config: Config, metrics: Metrics | None = None, previous: Generation | None = None
) -> Generation:
    """Create the databases and prepared maps for config (no connection is opened).

    Databases whose settings did not change since previous are carried over with
    their open connections.
    """
    databases = create_databases(
        config.databases, previous.databases if previous is not None else None
    )
    access = AccessList(config.server.allowed_networks())
    recorders = None if metrics is None else metrics.database
    return Generation(config, databases, build_router(config, databases, recorders), access)


class Daemon:
    """The running server; connections read the current generation per request.

    Given sockets, it is a worker: it serves those already-bound listening sockets
    and leaves binding, privileges and the metrics listener to its supervisor; given
    a metrics_link too, it records metrics and answers the metrics process on it.
    on_ready is called once it accepts connections.
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        fallback_port: int | None = None,
        sockets: Sequence[socket.socket] | None = None,
        on_ready: Callable[[], None] | None = None,
        metrics_link: socket.socket | None = None,
    ) -> None:
        self._initial = config
        self._config_path = config_path
        self._fallback_port = fallback_port
        self._sockets = sockets
        self._on_ready = on_ready
        self._metrics_link = metrics_link
        self._generation: Generation | None = None
        # The maps currently served (the generation's router): a plain attribute,
        # since every request reads it; replaced with the generation.
        self.router = Router({})
        # Databases a reload replaced, closed once no lookup can still use them.
        self._retiring: set[Database] = set()
        # Connections by their slot; the slot is given back when one closes.
        self._connections: dict[SocketmapProtocol, object] = {}
        self._all_closed: anyio.Event | None = None
        self._stopping = False
        self._accept_scope: anyio.CancelScope | None = None
        self._tasks: TaskGroup | None = None
        self._slots = anyio.CapacityLimiter(config.server.max_connections)
        self._full_logged = False
        # Bound at start only: metrics.listen is a restart-only setting.
        recording = (
            config.metrics.listen is not None if sockets is None else metrics_link is not None
        )
        self._metrics = Metrics() if recording else None
        self._health = HealthCheck(self._databases)

    @property
    def settings(self) -> ServerConfig:
        """Return the server settings currently in force."""
        assert self._generation is not None
        return self._generation.config.server

    @property
    def access(self) -> AccessList:
        """Return the networks allowed to connect over TCP."""
        assert self._generation is not None
        return self._generation.access

    @property
    def stopping(self) -> bool:
        """Return True once shutdown has begun."""
        return self._stopping

    @property
    def metrics(self) -> Metrics | None:
        """Return the metrics to record into, or None when metrics are off."""
        return self._metrics

    def _state(self) -> tuple[Router, Databases]:
        assert self._generation is not None
        return self._generation.router, self._generation.databases

    async def _scrape(self) -> CollectorRegistry:
        assert self._metrics is not None
        return self._metrics.registry

    async def _checked(self) -> tuple[bool, dict[str, Any]]:
        assert self._metrics is not None
        report = await self._health.check()
        self._metrics.probed(report)
        return health_document(report)

    def _databases(self) -> Databases:
        assert self._generation is not None
        return self._generation.databases

    def _use(self, generation: Generation) -> None:
        """Serve generation from now on: its maps, its databases, its settings."""
        self._generation = generation
        self.router = generation.router

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; raise StartupError if it cannot start."""
        try:
            self._use(build_generation(self._initial, self._metrics))
        except DatabaseSetupError as exc:
            raise StartupError(str(exc)) from exc
        if self._metrics is not None:
            self._metrics.serve(self.router)
            self._metrics.watch(self._state)
        try:
            # Signals are taken over before anything listens: a SIGHUP sent as soon
            # as the socket answers must reload, not kill with the default action.
            # Signals that arrive before the handler runs wait in the receiver.
            with anyio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
                if self._sockets is not None:
                    # A worker is forked with these signals blocked, so that one
                    # forwarded during its start waits instead of killing it.
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
                listeners, metrics_listeners = await start_listening(
                    self._initial, self._config_path, self._sockets
                )
                async with anyio.create_task_group() as tasks:
                    self._tasks = tasks
                    tasks.start_soon(self._handle_signals, signals)
                    if self._metrics is not None and self._metrics_link is not None:
                        tasks.start_soon(
                            workerlink.answer, self._metrics_link, self._metrics, self._health.check
                        )
                    elif self._metrics is not None:
                        server = MetricsServer(self._scrape, self._checked)
                        tasks.start_soon(server.serve, metrics_listeners)
                    await self._serve(listeners)
                    tasks.cancel_scope.cancel()
        finally:
            # Failures counted since their last line are summarised before exit.
            failures.flush()
            await self._databases().dispose()
            for database in list(self._retiring):
                await database.dispose()
        log.info("stopped")
        if threading.active_count() > 1:
            # A SQLite query runs in a driver thread that cannot be cancelled, and
            # the event loop and the interpreter would both wait for it at exit,
            # however long it takes. The grace period is over and every listener
            # and database is closed: leave now.
            logging.shutdown()
            os._exit(0)

    def stop(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish."""
        if self._stopping:
            return
        self._stopping = True
        systemd.notify("STOPPING=1")
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for connection in list(self._connections):
            connection.stop()

    async def reload(self) -> bool:
        """Load the config file again and swap it in; on any error keep serving the old one."""
        if self._config_path is None:
            log.warning("reload requested, but the config was not read from a file")
            return False
        assert self._generation is not None
        systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            return self._swap(self._config_path)
        finally:
            systemd.notify("READY=1")

    def _swap(self, path: Path) -> bool:
        assert self._generation is not None
        old = self._generation
        try:
            config = load_config(path, fallback_port=self._fallback_port)
            new = build_generation(config, self._metrics, old)
        except (ConfigError, DatabaseSetupError) as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            self._count_reload(None, old)
            return False
        except Exception:
            log.exception("reload failed, still serving the previous configuration")
            self._count_reload(None, old)
            return False
        self._count_reload(new, old)
        self._use(new)
        self._slots.total_tokens = config.server.max_connections
        try:
            configure_logging(config.log)
        except OSError as exc:
            log.error("cannot open the new log target, logging stays as it was: %s", exc)
        restart_needed = [
            f"server.{name}"
            for name in RESTART_ONLY
            if getattr(config.server, name) != getattr(old.config.server, name)
        ]
        if config.metrics != old.config.metrics:
            restart_needed.append("metrics.listen")
        if restart_needed:
            log.warning(
                "changed %s: restart sockmapd to apply (still as before)",
                ", ".join(restart_needed),
            )
        log.info("reloaded %s: %s", path, counted(len(config.maps), "map"))
        self._retire(old.databases.replaced_by(new.databases), old.config.server.request_timeout)
        return True

    def _count_reload(self, new: Generation | None, old: Generation) -> None:
        """Count a reload (new is None if it failed) and prepare the new maps' recorders."""
        if self._metrics is None:
            return
        self._metrics.reloaded(new is not None)
        if new is not None:
            self._metrics.serve(new.router)
            self._metrics.retire(old.router)

    def _retire(self, replaced: list[Database], request_timeout: float) -> None:
        """Close the idle connections of replaced databases now, the rest once unused."""
        for database in replaced:
            # However many reloads come, a replaced pool keeps no idle connection:
            # only lookups still in flight on the old maps hold one.
            database.pool.drain()
            self._retiring.add(database)
        if replaced and self._tasks is not None:
            self._tasks.start_soon(self._dispose_later, replaced, request_timeout)

    async def _dispose_later(self, replaced: list[Database], request_timeout: float) -> None:
        # Requests that started on the old maps finish within request_timeout;
        # after that nothing can still use the replaced databases.
        await anyio.sleep(request_timeout + 1.0)
        for database in replaced:
            self._retiring.discard(database)
            await database.dispose()

    async def _handle_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading")
                await self.reload()
            elif signum == signal.SIGUSR1:
                if reopen_log_file():
                    log.info("SIGUSR1: reopened the log file")
                else:
                    log.info("SIGUSR1: no log file to reopen")
            elif signum == signal.SIGUSR2:
                cleared = self.router.clear_caches()
                log.info("SIGUSR2: cleared %d cached answers", cleared)
            else:
                log.info("%s: shutting down", signal.Signals(signum).name)
                self.stop()

    async def _serve(self, listeners: list[BoundListener]) -> None:
        try:
            async with anyio.create_task_group() as accepting:
                self._accept_scope = accepting.cancel_scope
                if self._stopping:
                    accepting.cancel_scope.cancel()
                for bound in listeners:
                    counters = (
                        None
                        if self._metrics is None
                        else self._metrics.listener(str(bound.address))
                    )
                    accepting.start_soon(self._accept_loop, bound, counters)
                log.info(
                    "listening on %s; maps: %s",
                    ", ".join(str(b.address) for b in listeners),
                    ", ".join(self.router.map_names) or "(none)",
                )
                systemd.notify("READY=1")
                if self._on_ready is not None:
                    self._on_ready()
        finally:
            with anyio.CancelScope(shield=True):
                for bound in listeners:
                    await bound.aclose()
        # Requests in flight get the grace period; the rest are cut off.
        with anyio.move_on_after(self.settings.shutdown_grace):
            while self._connections:
                self._all_closed = anyio.Event()
                await self._all_closed.wait()
        for connection in list(self._connections):
            connection.abort()
        # Let the cancelled lookups unwind before the databases are disposed of.
        await anyio.lowlevel.checkpoint()

    async def _accept_loop(self, bound: BoundListener, counters: ListenerMetrics | None) -> None:
        while True:
            slot = object()
            if self._slots.available_tokens < 1 and not self._full_logged:
                self._full_logged = True
                log.warning(
                    "max_connections=%d reached: new clients wait in the listen backlog",
                    self._slots.total_tokens,
                )
            sock = await accept_socket_in_slot(bound, self._slots, slot)
            if sock is None:
                return
            await self._start(sock, slot, counters)
            await self._accept_waiting(bound, counters)

    async def _accept_waiting(self, bound: BoundListener, counters: ListenerMetrics | None) -> None:
        """Accept the connections already waiting on bound, without waiting, while slots last."""
        raw = bound.socket
        for _ in range(ACCEPT_BATCH):
            if self._slots.available_tokens < 1:
                return
            try:
                sock, _ = raw.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors and the like: the accept loop retries.
                log.error("accept on %s failed: %s", bound.address, exc)
                return
            slot = object()
            self._slots.acquire_on_behalf_of_nowait(slot)
            await self._start(sock, slot, counters)

    async def _start(
        self, sock: socket.socket, slot: object, counters: ListenerMetrics | None
    ) -> None:
        """Serve an accepted socket; the protocol checks server.allow; closed() frees the slot."""
        sock.setblocking(False)
        made: list[SocketmapProtocol] = []

        def factory() -> SocketmapProtocol:
            connection = SocketmapProtocol(self, counters)
            self._connections[connection] = slot
            made.append(connection)
            return connection

        try:
            await asyncio.get_running_loop().connect_accepted_socket(factory, sock)
        except OSError as exc:
            # The client left between accept and now.
            log.debug("accepted connection lost at once: %s", exc)
            sock.close()
            if made:
                self.closed(made[0])
            else:
                self._release(slot)

    def closed(self, connection: SocketmapProtocol) -> None:
        """Give back the slot of a connection that is over."""
        slot = self._connections.pop(connection, None)
        if slot is not None:
            self._release(slot)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    def _release(self, slot: object) -> None:
        self._slots.release_on_behalf_of(slot)
        if self._full_logged and (
            self._slots.borrowed_tokens < self._slots.total_tokens * FULL_RELOG_SHARE
        ):
            self._full_logged = False
