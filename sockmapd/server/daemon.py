"""Run the server: bind, accept, reload on SIGHUP, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from sqlalchemy.engine import make_url

from sockmapd.backends import DatabaseSetupError, Engines, create_engines
from sockmapd.backends.health import HealthCheck
from sockmapd.config import Config, ConfigError, DatabaseConfig, ServerConfig, load_config
from sockmapd.logs import configure_logging
from sockmapd.lookup import Router, build_router
from sockmapd.metrics import ListenerMetrics, Metrics
from sockmapd.server import systemd
from sockmapd.server.access import AccessList
from sockmapd.server.connection import SocketmapProtocol
from sockmapd.server.http import MetricsServer
from sockmapd.server.listeners import (
    BoundListener,
    ListenError,
    UnixPermissions,
    accept_socket_in_slot,
    adopt_sockets,
    open_listeners,
)
from sockmapd.server.privileges import PrivilegeError, drop_privileges

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


class StartupError(Exception):
    """The server could not start: nothing is listening."""


@dataclass(frozen=True, slots=True)
class Generation:
    """Everything built from one loaded config; swapped whole on reload."""

    config: Config
    engines: Engines
    router: Router
    access: AccessList


def build_generation(config: Config, metrics: Metrics | None = None) -> Generation:
    """Create the engines and prepared maps for config (no connection is opened)."""
    engines = create_engines(config.databases)
    access = AccessList(config.server.allowed_networks())
    return Generation(config, engines, build_router(config, engines, metrics), access)


class Daemon:
    """The running server; connections read the current generation per request.

    Given sockets, it is a worker: it serves those already-bound listening sockets
    and leaves binding, privileges and the metrics listener to its supervisor.
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
    ) -> None:
        self._initial = config
        self._config_path = config_path
        self._fallback_port = fallback_port
        self._sockets = sockets
        self._on_ready = on_ready
        self._generation: Generation | None = None
        # Connections by their slot; the slot is given back when one closes.
        self._connections: dict[SocketmapProtocol, object] = {}
        self._all_closed: anyio.Event | None = None
        self._stopping = False
        self._accept_scope: anyio.CancelScope | None = None
        self._tasks: TaskGroup | None = None
        self._slots = anyio.CapacityLimiter(config.server.max_connections)
        self._full_logged = False
        # Bound at start only: metrics.listen is a restart-only setting.
        self._metrics = Metrics() if config.metrics.listen is not None and sockets is None else None
        self._health = HealthCheck(self._databases)

    @property
    def router(self) -> Router:
        """Return the maps currently served."""
        assert self._generation is not None
        return self._generation.router

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

    def _state(self) -> tuple[Router, Engines]:
        assert self._generation is not None
        return self._generation.router, self._generation.engines

    def _databases(self) -> tuple[Engines, dict[str, DatabaseConfig]]:
        assert self._generation is not None
        return self._generation.engines, self._generation.config.databases

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; raise StartupError if it cannot start."""
        try:
            self._generation = build_generation(self._initial, self._metrics)
        except DatabaseSetupError as exc:
            raise StartupError(str(exc)) from exc
        if self._metrics is not None:
            self._metrics.serve(self._generation.router)
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
                listeners, metrics_listeners = await self._start_listening()
                async with anyio.create_task_group() as tasks:
                    self._tasks = tasks
                    tasks.start_soon(self._handle_signals, signals)
                    if self._metrics is not None:
                        server = MetricsServer(self._metrics, self._health.check)
                        tasks.start_soon(server.serve, metrics_listeners)
                    await self._serve(listeners)
                    tasks.cancel_scope.cancel()
        finally:
            await self._generation.engines.dispose()
        log.info("stopped")
        if threading.active_count() > 1:
            # A SQLite query runs in a driver thread that cannot be cancelled, and
            # the event loop and the interpreter would both wait for it at exit,
            # however long it takes. The grace period is over and every listener
            # and engine is closed: leave now.
            logging.shutdown()
            os._exit(0)

    async def _start_listening(self) -> tuple[list[BoundListener], list[BoundListener]]:
        """Bind (or adopt) the socketmap and metrics listeners and drop privileges.

        Raise StartupError on failure, with nothing left listening.
        """
        server = self._initial.server
        if self._sockets is not None:
            return await adopt_sockets(self._sockets), []
        # The metrics listener first: once the socketmap port accepts connections,
        # /metrics and /healthz do too (a start-up probe may rely on that).
        metrics_listeners: list[BoundListener] = []
        address = self._initial.metrics.listen_address()
        if address is not None:
            try:
                metrics_listeners = await open_listeners([address])
            except ListenError as exc:
                raise StartupError(f"metrics: {exc}") from exc
        try:
            listeners = await self._listen(server)
        except (ListenError, PrivilegeError, systemd.ActivationError) as exc:
            for bound in metrics_listeners:
                await bound.aclose()
            raise StartupError(str(exc)) from exc
        try:
            drop_to_run_as(server)
        except PrivilegeError as exc:
            for bound in listeners + metrics_listeners:
                await bound.aclose()
            raise StartupError(str(exc)) from exc
        warn_about_exposure(self._initial, self._config_path)
        return listeners, metrics_listeners

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
            new = build_generation(config, self._metrics)
        except (ConfigError, DatabaseSetupError) as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            self._count_reload(None, old)
            return False
        except Exception:
            log.exception("reload failed, still serving the previous configuration")
            self._count_reload(None, old)
            return False
        self._count_reload(new, old)
        self._generation = new
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
        log.info("reloaded %s: %d maps", path, len(config.maps))
        if self._tasks is not None:
            self._tasks.start_soon(self._retire, old)
        return True

    def _count_reload(self, new: Generation | None, old: Generation) -> None:
        """Count a reload (new is None if it failed) and prepare the new maps' recorders."""
        if self._metrics is None:
            return
        self._metrics.reloaded(new is not None)
        if new is not None:
            self._metrics.serve(new.router)
            self._metrics.retire(old.router)

    async def _retire(self, old: Generation) -> None:
        # Requests that started on the old maps finish within request_timeout;
        # after that nothing can still use its engines.
        await anyio.sleep(old.config.server.request_timeout + 1.0)
        await old.engines.dispose()

    async def _listen(self, server: ServerConfig) -> list[BoundListener]:
        inherited = systemd.inherited_sockets()
        if inherited:
            listeners = await adopt_sockets(inherited)
            log.info(
                "using %d sockets passed by systemd; server.listen is not bound", len(listeners)
            )
            return listeners
        return await open_listeners(server.listen_addresses(), unix_permissions(server))

    async def _handle_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum in (signal.SIGHUP, signal.SIGUSR1):
                log.info("%s: reloading", signal.Signals(signum).name)
                await self.reload()
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
        # Let the cancelled lookups unwind before the engines are disposed of.
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


