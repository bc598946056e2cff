"""The server and metrics sections: listeners, client access, limits and the account to run as."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)

from sockmapd.config.addresses import TcpAddress, UnixAddress, parse_listen_address
from sockmapd.config.base import GraceSeconds, Model, Seconds, reject_duplicates

DEFAULT_PORT = 2224
DEFAULT_LISTEN = f"tcp://127.0.0.1:{DEFAULT_PORT}"
MAX_PAYLOAD_BYTES = 10_000_000
# Postfix 3.12's socketmap_max_query_size: Postfix itself sends nothing longer.
DEFAULT_MAX_REQUEST_BYTES = 10_000
# Loopback only: any other client must be allowed explicitly.
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
MAX_CONNECTIONS = 1_000_000
# Postfix abandons a socketmap request after a fixed 100 s; answering later is useless.
POSTFIX_TIMEOUT = 100.0


def _normalise_listen(text: str) -> str:
    return str(parse_listen_address(text))


def _check_account_name(value: str | None) -> str | None:
    if value is not None and (not value or any(c.isspace() or c == "\0" for c in value)):
        raise ValueError("must be a non-empty user or group name without whitespace")
    return value


def _check_socket_account(value: str | None) -> str | None:
    if value is not None and (not value or any(c.isspace() or not c.isprintable() for c in value)):
        raise ValueError(
            "must be a non-empty user or group name or numeric id "
            "without whitespace or control characters"
        )
    return value


def _normalise_network(text: str) -> str:
    """Return an address or CIDR network as a network with its prefix, e.g. '192.0.2.1/32'."""
    problem = ValueError(
        f"{text!r} is not an IP address or network: expected e.g. 192.0.2.0/24, "
        "2001:db8::/32, 192.0.2.1 or ::1"
    )
    if "%" in text:
        # A zone index names an interface of this host; clients are matched by address only.
        raise problem
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise problem from None
    # A set host bit usually means a typo in the prefix; widening silently could allow too much.
    raise ValueError(f"{text!r} has host bits set: did you mean {network}?")


def _reject_int_mode(value: object) -> object:
    if isinstance(value, int):
        # An unquoted 660 is decimal in TOML, not the octal mode it looks like.
        raise ValueError('write the mode as a quoted octal string, e.g. "0660"')  # noqa: TRY004
    return value


def _normalise_mode(text: str) -> str:
    if not re.fullmatch(r"[0-7]{1,4}", text) or int(text, 8) > 0o777:
        raise ValueError(
            f'{text!r} is not a permission mode: expected octal digits up to 0777, e.g. "0660"'
        )
    return f"{int(text, 8):04o}"


PayloadLimit = Annotated[int, Field(strict=True, ge=1, le=MAX_PAYLOAD_BYTES)]
ConnectionLimit = Annotated[int, Field(strict=True, ge=1, le=MAX_CONNECTIONS)]
NetworkText = Annotated[str, AfterValidator(_normalise_network)]
ModeText = Annotated[str, BeforeValidator(_reject_int_mode), AfterValidator(_normalise_mode)]
# More worker processes than this only multiply database connections: a few
# cores per host is what one listener can feed.
MAX_WORKERS = 64
WorkerCount = Annotated[int, Field(strict=True, ge=1, le=MAX_WORKERS)]
ListenAddressText = Annotated[str, AfterValidator(_normalise_listen)]


class ServerConfig(Model):
    """Listeners, client access, limits, timeouts and the account to run as."""

    listen: list[ListenAddressText] = Field(default=[DEFAULT_LISTEN], min_length=1)
    allow: list[NetworkText] = list(DEFAULT_ALLOW)  # noqa: RUF012
    max_connections: ConnectionLimit = 1000
    max_request_bytes: PayloadLimit = DEFAULT_MAX_REQUEST_BYTES
    max_reply_bytes: PayloadLimit = 100_000
    idle_timeout: Seconds = 60.0
    request_timeout: Seconds = 30.0
    shutdown_grace: GraceSeconds = 10.0
    unix_mode: ModeText | None = None
    unix_owner: str | None = None
    unix_group: str | None = None
    run_as_user: str | None = None
    run_as_group: str | None = None
    allow_root: StrictBool = False
    workers: WorkerCount = 1

    @field_validator("listen")
    @classmethod
    def _unique_listen(cls, value: list[str]) -> list[str]:
        return reject_duplicates(value, "listen address")

    @field_validator("allow")
    @classmethod
    def _unique_networks(cls, value: list[str]) -> list[str]:
        return reject_duplicates(value, "network")

    @field_validator("request_timeout")
    @classmethod
    def _below_postfix_timeout(cls, value: float) -> float:
        if value >= POSTFIX_TIMEOUT:
            raise ValueError(
                f"must be less than {POSTFIX_TIMEOUT:g} seconds: Postfix gives up on a "
                f"socketmap request after {POSTFIX_TIMEOUT:g} s"
            )
        return value

    _check_socket_accounts = field_validator("unix_owner", "unix_group")(_check_socket_account)

    @field_validator("unix_mode", "unix_owner", "unix_group")
    @classmethod
    def _needs_unix_listener(cls, value: str | None, info: ValidationInfo) -> str | None:
        listen: list[str] | None = info.data.get("listen")
        # An invalid listen list is reported at its own path already.
        if value is None or listen is None:
            return value
        if not any(address.startswith("unix://") for address in listen):
            raise ValueError("applies only to unix sockets, but no unix:// listen address is given")
        return value

    _check_accounts = field_validator("run_as_user", "run_as_group")(_check_account_name)

    def listen_addresses(self) -> list[TcpAddress | UnixAddress]:
        """Return the parsed listen addresses in configuration order."""
        return [parse_listen_address(text) for text in self.listen]

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Return the networks whose TCP clients may connect; unix sockets are not checked."""
        return tuple(ipaddress.ip_network(text) for text in self.allow)

    def unix_mode_bits(self) -> int | None:
        """Return unix_mode as permission bits (0o660), or None when unset."""
        return None if self.unix_mode is None else int(self.unix_mode, 8)


class MetricsConfig(Model):
    """The Prometheus metrics and health listener; off unless listen is set."""

    listen: ListenAddressText | None = None

    def listen_address(self) -> TcpAddress | UnixAddress | None:
        """Return the parsed listen address, or None when metrics are off."""
        return None if self.listen is None else parse_listen_address(self.listen)
