"""Listen addresses (``tcp://HOST:PORT``, ``unix:///path``) and database host parsing."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# A port is written in plain ASCII decimal; str.isdigit() would also accept
# characters such as "²" that int() then rejects or misreads.
_PORT_RE = re.compile(r"[0-9]{1,5}")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_HOSTNAME = 253
# Linux limits sun_path to 108 bytes including the terminating NUL. Checking
# here turns a bind failure at start or reload into a config error.
_MAX_UNIX_PATH_BYTES = 107
# Marks a database host that is a Unix domain socket, as in Postfix's unix:/path notation.
UNIX_HOST_PREFIX = "unix:"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A TCP listen address; ``host`` carries no brackets, even for IPv6."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"tcp://[{self.host}]:{self.port}"
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A Unix domain socket listen address with an absolute path."""

    path: str

    def __str__(self) -> str:
        return f"unix://{self.path}"


def parse_listen_address(text: str) -> TcpAddress | UnixAddress:
    """Parse 'tcp://HOST:PORT', 'tcp://[V6]:PORT' or 'unix:///abs/path'; else raise ValueError."""
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("tcp", "unix"):
        raise ValueError(
            f"invalid listen address {text!r}: expected tcp://HOST:PORT, "
            "tcp://[IPV6]:PORT or unix:///absolute/path"
        )
    if scheme == "unix":
        return UnixAddress(
            _parse_unix_path(f"invalid listen address {text!r}", rest, "unix:///path")
        )
    return _parse_tcp(text, rest)


def parse_socket_host(text: str) -> str | None:
    """Return the socket path of a 'unix:/abs/path' database host, or None for a network host."""
    if not text.startswith(UNIX_HOST_PREFIX):
        return None
    return _parse_unix_path(f"invalid host {text!r}", text[len(UNIX_HOST_PREFIX) :], "unix:/path")


def parse_host_port(text: str) -> tuple[str, int | None]:
    """Parse a database host as 'HOST', 'HOST:PORT', '[V6]', '[V6]:PORT' or a bare IPv6 address."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid host {text!r}: missing ']' after IPv6 address")
        host = _check_ipv6(text, text[1:end])
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"invalid host {text!r}: expected ':PORT' after ']'")
        return host, _parse_port(text, rest[1:])
    if text.count(":") > 1:
        return _check_ipv6(text, text), None
    host, sep, port = text.partition(":")
    _check_host(text, host)
    if not sep:
        return host, None
    return host, _parse_port(text, port)


def _parse_unix_path(invalid: str, path: str, form: str) -> str:
    """Return path if it is usable as a socket path; invalid starts the error message."""
    if not path.startswith("/"):
        raise ValueError(f"{invalid}: the socket path must be absolute ({form})")
    if "\0" in path:
        raise ValueError(f"{invalid}: the socket path contains a NUL byte")
    if len(path.encode()) > _MAX_UNIX_PATH_BYTES:
        raise ValueError(f"{invalid}: the socket path is longer than {_MAX_UNIX_PATH_BYTES} bytes")
    return path


def _parse_tcp(text: str, rest: str) -> TcpAddress:
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"invalid listen address {text!r}: missing ']' after IPv6 address")
        host = _check_ipv6(text, rest[1:end])
        after = rest[end + 1 :]
        if not after.startswith(":"):
            raise ValueError(
                f"invalid listen address {text!r}: a port is required (tcp://[V6]:PORT)"
            )
        return TcpAddress(host, _parse_port(text, after[1:]))
    if rest.count(":") > 1:
        raise ValueError(
            f"invalid listen address {text!r}: write IPv6 addresses in brackets, "
            "e.g. tcp://[::1]:2224"
        )
    host, sep, port = rest.partition(":")
    if not sep:
        raise ValueError(f"invalid listen address {text!r}: a port is required (tcp://HOST:PORT)")
    return TcpAddress(_check_host(text, host), _parse_port(text, port))


def _parse_port(text: str, port: str) -> int:
    if not _PORT_RE.fullmatch(port):
        raise ValueError(f"invalid port in {text!r}: expected a number from 1 to 65535")
    value = int(port)
    if not 1 <= value <= 65535:
        raise ValueError(f"invalid port in {text!r}: {value} is not in the range 1 to 65535")
    return value


def _check_ipv6(text: str, host: str) -> str:
    try:
        return ipaddress.IPv6Address(host).compressed
    except ValueError:
        raise ValueError(f"invalid IPv6 address {host!r} in {text!r}") from None


def _check_host(text: str, host: str) -> str:
    """Return host (IPv4 address or DNS name, names lower-cased) or raise ValueError."""
    if not host:
        raise ValueError(f"invalid address {text!r}: the host is empty")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    # An all-digit last label is a mistyped IPv4 address (such as 10.0.0.256), not a name.
    if (
        len(host) > _MAX_HOSTNAME
        or not all(_LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(
            f"invalid host {host!r} in {text!r}: expected an IPv4 address, "
            "a bracketed IPv6 address or a DNS name"
        )
    return host.lower()
