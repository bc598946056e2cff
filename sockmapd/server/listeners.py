"""Open the configured TCP and unix listeners."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Sequence
from typing import cast

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from sockmapd.config import TcpAddress, UnixAddress

log = logging.getLogger(__name__)


class ListenError(Exception):
    """A configured address could not be bound."""


class BoundListener:
    """One listening socket and the address it was configured as."""

    __slots__ = ("address", "listener")

    def __init__(self, address: TcpAddress | UnixAddress, listener: SocketListener) -> None:
        self.address = address
        self.listener = listener

    async def aclose(self) -> None:
        """Close the socket and remove a unix socket file this listener created."""
        await self.listener.aclose()
        if isinstance(self.address, UnixAddress):
            try:
                os.unlink(self.address.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove %s: %s", self.address.path, exc)


async def open_listeners(addresses: Sequence[TcpAddress | UnixAddress]) -> list[BoundListener]:
    """Bind every address, or close what was bound and raise ListenError."""
    bound: list[BoundListener] = []
    try:
        for address in addresses:
            bound.extend(await _open(address))
    except BaseException:
        for listener in bound:
            await listener.aclose()
        raise
    return bound


async def _open(address: TcpAddress | UnixAddress) -> list[BoundListener]:
    if isinstance(address, UnixAddress):
        _remove_stale_socket(address.path)
        try:
            listener = await anyio.create_unix_listener(address.path)
        except OSError as exc:
            raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        return [BoundListener(address, listener)]
    try:
        multi = await anyio.create_tcp_listener(local_host=address.host, local_port=address.port)
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    # A host name may resolve to several addresses; each gets its own socket.
    return [BoundListener(address, cast(SocketListener, one)) for one in multi.listeners]


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


def describe_peer(stream: SocketStream) -> str:
    """Return the client address as text, for logs."""
    remote = stream.extra(SocketAttribute.remote_address, None)
    if isinstance(remote, tuple):
        host, port = remote[0], remote[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    local = stream.extra(SocketAttribute.local_address, "")
    return f"unix:{local}" if local else "unix"
