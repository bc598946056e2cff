"""Prepare to serve: bind or adopt the listeners, drop privileges, check exposure."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from sockmapd.config import Config, DatabaseConfig, ServerConfig
from sockmapd.server import systemd
from sockmapd.server.listeners import (
    BoundListener,
    ListenError,
    UnixPermissions,
    adopt_sockets,
    open_listeners,
)
from sockmapd.server.privileges import PrivilegeError, drop_privileges
from sockmapd.text import counted

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The server could not start: nothing is listening."""


async def start_listening(
    config: Config, config_path: Path | None, sockets: Sequence[socket.socket] | None
) -> tuple[list[BoundListener], list[BoundListener]]:
    """Bind (or adopt) the socketmap and metrics listeners and drop privileges.

    Raise StartupError on failure, with nothing left listening.
    """
    server = config.server
    if sockets is not None:
        return await adopt_sockets(sockets), []
    # The metrics listener first: once the socketmap port accepts connections,
    # /metrics and /healthz do too (a start-up probe may rely on that).
    metrics_listeners: list[BoundListener] = []
    address = config.metrics.listen_address()
    if address is not None:
        try:
            metrics_listeners = await open_listeners([address])
        except ListenError as exc:
            raise StartupError(f"metrics: {exc}") from exc
    try:
        listeners = await _listen(server)
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
    warn_about_exposure(config, config_path)
    return listeners, metrics_listeners


async def _listen(server: ServerConfig) -> list[BoundListener]:
    inherited = systemd.inherited_sockets()
    if inherited:
        listeners = await adopt_sockets(inherited)
        log.info(
            "using %s passed by systemd; server.listen is not bound",
            counted(len(listeners), "socket"),
        )
        return listeners
    return await open_listeners(server.listen_addresses(), unix_permissions(server))


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
