"""A small blocking socketmap client, used by ``sockmapd query``."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator

from sockmapd.config import TcpAddress, UnixAddress
from sockmapd.protocol import (
    NetstringDecoder,
    ProtocolError,
    Reply,
    ReplyError,
    encode_netstring,
    parse_reply,
)

# Postfix accepts replies up to this size by default; so does this client.
MAX_REPLY = 100_000


class ClientError(Exception):
    """The server could not be reached or sent something that is not a reply."""


def connect_address(address: TcpAddress | UnixAddress) -> TcpAddress | UnixAddress:
    """Return the address a client should dial for a listen address (wildcards become loopback)."""
    if isinstance(address, TcpAddress):
        if address.host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard, turned into loopback here
            return TcpAddress("127.0.0.1", address.port)
        if address.host == "::":
            return TcpAddress("::1", address.port)
    return address


def query(
    address: TcpAddress | UnixAddress,
    requests: Iterable[tuple[str, str]],
    *,
    timeout: float = 10.0,
) -> Iterator[Reply]:
    """Send each (map, key) request over one connection and yield the replies in order."""
    try:
        if isinstance(address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address.path)
        else:
            sock = socket.create_connection((address.host, address.port), timeout=timeout)
    except OSError as exc:
        raise ClientError(f"cannot connect to {address}: {exc.strerror or exc}") from exc
    with sock:
        decoder = NetstringDecoder(MAX_REPLY)
        for map_name, key in requests:
            payload = f"{map_name} {key}".encode()
            try:
                sock.sendall(encode_netstring(payload))
                frame = _receive_one(sock, decoder)
            except OSError as exc:
                raise ClientError(f"connection to {address} failed: {exc}") from exc
            except ProtocolError as exc:
                raise ClientError(f"invalid reply from {address}: {exc.reason}") from exc
            try:
                yield parse_reply(frame)
            except ReplyError as exc:
                raise ClientError(f"invalid reply from {address}: {exc}") from exc


def _receive_one(sock: socket.socket, decoder: NetstringDecoder) -> bytes:
    frames: list[bytes] = []
    while not frames:
        chunk = sock.recv(65536)
        if not chunk:
            raise ClientError("the server closed the connection without a reply")
        frames = decoder.feed(chunk)
    if len(frames) > 1:
        raise ClientError("the server sent more replies than requests")
    return frames[0]
