"""Run the server: bind, accept, reload on SIGHUP, stop on SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from sockmapd.backends import DatabaseSetupError, Engines, create_engines
from sockmapd.config import Config, ConfigError, ServerConfig, load_config
from sockmapd.logs import configure_logging
from sockmapd.lookup import Router, build_router
from sockmapd.server.connection import Connection
from sockmapd.server.listeners import (
    BoundListener,
    ListenError,
    describe_peer,
    open_listeners,
)
from sockmapd.server.privileges import PrivilegeError, drop_privileges

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10.0
ACCEPT_ERROR_PAUSE = 0.1


class StartupError(Exception):
    """The server could not start: nothing is listening."""


@dataclass(frozen=True, slots=True)
class Generation:
    """Everything built from one loaded config; swapped whole on reload."""

    config: Config
    engines: Engines
    router: Router


def build_generation(config: Config) -> Generation:
    """Create the engines and prepared maps for config (no connection is opened)."""
    engines = create_engines(config.databases)
    return Generation(config, engines, build_router(config, engines))


class Daemon:
    """The running server; connections read the current generation per request."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        fallback_port: int | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._initial = config
        self._config_path = config_path
        self._fallback_port = fallback_port
        self._on_ready = on_ready
        self._generation: Generation | None = None
        self._connections: set[Connection] = set()
        self._stopping = False
        self._accept_scope: anyio.CancelScope | None = None
        self._tasks: TaskGroup | None = None

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
    def stopping(self) -> bool:
        """Return True once shutdown has begun."""
        return self._stopping

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; raise StartupError if it cannot start."""
        try:
            self._generation = build_generation(self._initial)
        except DatabaseSetupError as exc:
            raise StartupError(str(exc)) from exc
        server = self._initial.server
        try:
            listeners = await open_listeners(server.listen_addresses())
        except ListenError as exc:
            await self._generation.engines.dispose()
            raise StartupError(str(exc)) from exc
        try:
            drop_privileges(server.run_as_user, server.run_as_group)
        except PrivilegeError as exc:
            for bound in listeners:
                await bound.aclose()
            await self._generation.engines.dispose()
            raise StartupError(str(exc)) from exc
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._handle_signals)
                await self._serve(listeners)
                tasks.cancel_scope.cancel()
        finally:
            await self._generation.engines.dispose()
        log.info("stopped")

    def stop(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish."""
        if self._stopping:
            return
        self._stopping = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for connection in list(self._connections):
            connection.close_if_idle()

    async def reload(self) -> bool:
        """Load the config file again and swap it in; on any error keep serving the old one."""
        if self._config_path is None:
            log.warning("reload requested, but the config was not read from a file")
            return False
        assert self._generation is not None
        old = self._generation
        try:
            config = load_config(self._config_path, fallback_port=self._fallback_port)
            new = build_generation(config)
        except (ConfigError, DatabaseSetupError) as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            return False
        except Exception:
            log.exception("reload failed, still serving the previous configuration")
            return False
        self._generation = new
        configure_logging(config.log)
        if config.server.listen != old.config.server.listen:
            log.warning(
                "listen addresses changed (%s -> %s): restart sockmapd to apply them",
                ", ".join(old.config.server.listen),
                ", ".join(config.server.listen),
            )
        if config.server.run_as_user != old.config.server.run_as_user or (
            config.server.run_as_group != old.config.server.run_as_group
        ):
            log.warning("run_as_user/run_as_group changed: restart sockmapd to apply them")
        log.info("reloaded %s: %d maps", self._config_path, len(config.maps))
        if self._tasks is not None:
            self._tasks.start_soon(self._retire, old)
        return True

    async def _retire(self, old: Generation) -> None:
        # Requests that started on the old maps finish within request_timeout;
        # after that nothing can still use its engines.
        await anyio.sleep(old.config.server.request_timeout + 1.0)
        await old.engines.dispose()

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(
            signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT
        ) as signals:
            async for signum in signals:
                if signum in (signal.SIGHUP, signal.SIGUSR1):
                    log.info("%s: reloading", signal.Signals(signum).name)
                    await self.reload()
                else:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    self.stop()

    async def _serve(self, listeners: list[BoundListener]) -> None:
        async with anyio.create_task_group() as connections:
            try:
                async with anyio.create_task_group() as accepting:
                    self._accept_scope = accepting.cancel_scope
                    if self._stopping:
                        accepting.cancel_scope.cancel()
                    for bound in listeners:
                        accepting.start_soon(self._accept_loop, bound, connections)
                    log.info(
                        "listening on %s; maps: %s",
                        ", ".join(str(b.address) for b in listeners),
                        ", ".join(self.router.map_names) or "(none)",
                    )
                    if self._on_ready is not None:
                        self._on_ready()
            finally:
                with anyio.CancelScope(shield=True):
                    for bound in listeners:
                        await bound.aclose()
            # Requests in flight get the grace period; the rest is cancelled.
            connections.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_GRACE

    async def _accept_loop(self, bound: BoundListener, connections: TaskGroup) -> None:
        while True:
            try:
                stream = await bound.listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                # Out of file descriptors and the like: wait a little instead of
                # spinning, and keep the listener.
                log.error("accept on %s failed: %s", bound.address, exc)
                await anyio.sleep(ACCEPT_ERROR_PAUSE)
                continue
            connection = Connection(stream, describe_peer(stream), self)
            connections.start_soon(self._run_connection, connection)

    async def _run_connection(self, connection: Connection) -> None:
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