def drop_to_run_as(server: ServerConfig) -> None:
    """Switch to run_as_user and run_as_group; raise PrivilegeError, also if still root."""
    drop_privileges(server.run_as_user, server.run_as_group)
    if os.geteuid() == 0 and not server.allow_root:
        raise PrivilegeError(
            "refusing to run as root: set server.run_as_user (and run_as_group) to an "
            "unprivileged account, or allow_root = true"
        )


def warn_about_exposure(config: Config, config_path: Path | None) -> None:
    """Log a warning for a legacy allow-everyone config or a password readable by all."""
    networks = config.server.allowed_networks()
    if config.is_legacy and any(n.prefixlen == 0 for n in networks):
        log.warning(
            "this legacy JSON config accepts TCP clients from every IPv4 address, as the "
            "Go sockmapd did; convert it (sockmapd config convert) and set server.allow "
            'to the MTA hosts, e.g. allow = ["192.0.2.25/32"]'
        )
    if config_path is not None and any(_holds_password(db) for db in config.databases.values()):
        try:
            mode = config_path.stat().st_mode
        except OSError:
            return
        if mode & 0o004:
            log.warning(
                "%s holds a database password and is readable by every local user: "
                "chmod o-r it, or use password_file or password_env",
                config_path,
            )


def unix_permissions(server: ServerConfig) -> UnixPermissions:
    """Resolve unix_mode, unix_owner and unix_group; raise PrivilegeError for unknown names."""
    uid = gid = -1
    if server.unix_owner is not None:
        uid = _resolve(server.unix_owner, lambda name: pwd.getpwnam(name).pw_uid, "unix_owner")
    if server.unix_group is not None:
        gid = _resolve(server.unix_group, lambda name: grp.getgrnam(name).gr_gid, "unix_group")
    return UnixPermissions(server.unix_mode_bits(), uid, gid)


def _resolve(value: str, lookup: Callable[[str], int], field: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise PrivilegeError(f"server.{field}: no such account {value!r}") from None


def _holds_password(db: DatabaseConfig) -> bool:
    """Return True when the config file itself holds this database's password."""
    if db.password is not None:
        return True
    return db.url is not None and make_url(db.url).password is not None
