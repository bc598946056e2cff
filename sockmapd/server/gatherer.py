"""The metrics process of a daemon with several workers: one /metrics and /healthz for all.

The supervisor forks it next to the workers and restarts it like one. It serves
the metrics listener with the same HTTP code as a single process; for each page
it asks every worker over its link (sockmapd.server.workerlink) and merges the
answers (sockmapd.metrics_merge). It holds no database and no client connection.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sockmapd.config import Config, ConfigError, load_config
from sockmapd.logs import reopen_log_file
from sockmapd.metrics_merge import MetricsMerger, merge_health
from sockmapd.server.http import MetricsServer
from sockmapd.server.listeners import adopt_sockets
from sockmapd.server.workerlink import HEALTH, METRICS, WorkerLink, gather, worker_health

log = logging.getLogger(__name__)

# How long a scrape waits for the workers: a worker renders its page in milliseconds
# unless its event loop is stuck, and Prometheus's default scrape timeout is 10 s.
SCRAPE_TIMEOUT = 5.0
# Beyond the slowest database's connect_timeout + query_timeout, for a health check.
HEALTH_MARGIN = 1.0
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


def health_timeout(config: Config) -> float:
    """Return how long /healthz waits for the workers: the slowest database's bound + 1 s."""
    return HEALTH_MARGIN + max(
        (db.connect_timeout + db.query_timeout for db in config.databases.values()),
        default=0.0,
    )


class _Families(Collector):
    """A collector of already merged families, for the exposition encoders."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class Gatherer:
    """Serves the metrics listener for every worker; links are the workers' links by slot."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        fallback_port: int | None,
        sockets: list[socket.socket],
        links: dict[str, socket.socket],
        on_ready: Callable[[], None],
    ) -> None:
        self._config_path = config_path
        self._fallback_port = fallback_port
        self._sockets = sockets
        self._links = {slot: WorkerLink(sock) for slot, sock in links.items()}
        self._on_ready = on_ready
        self._merger = MetricsMerger()
        self._health_timeout = health_timeout(config)

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; SIGHUP takes the new database timeouts."""
        with anyio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
            # Forked with these signals blocked, like a worker.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            listeners = await adopt_sockets(self._sockets)
            server = MetricsServer(self._scrape, self._health)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(server.serve, listeners)
                self._on_ready()
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        self._reload()
                    elif signum == signal.SIGUSR1:
                        reopen_log_file()
                    elif signum in (signal.SIGTERM, signal.SIGINT):
                        break
                tasks.cancel_scope.cancel()
        log.info("metrics process stopped")

    def _reload(self) -> None:
        """Take the new databases' timeouts; the supervisor checked the file already."""
        try:
            config = load_config(self._config_path, fallback_port=self._fallback_port)
        except ConfigError as exc:
            log.error("metrics process: reload failed, keeping the previous timeouts: %s", exc)
            return
        self._health_timeout = health_timeout(config)
        log.info(
            "metrics process reloaded: /healthz waits up to %gs for the workers",
            self._health_timeout,
        )

    async def _scrape(self) -> Collector:
        replies = await gather(self._links, METRICS, SCRAPE_TIMEOUT)
        expositions = {}
        for slot, reply in replies.items():
            if isinstance(reply, BaseException):
                log.warning("worker %s gave no metrics: %s", slot, reply or "timed out")
                continue
            pid, body = reply
            expositions[slot] = (pid, body.decode())
        return _Families(self._merger.merge(expositions))

    async def _health(self) -> tuple[bool, dict[str, Any]]:
        timeout = self._health_timeout
        replies = await gather(self._links, HEALTH, timeout)
        return merge_health(
            {slot: worker_health(reply, timeout) for slot, reply in replies.items()}
        )
