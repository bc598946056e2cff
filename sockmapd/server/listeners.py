"""Open the configured TCP and unix listeners."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import anyio
from anyio import TypedAttributeProvider
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from sockmapd.config import TcpAddress, UnixAddress

log = logging.getLogger(__name__)

# After a failed accept (out of file descriptors, say), wait this long before the next.
ACCEPT_ERROR_PAUSE = 0.1

# The kernel's accept queue: while max_connections is reached, new clients wait here.
BACKLOG = 4096


class ListenError(Exception):
    """A configured address could not be bound."""


class BoundListener:
    """One listening socket and the address it was configured as."""

    __slots__ = ("address", "listener", "owned")

    def __init__(
        self, address: TcpAddress | UnixAddress, listener: SocketListener, *, owned: bool = True
    ) -> None:
        self.address = address
        self.listener = listener
        # Sockets passed in by systemd belong to systemd: never unlink them.
        self.owned = owned

    @property
    def socket(self) -> socket.socket:
        """Return the listening socket itself."""
        raw = self.listener.extra(SocketAttribute.raw_socket)
        assert isinstance(raw, socket.socket)
        return raw

    async def aclose(self) -> None:
        """Close the socket and remove a unix socket file this listener created."""
        await self.listener.aclose()
        if self.owned and isinstance(self.address, UnixAddress):
            try:
                os.unlink(self.address.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove %s: %s", self.address.path, exc)


@dataclass(frozen=True, slots=True)
class UnixPermissions:
    """Mode and ownership a unix listening socket gets at bind."""

    mode: int | None = None
    uid: int = -1
    gid: int = -1


async def open_listeners(
    addresses: Sequence[TcpAddress | UnixAddress],
    unix: UnixPermissions = UnixPermissions(),
) -> list[BoundListener]:
    """Bind every address, or close what was bound and raise ListenError."""
    bound: list[BoundListener] = []
    try:
        for address in addresses:
            bound.extend(await _open(address, unix))
    except BaseException:
        for listener in bound:
            await listener.aclose()
        raise
    return bound


def bind_worker_sockets(
    addresses: Sequence[TcpAddress | UnixAddress],
    unix: UnixPermissions,
    workers: int,
) -> tuple[list[socket.socket], list[list[socket.socket]]]:
    """Bind for worker processes: (sockets all share, each worker's own), or raise ListenError.

    For a process that binds and then forks workers, which adopt the sockets, without an
    event loop. A unix socket is bound once and shared. A TCP address is bound once per worker
    with SO_REUSEPORT, so that the kernel spreads new connections over the workers by
    a hash of their addresses, instead of waking whichever worker waits first.
    """
    shared: list[socket.socket] = []
    own: list[list[socket.socket]] = [[] for _ in range(workers)]
    try:
        for address in addresses:
            if isinstance(address, UnixAddress):
                _remove_stale_socket(address.path)
                try:
                    shared.append(_bind_unix(address.path, unix))
                except OSError as exc:
                    raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
                continue
            for sockets in own:
                sockets.extend(_bind_tcp(address, reuse_port=True))
    except BaseException:
        for sock in shared + [sock for sockets in own for sock in sockets]:
            sock.close()
        raise
    return shared, own


def _bind_tcp(address: TcpAddress, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bind one socket per address the host resolves to, as anyio's TCP listener does."""
    try:
        found = socket.getaddrinfo(
            address.host,
            address.port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
        )
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in sorted(set(found)):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    return sockets


async def adopt_sockets(sockets: Sequence[socket.socket]) -> list[BoundListener]:
    """Wrap inherited listening sockets (systemd's, or a supervisor's); never removed on exit."""
    adopted = []
    for sock in sockets:
        sock.setblocking(False)
        name = sock.getsockname()
        address: TcpAddress | UnixAddress
        if sock.family == socket.AF_UNIX:
            path = name.decode() if isinstance(name, bytes) else str(name)
            address = UnixAddress(path or "(unnamed)")
        else:
            address = TcpAddress(str(name[0]), int(name[1]))
        listener = await SocketListener.from_socket(sock)
        adopted.append(BoundListener(address, listener, owned=False))
    return adopted


async def _open(address: TcpAddress | UnixAddress, unix: UnixPermissions) -> list[BoundListener]:
    if isinstance(address, UnixAddress):
        _remove_stale_socket(address.path)
        try:
            sock = _bind_unix(address.path, unix)
        except OSError as exc:
            raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        return [BoundListener(address, await SocketListener.from_socket(sock))]
    try:
        multi = await anyio.create_tcp_listener(
            local_host=address.host, local_port=address.port, backlog=BACKLOG
        )
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    # A host name may resolve to several addresses; each gets its own socket.
    return [BoundListener(address, cast(SocketListener, one)) for one in multi.listeners]


def _bind_unix(path: str, unix: UnixPermissions) -> socket.socket:
    """Bind and listen on path with its final mode and owner, without a looser window."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The umask makes bind() create the file with the wanted mode at once; a
        # chmod after bind would leave a window with the default mode. Start-up
        # runs no other thread that creates files, so the process-wide umask is safe.
        old_umask = os.umask(0o777 & ~unix.mode) if unix.mode is not None else None
        try:
            sock.bind(path)
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if unix.uid != -1 or unix.gid != -1:
            # Until the chown the file belongs to us with the final mode: that is
            # stricter than wanted, never looser.
            os.chown(path, unix.uid, unix.gid)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file that no live server answers; refuse to steal a live one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ListenError(f"cannot listen on unix://{path}: {exc.strerror or exc}") from exc
    else:
        raise ListenError(f"cannot listen on unix://{path}: another server is answering on it")
    finally:
        probe.close()
    os.unlink(path)
    log.info("removed stale socket %s", path)


async def accept_socket_in_slot(
    bound: BoundListener, slots: anyio.CapacityLimiter, slot: object
) -> socket.socket | None:
    """Take a slot of slots for slot, then return the next connection on bound as a socket.

    The slot stays taken for the connection returned. None means the listener
    was closed (the slot is given back). Taking the slot before accept() leaves
    clients over the limit in the kernel's backlog, where they cost nothing; an
    accept that fails (out of file descriptors, say) is retried after a pause
    instead of spinning, and the listener is kept.
    """
    raw = bound.socket
    loop = asyncio.get_running_loop()
    while True:
        await slots.acquire_on_behalf_of(slot)
        try:
            if raw.fileno() < 0:
                slots.release_on_behalf_of(slot)
                return None
            sock, _ = await loop.sock_accept(raw)
        except OSError as exc:
            slots.release_on_behalf_of(slot)
            if raw.fileno() < 0:
                return None
            log.error("accept on %s failed: %s", bound.address, exc)
            await anyio.sleep(ACCEPT_ERROR_PAUSE)
            continue
        except BaseException:
            slots.release_on_behalf_of(slot)
            raise
        return sock


def describe_peer(stream: TypedAttributeProvider) -> str:
    """Return the client address as text, for logs."""
    remote = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(remote, tuple):
        host, port = remote[0], remote[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    local = stream.extra(SocketAttribute.local_address, "")
    return f"unix:{local}" if local else "unix"


async def accept_in_slot(
    bound: BoundListener, slots: anyio.CapacityLimiter, slot: object
) -> SocketStream | None:
    """Take a slot of slots for slot, then return the next connection on bound as a stream.

    For the metrics listener; see accept_socket_in_slot. The slot stays taken
    for the connection returned. None means the listener was closed (the slot
    is given back). Taking the slot before accept() leaves
    clients over the limit in the kernel's backlog, where they cost nothing; an
    accept that fails (out of file descriptors, say) is retried after a pause
    instead of spinning, and the listener is kept.
    """
    while True:
        await slots.acquire_on_behalf_of(slot)
        try:
            return await bound.listener.accept()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            slots.release_on_behalf_of(slot)
            return None
        except OSError as exc:
            slots.release_on_behalf_of(slot)
            log.error("accept on %s failed: %s", bound.address, exc)
            await anyio.sleep(ACCEPT_ERROR_PAUSE)
        except BaseException:
            slots.release_on_behalf_of(slot)
            raise
