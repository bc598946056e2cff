"""Validated configuration models: the single source of truth for every setting."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sockmapd.config.addresses import (
    UNIX_HOST_PREFIX,
    TcpAddress,
    UnixAddress,
    parse_host_port,
    parse_listen_address,
    parse_socket_host,
)
from sockmapd.config.errors import SecretError
from sockmapd.config.expansions import (
    RESULT_CODES,
    SEARCH_CODES,
    TemplateError,
    compile_query,
    parse_template,
)

Dialect = Literal["mysql", "postgresql", "sqlite"]
HostOrder = Literal["in_order", "random"]
TargetSessionAttrs = Literal[
    "any", "read-write", "read-only", "primary", "standby", "prefer-standby"
]

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
MAX_MAP_NAME = 100
MAX_IDENTIFIER = 64
# A password file holds one line; the cap keeps a wrong path from filling memory.
MAX_PASSWORD_FILE_BYTES = 65536
DEFAULT_DATABASE_PORTS: dict[Dialect, int] = {"mysql": 3306, "postgresql": 5432}

IDENTIFIER_MESSAGE = "must be a plain SQL identifier (letters, digits, underscore)"
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_COLUMN_RE = re.compile(_IDENTIFIER)
_TABLE_RE = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})?")
_DATABASE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

ASYNC_DRIVERS: dict[Dialect, str] = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "postgresql": "postgresql+asyncpg",
}
_DIALECT_OF_DRIVER: dict[str, Dialect] = {
    "sqlite+aiosqlite": "sqlite",
    "sqlite": "sqlite",
    "mysql+asyncmy": "mysql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mariadb+asyncmy": "mysql",
    "postgresql+asyncpg": "postgresql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}

# Names of the databases of the Config being validated, so that each map can
# report an undefined database at its own path (maps.<name>.database) in the
# same pass as every other error. None outside Config validation.
_defined_databases: ContextVar[frozenset[str] | None] = ContextVar(
    "_defined_databases", default=None
)

_TLS_SERVERS_ONLY = "TLS is only supported for MySQL and PostgreSQL databases"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One database server: a TCP host and port, or a Unix socket (host and port None)."""

    host: str | None
    port: int | None
    unix_socket: str | None

    def __str__(self) -> str:
        if self.unix_socket is not None:
            return f"{UNIX_HOST_PREFIX}{self.unix_socket}"
        host = f"[{self.host}]" if self.host is not None and ":" in self.host else str(self.host)
        return host if self.port is None else f"{host}:{self.port}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    if isinstance(context, dict):
        base_dir = context.get("base_dir")
        if isinstance(base_dir, Path):
            return base_dir
    return None


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base_dir = _base_dir(info)
    if base_dir is None or path.is_absolute():
        return path
    return base_dir / path


def _reject_empty_path(value: object) -> object:
    # Path("") silently means the current directory.
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    if isinstance(value, str) and "\0" in value:
        raise ValueError("must not contain a NUL byte")
    return value


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


def _check_db_host(text: str) -> str:
    if parse_socket_host(text) is None:
        parse_host_port(text)
    return text


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _check_regular_file(path: Path) -> None:
    """Raise OSError or ValueError unless path is a regular file."""
    # Opening a FIFO or a device such as /dev/zero could block or never end.
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError(f"{path} is not a regular file")


def _check_readable_file(path: Path) -> None:
    """Raise ValueError unless path is a regular file that this process can read."""
    try:
        _check_regular_file(path)
        with path.open("rb") as stream:
            stream.read(1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {_os_reason(exc)}") from None


def _read_password_file(path: Path) -> str:
    """Return the password in path without its trailing line break; raise OSError or ValueError."""
    _check_regular_file(path)
    with path.open("rb") as stream:
        raw = stream.read(MAX_PASSWORD_FILE_BYTES + 1)
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid UTF-8") from None
    return text.rstrip("\r\n")


def _check_database_name(name: str) -> str:
    if not _DATABASE_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: use 1 to 64 letters, digits, '_' or '-'")
    return name


def _check_map_name(name: str) -> str:
    if not name:
        raise ValueError("map name must not be empty")
    if len(name) > MAX_MAP_NAME:
        raise ValueError(f"map name is longer than {MAX_MAP_NAME} characters")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise ValueError(f"map name {name!r} must not contain whitespace or control characters")
    if ":" in name:
        # Postfix splits socketmap:...:NAME at the last ':', so it could never ask for this map.
        raise ValueError(f"map name {name!r} must not contain ':'")
    return name


def _check_identifier(value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} {IDENTIFIER_MESSAGE}")
    if any(len(part) > MAX_IDENTIFIER for part in value.split(".")):
        raise ValueError(f"{value!r} has a part longer than {MAX_IDENTIFIER} characters")
    return value


Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
PayloadLimit = Annotated[int, Field(strict=True, ge=1, le=MAX_PAYLOAD_BYTES)]
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
GraceSeconds = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
ConnectionLimit = Annotated[int, Field(strict=True, ge=1, le=MAX_CONNECTIONS)]
NetworkText = Annotated[str, AfterValidator(_normalise_network)]
ModeText = Annotated[str, BeforeValidator(_reject_int_mode), AfterValidator(_normalise_mode)]
PoolSize = Annotated[int, Field(strict=True, ge=1, le=1000)]
PoolOverflow = Annotated[int, Field(strict=True, ge=0, le=1000)]
# More worker processes than this only multiply database connections: a few
# cores per host is what one listener can feed.
MAX_WORKERS = 64
WorkerCount = Annotated[int, Field(strict=True, ge=1, le=MAX_WORKERS)]
ListenAddressText = Annotated[str, AfterValidator(_normalise_listen)]
DatabaseHost = Annotated[str, AfterValidator(_check_db_host)]
DatabaseName = Annotated[str, AfterValidator(_check_database_name)]
MapName = Annotated[str, AfterValidator(_check_map_name)]


_ListT = TypeVar("_ListT", bound=Sequence[str])


def _reject_duplicates(values: _ListT, what: str = "entry") -> _ListT:
    """Return values unchanged; raise ValueError naming the first repeated one."""
    seen: set[str] = set()
    for item in values:
        if item in seen:
            raise ValueError(f"duplicate {what} {item!r}")
        seen.add(item)
    return values


class ServerConfig(_Model):
    """Listeners, client access, limits, timeouts and the account to run as."""

    listen: list[ListenAddressText] = Field(default=[DEFAULT_LISTEN], min_length=1)
    allow: list[NetworkText] = list(DEFAULT_ALLOW)
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
        return _reject_duplicates(value, "listen address")

    @field_validator("allow")
    @classmethod
    def _unique_networks(cls, value: list[str]) -> list[str]:
        return _reject_duplicates(value, "network")

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


LogFormat = Literal["text", "json"]
LogTarget = Literal["stderr", "file", "syslog"]
# The standard facility names, all known to logging.handlers.SysLogHandler;
# spelled out so that the configuration reference lists them.
SyslogFacility = Literal[
    "auth",
    "authpriv",
    "cron",
    "daemon",
    "ftp",
    "kern",
    "lpr",
    "mail",
    "news",
    "syslog",
    "user",
    "uucp",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
# A key salt is a secret of a few dozen bytes; the cap keeps a wrong path from filling memory.
MIN_KEY_SALT_BYTES = 16
MAX_KEY_SALT_BYTES = 65536


def _check_syslog_address(text: str) -> str:
    if text.startswith("/"):
        if "\0" in text:
            raise ValueError("the socket path contains a NUL byte")
        return text
    problem = ValueError(
        f"{text!r} is neither an absolute socket path nor HOST:PORT (UDP), "
        'e.g. "/dev/log" or "192.0.2.10:514"'
    )
    try:
        _, port = parse_host_port(text)
    except ValueError:
        raise problem from None
    if port is None:
        raise problem
    return text


def _read_key_salt(path: Path) -> bytes:
    """Return the bytes of a key salt file; raise ValueError if it cannot serve as one."""
    try:
        _check_regular_file(path)
        with path.open("rb") as stream:
            salt = stream.read(MAX_KEY_SALT_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {_os_reason(exc)}") from None
    if len(salt) > MAX_KEY_SALT_BYTES:
        raise ValueError(f"{path} is larger than {MAX_KEY_SALT_BYTES} bytes")
    if len(salt) < MIN_KEY_SALT_BYTES:
        raise ValueError(
            f"{path} holds {len(salt)} bytes, fewer than {MIN_KEY_SALT_BYTES}: "
            "fill it with e.g. head -c 32 /dev/urandom"
        )
    return salt


SyslogAddress = Annotated[str, AfterValidator(_check_syslog_address)]


class MetricsConfig(_Model):
    """The Prometheus metrics and health listener; off unless listen is set."""

    listen: ListenAddressText | None = None

    def listen_address(self) -> TcpAddress | UnixAddress | None:
        """Return the parsed listen address, or None when metrics are off."""
        return None if self.listen is None else parse_listen_address(self.listen)


class LogConfig(_Model):
    """Log level, line format, destination and whether lookup keys are written."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: LogFormat = "text"
    # Given file alone (as every config before target existed did) means target "file".
    target: LogTarget = "stderr"
    file: Path | None = Field(default=None, validate_default=True)
    syslog_facility: SyslogFacility = "mail"
    syslog_address: SyslogAddress = "/dev/log"
    log_keys: StrictBool = True
    key_salt_file: Path | None = Field(default=None, validate_default=True)

    _key_salt: bytes | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _file_implies_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and "target" not in data and data.get("file") is not None:
            return {**data, "target": "file"}
        return data

    _non_empty_file = field_validator("file", "key_salt_file", mode="before")(_reject_empty_path)

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        target = info.data.get("target")
        if value is None:
            if target == "file":
                raise ValueError(
                    'required key is missing: target = "file" needs the path of the log '
                    'file, e.g. file = "/var/log/sockmapd/sockmapd.log"'
                )
            return None
        if target is not None and target != "file":
            raise ValueError(f'only used with target = "file", not with target = "{target}"')
        return _resolve(value, info)

    @field_validator("key_salt_file")
    @classmethod
    def _resolve_salt_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if info.data.get("log_keys", False):
            raise ValueError(
                "only used with log_keys = false: the salt is for the hashes written "
                "in place of keys"
            )
        path = _resolve(value, info)
        _read_key_salt(path)
        return path

    @model_validator(mode="after")
    def _load_key_salt(self) -> LogConfig:
        if self.key_salt_file is not None:
            # Read again, as the validated path: the validator above reported any error.
            self._key_salt = _read_key_salt(self.key_salt_file)
        return self

    def key_salt(self) -> bytes | None:
        """Return the bytes of key_salt_file as read at load, or None without one."""
        return self._key_salt


def _database_form(info: ValidationInfo) -> Literal["url", "mysql", "postgresql", "sqlite"] | None:
    """Return which form a database entry uses, or None when url/driver are themselves invalid."""
    if "url" not in info.data or "driver" not in info.data:
        return None
    if info.data["url"] is not None:
        return "url"
    driver: Dialect | None = info.data["driver"]
    return driver


def _database_dialect(info: ValidationInfo) -> Dialect | None:
    """Return the dialect of the database being validated, or None when url/driver are invalid."""
    form = _database_form(info)
    if form == "url":
        url: str = info.data["url"]
        return _DIALECT_OF_DRIVER[make_url(url).drivername]
    return form


def _url_password(info: ValidationInfo) -> str | None:
    if _database_form(info) != "url":
        return None
    url: str = info.data["url"]
    return make_url(url).password


def _check_only_password_source(info: ValidationInfo) -> None:
    """Raise ValueError unless the field being validated is the database's only password."""
    if _database_dialect(info) == "sqlite":
        raise ValueError("not used by the sqlite driver")
    for other in ("password", "password_file"):
        if other != info.field_name and info.data.get(other) is not None:
            raise ValueError(
                f"give only one of password, password_file and password_env ({other} is set too)"
            )
    if _url_password(info) is not None:
        raise ValueError(
            f"the url holds a password already: remove it from the url to use {info.field_name}"
        )


def _reject_url_parameters(url: URL, dialect: Dialect) -> None:
    """Refuse URL query parameters that the connectors would not apply.

    The connectors pass their settings to the drivers themselves, so an
    ``?ssl=require`` in the URL would be silently dropped: a connection the admin
    believes encrypted would not be.
    """
    allowed = "host" if dialect == "postgresql" else "unix_socket"
    unused = sorted(key for key in url.query if key != allowed)
    if unused:
        raise ValueError(
            f"the database URL parameter(s) {', '.join(unused)} are not supported: use the "
            "options tls, tls_ca_file, tls_cert_file, tls_key_file, tls_verify, "
            "connect_timeout and target_session_attrs instead"
        )


def _url_socket(url: URL, dialect: Dialect) -> str | None:
    """Return the Unix socket named in a server URL's query, or None; raise ValueError if bad."""
    key = "host" if dialect == "postgresql" else "unix_socket"
    value = url.query.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        hint = (
            ": give a TCP host in the url itself, or list several hosts in the structured form"
            if dialect == "postgresql"
            else ""
        )
        raise ValueError(
            f"the {key} parameter of the database URL must be one absolute Unix socket path{hint}"
        )
    return value


class DatabaseConfig(_Model):
    """One database, given either as a SQLAlchemy URL or in structured form (driver, hosts, ...)."""

    url: str | None = None
    driver: Dialect | None = Field(default=None, validate_default=True)
    hosts: list[DatabaseHost] = Field(default=[], validate_default=True)
    port: Port | None = None
    name: str | None = Field(default=None, validate_default=True)
    user: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    init_sql: Path | None = None
    tls: StrictBool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    # Validated even when absent, so that a certificate without its key is reported.
    tls_key_file: Path | None = Field(default=None, validate_default=True)
    tls_verify: StrictBool = True
    connect_timeout: Seconds = 3.0
    query_timeout: Seconds = 5.0
    # A steady pool: overflow connections are closed on return, so under a steady
    # load above pool_size every lookup would open and close one.
    pool_size: PoolSize = 10
    max_overflow: PoolOverflow = 0
    # Servers drop idle connections (MySQL's wait_timeout, firewalls): a pooled
    # connection older than this is closed instead of reused.
    pool_recycle: Seconds = 1800.0
    retry_interval: Seconds = 60.0
    host_order: HostOrder = "in_order"
    target_session_attrs: TargetSessionAttrs | None = None

    @field_validator("url")
    @classmethod
    def _normalise_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            # The parser's own message may quote the URL, password included.
            raise ValueError(
                "is not a valid database URL "
                "(expected e.g. sqlite+aiosqlite:///path/to/file.db or "
                "mysql+asyncmy://user:password@host:3306/name)"
            ) from None
        drivername = url.drivername.lower()
        dialect = _DIALECT_OF_DRIVER.get(drivername)
        if dialect is None:
            raise ValueError(
                f"unsupported database driver {url.drivername!r}: use sqlite+aiosqlite, "
                "mysql+asyncmy or postgresql+asyncpg (or sqlite, mysql, mariadb, postgresql)"
            )
        url = url.set(drivername=ASYNC_DRIVERS[dialect])
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError(f"port {url.port} in the database URL is not in the range 1 to 65535")
        if dialect == "sqlite":
            url = url.set(database=_sqlite_url_path(url, info))
        else:
            _reject_url_parameters(url, dialect)
        if dialect != "sqlite" and _url_socket(url, dialect) is None and not url.host:
            # The drivers' own fallbacks differ (asyncpg probes several socket
            # directories); endpoints() must name exactly what is used.
            socket = "host=/run/postgresql" if dialect == "postgresql" else "unix_socket=/path"
            raise ValueError(
                f"the database URL names no host: use {ASYNC_DRIVERS[dialect]}://user@HOST/name, "
                f"or ?{socket} for a Unix socket"
            )
        return url.render_as_string(hide_password=False)

    @field_validator("driver")
    @classmethod
    def _url_or_driver(cls, value: Dialect | None, info: ValidationInfo) -> Dialect | None:
        if "url" not in info.data:
            return value
        if info.data["url"] is not None and value is not None:
            raise ValueError("give either url or driver, not both")
        if info.data["url"] is None and value is None:
            raise ValueError("either url or driver is required")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts_for_form(cls, value: list[str], info: ValidationInfo) -> list[str]:
        form = _database_form(info)
        if form == "url" and value:
            raise ValueError("not allowed together with url: put the host into the url")
        if form == "sqlite" and value:
            raise ValueError("not used by the sqlite driver: give the file path as name")
        if form in ("mysql", "postgresql") and not value:
            raise ValueError(f"at least one host is required for driver {form!r}")
        return value

    @field_validator("port", "user", "password")
    @classmethod
    def _server_fields_for_form(cls, value: object, info: ValidationInfo) -> object:
        form = _database_form(info)
        if value is not None and form == "url":
            alternative = (
                " or use password_file or password_env" if info.field_name == "password" else ""
            )
            raise ValueError(
                f"not allowed together with url: put the {info.field_name} into the url"
                f"{alternative}"
            )
        if value is not None and form == "sqlite":
            raise ValueError("not used by the sqlite driver")
        if isinstance(value, str) and not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("name")
    @classmethod
    def _name_for_form(cls, value: str | None, info: ValidationInfo) -> str | None:
        form = _database_form(info)
        if value is not None and form == "url":
            raise ValueError("not allowed together with url: put the database name into the url")
        if value is not None and (not value or "\0" in value):
            raise ValueError("must be a non-empty name")
        if form == "sqlite":
            if value is None or value == ":memory:":
                raise ValueError("the sqlite driver needs the database file path as name")
            return str(_resolve(Path(value), info))
        return value

    _non_empty_paths = field_validator(
        "password_file", "init_sql", "tls_ca_file", "tls_cert_file", "tls_key_file", mode="before"
    )(_reject_empty_path)

    @field_validator("password_file")
    @classmethod
    def _readable_password_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        _check_only_password_source(info)
        path = _resolve(value, info)
        try:
            _read_password_file(path)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {_os_reason(exc)}") from None
        return path

    @field_validator("password_env")
    @classmethod
    def _password_env_is_set(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value or "=" in value or "\0" in value:
            raise ValueError("must be the name of an environment variable (non-empty, without '=')")
        _check_only_password_source(info)
        if value not in os.environ:
            raise ValueError(f"environment variable {value} is not set")
        return value

    @field_validator("init_sql")
    @classmethod
    def _init_sql_for_sqlite(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if _database_dialect(info) in ("mysql", "postgresql"):
            raise ValueError("init_sql is only supported for SQLite databases")
        return _resolve(value, info)

    @field_validator("tls")
    @classmethod
    def _tls_for_servers(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            return value
        if _database_dialect(info) == "sqlite":
            raise ValueError(_TLS_SERVERS_ONLY)
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify")
    @classmethod
    def _tls_option(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        if _database_dialect(info) == "sqlite":
            raise ValueError(_TLS_SERVERS_ONLY)
        if info.data.get("tls") is False:
            raise ValueError(f"{info.field_name} is only used with TLS: set tls = true")
        if isinstance(value, Path):
            path = _resolve(value, info)
            _check_readable_file(path)
            return path
        return value

    @field_validator("tls_key_file")
    @classmethod
    def _cert_and_key_together(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "tls_cert_file" not in info.data:
            return value
        if info.data["tls_cert_file"] is not None and value is None:
            raise ValueError("required when tls_cert_file is given: a certificate needs its key")
        if info.data["tls_cert_file"] is None and value is not None:
            raise ValueError("needs tls_cert_file: a client key is used only with its certificate")
        return value

    @field_validator("target_session_attrs")
    @classmethod
    def _target_session_attrs_for_postgresql(
        cls, value: TargetSessionAttrs | None, info: ValidationInfo
    ) -> TargetSessionAttrs | None:
        if value is None:
            return None
        dialect = _database_dialect(info)
        if dialect is not None and dialect != "postgresql":
            raise ValueError("only supported for PostgreSQL databases")
        return value

    def sqlalchemy_url(self) -> URL:
        """Return the URL of the first host (url form: the url), with an inline password only."""
        return self.sqlalchemy_urls()[0]

    def sqlalchemy_urls(self) -> list[URL]:
        """Return one URL per host in config order, with an inline password only; see secret()."""
        # A password from password_file or password_env is left to secret(), which
        # reads it at each connect, so that a rotated password needs no reload.
        if self.url is not None:
            return [make_url(self.url)]
        dialect = self.dialect
        if dialect == "sqlite":
            return [URL.create(ASYNC_DRIVERS[dialect], database=self.name)]
        password = None if self.password is None else self.password.get_secret_value()
        socket_key = "host" if dialect == "postgresql" else "unix_socket"
        urls: list[URL] = []
        for text in self.hosts:
            socket = parse_socket_host(text)
            host, port = (None, None) if socket is not None else parse_host_port(text)
            urls.append(
                URL.create(
                    ASYNC_DRIVERS[dialect],
                    username=self.user,
                    password=password,
                    host=host,
                    port=port if port is not None or socket is not None else self.port,
                    database=self.name,
                    query={} if socket is None else {socket_key: socket},
                )
            )
        return urls

    def endpoints(self) -> list[Endpoint]:
        """Return the servers to try in config order, ports resolved (sqlite: none)."""
        dialect = self.dialect
        if dialect == "sqlite":
            return []
        default_port = DEFAULT_DATABASE_PORTS[dialect]
        if self.url is not None:
            url = make_url(self.url)
            socket = _url_socket(url, dialect)
            if socket is not None:
                return [Endpoint(None, None, socket)]
            return [Endpoint(url.host, default_port if url.port is None else url.port, None)]
        endpoints: list[Endpoint] = []
        for text in self.hosts:
            socket = parse_socket_host(text)
            if socket is not None:
                endpoints.append(Endpoint(None, None, socket))
                continue
            host, port = parse_host_port(text)
            if port is None:
                port = self.port if self.port is not None else default_port
            endpoints.append(Endpoint(host, port, None))
        return endpoints

    def database_name(self) -> str | None:
        """Return the database (schema) name; for SQLite, the file path."""
        if self.url is not None:
            return make_url(self.url).database
        return self.name

    def user_name(self) -> str | None:
        """Return the user name to log in with, or None when none is configured."""
        if self.url is not None:
            return make_url(self.url).username
        return self.user

    def secret(self) -> str | None:
        """Return the password, read now from password, the url, password_file or password_env."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.url is not None:
            inline = make_url(self.url).password
            if inline is not None:
                return inline
        if self.password_file is not None:
            try:
                return _read_password_file(self.password_file)
            except OSError as exc:
                raise SecretError(
                    f"cannot read password_file {self.password_file}: {_os_reason(exc)}"
                ) from None
            except ValueError as exc:
                raise SecretError(f"cannot read password_file: {exc}") from None
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise SecretError(f"environment variable {self.password_env} is not set")
            return value
        return None

    @property
    def dialect(self) -> Dialect:
        """Return the database family: mysql (also MariaDB), postgresql or sqlite."""
        if self.url is not None:
            return _DIALECT_OF_DRIVER[make_url(self.url).drivername]
        if self.driver is None:
            raise AssertionError("validated DatabaseConfig has neither url nor driver")
        return self.driver

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Keep the password of a url out of logs and tracebacks, as SecretStr does.
        for name, value in super().__repr_args__():
            if name == "url" and isinstance(value, str):
                yield name, make_url(value).render_as_string(hide_password=True)
            else:
                yield name, value


def _sqlite_url_path(url: URL, info: ValidationInfo) -> str:
    if url.host or url.port or url.username or url.password:
        raise ValueError(
            "a SQLite URL has no host, port, user or password: "
            "use sqlite+aiosqlite:///relative/file.db or sqlite+aiosqlite:////absolute/file.db"
        )
    database = url.database
    if not database or database == ":memory:":
        # Every pooled connection would open its own empty in-memory database.
        raise ValueError("a SQLite URL must name a database file")
    if "uri" in url.query:
        # In URI mode the database is a 'file:' URI, not a file system path.
        return database
    return str(_resolve(Path(database), info))


KeyTransform = Literal["lowercase", "lowercase_domain", "strip_extension", "idna_to_ascii", "trim"]

# A map names either a table and columns or a Postfix query template.
_TABLE_FORM_FIELDS = frozenset({"table", "key", "value", "reason"})
MAX_SEARCH_ENTRIES = 10
DOMAIN_FILE_PREFIX = "file:"
# A domain file is a list of names; the cap keeps a wrong path from filling memory.
MAX_DOMAIN_FILE_BYTES = 16 * 1024 * 1024
_MAX_DOMAIN = 253
_DOMAIN_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOMAIN_FILE_SEPARATORS_RE = re.compile(r"[\s,]+")

# The fields given (not None) in the map being validated, so that each field can
# report a conflict with another at its own path in one pass. Empty outside MapConfig.
_given_map_fields: ContextVar[frozenset[str]] = ContextVar("_given_map_fields", default=frozenset())
# Domains read from the file: entries of the map being validated, keyed by entry.
_domain_files_read: ContextVar[dict[str, frozenset[str]] | None] = ContextVar(
    "_domain_files_read", default=None
)


def _given_fields(data: object) -> frozenset[str]:
    if isinstance(data, dict):
        return frozenset(str(name) for name, value in data.items() if value is not None)
    if isinstance(data, BaseModel):
        return frozenset(name for name, value in data if value is not None)
    return frozenset()


def _domain_forms(text: str) -> frozenset[str]:
    """Return a domain name lower-cased, as the only form it matches; raise ValueError if invalid.

    Postfix compares the key's domain with the list as written, so an internationalised
    name matches only in the form listed; key_transform idna_to_ascii with an xn--
    list matches both forms of a key.
    """
    name = text.lower()
    problem = ValueError(
        f"{text!r} is not a valid domain name: use labels of letters, digits and '-' "
        f"(not first or last) of at most 63 characters, {_MAX_DOMAIN} in all, "
        "without a trailing dot"
    )
    if not name or any(c.isspace() or not c.isprintable() for c in name):
        raise problem
    try:
        ascii_name = name.encode("idna").decode("ascii")
        # Decoding back rejects xn-- labels that are not valid punycode.
        ascii_name.encode("ascii").decode("idna")
    except UnicodeError:
        raise problem from None
    labels = ascii_name.split(".")
    if len(ascii_name) > _MAX_DOMAIN or not all(_DOMAIN_LABEL_RE.fullmatch(x) for x in labels):
        raise problem
    return frozenset({name})


def _read_domain_file(path: Path) -> frozenset[str]:
    """Return the domains listed in path; raise ValueError if it cannot be used."""
    try:
        _check_regular_file(path)
        with path.open("rb") as stream:
            raw = stream.read(MAX_DOMAIN_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {_os_reason(exc)}") from None
    if len(raw) > MAX_DOMAIN_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_DOMAIN_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid UTF-8") from None
    domains: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        for name in _DOMAIN_FILE_SEPARATORS_RE.split(stripped):
            if not name:
                continue
            try:
                domains |= _domain_forms(name)
            except ValueError as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None
    return frozenset(domains)


def _check_domain_entry(value: str, info: ValidationInfo) -> str:
    """Return a domain name lower-cased or file:PATH resolved; read the file into the context."""
    if not value.startswith(DOMAIN_FILE_PREFIX):
        if ":" in value:
            raise ValueError(
                f"{value!r}: type:table lookups are not supported; list the domains here "
                f"or write them to a file and give {DOMAIN_FILE_PREFIX}/path/to/file"
            )
        _domain_forms(value)
        return value.lower()
    name = value[len(DOMAIN_FILE_PREFIX) :]
    if not name.strip() or "\0" in name:
        raise ValueError(f"{value!r} must name a file: {DOMAIN_FILE_PREFIX}/path/to/file")
    path = _resolve(Path(name), info)
    entry = f"{DOMAIN_FILE_PREFIX}{path}"
    files = _domain_files_read.get()
    if files is not None:
        files[entry] = _read_domain_file(path)
    else:
        _read_domain_file(path)
    return entry


def _check_template(value: str, codes: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    try:
        parse_template(value, codes)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_search_entry(value: str) -> str:
    return _check_template(value, SEARCH_CODES)


ExpansionLimit = Annotated[int, Field(strict=True, ge=0)]
DomainEntry = Annotated[str, AfterValidator(_check_domain_entry)]
SearchEntry = Annotated[str, AfterValidator(_check_search_entry)]


class MapConfig(_Model):
    """One socketmap: a table and columns, or a Postfix query, and how keys and answers look."""

    # Revalidate MapConfig instances passed to Config, so that the database check runs.
    model_config = ConfigDict(revalidate_instances="always")

    database: str
    # Validated even when absent, so that a map with neither form is reported.
    table: str | None = Field(default=None, validate_default=True)
    key: str | None = Field(default=None, validate_default=True)
    value: str | None = None
    reason: str | None = None
    query: str | None = None
    result_format: str | None = None
    expansion_limit: ExpansionLimit = 0
    domain: list[DomainEntry] = []
    key_transform: list[KeyTransform] = []
    recipient_delimiter: str = "+"
    search: list[SearchEntry] = []
    result_columns: Literal["all", "first"] = "all"
    # Seconds; 0 turns each off. Entries per map are capped: memory stays bounded.
    cache_ttl: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 0.0
    negative_cache_ttl: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 0.0
    cache_size: Annotated[int, Field(strict=True, ge=1, le=10_000_000)] = 10000
    stale_ttl: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 0.0

    _domains: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _validate_with_context(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        files: dict[str, frozenset[str]] = {}
        given = _given_map_fields.set(_given_fields(data))
        read = _domain_files_read.set(files)
        try:
            entry = handler(data)
        finally:
            _domain_files_read.reset(read)
            _given_map_fields.reset(given)
        if isinstance(entry, MapConfig):
            domains: set[str] = set()
            for item in entry.domain:
                domains |= files[item] if item in files else _domain_forms(item)
            entry._domains = frozenset(domains)
        return entry

    @field_validator("database")
    @classmethod
    def _database_defined(cls, value: str) -> str:
        defined = _defined_databases.get()
        if defined is None or value in defined:
            return value
        if defined:
            listed = ", ".join(repr(name) for name in sorted(defined))
            raise ValueError(f"database {value!r} is not defined; defined databases: {listed}")
        raise ValueError(f"database {value!r} is not defined; no databases are defined")

    @field_validator("table")
    @classmethod
    def _table_identifier(cls, value: str | None) -> str | None:
        given = _given_map_fields.get()
        if value is None:
            if "query" in given:
                return None
            if given & _TABLE_FORM_FIELDS:
                raise ValueError("required key is missing")
            raise ValueError("required key is missing: give table and key, or query")
        return _check_identifier(value, _TABLE_RE)

    @field_validator("key")
    @classmethod
    def _key_identifier(cls, value: str | None) -> str | None:
        given = _given_map_fields.get()
        if value is None:
            if "table" in given and "query" not in given:
                raise ValueError("required key is missing")
            return None
        if "query" in given and "table" not in given:
            raise ValueError("only used with table, not with query")
        return _check_identifier(value, _COLUMN_RE)

    @field_validator("value", "reason")
    @classmethod
    def _column_identifier(cls, value: str | None) -> str | None:
        if value is None:
            return None
        given = _given_map_fields.get()
        if "query" in given and "table" not in given:
            raise ValueError("only used with table, not with query: the query's columns answer")
        return _check_identifier(value, _COLUMN_RE)

    @field_validator("query")
    @classmethod
    def _query_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "table" in _given_map_fields.get():
            raise ValueError("give either query, or table and key, not both")
        try:
            compile_query(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("result_format")
    @classmethod
    def _result_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "reason" in _given_map_fields.get():
            raise ValueError("give either result_format or reason, not both")
        return _check_template(value, RESULT_CODES)

    @field_validator("key_transform")
    @classmethod
    def _unique_transforms(cls, value: list[KeyTransform]) -> list[KeyTransform]:
        return _reject_duplicates(value, "key transform")

    @field_validator("recipient_delimiter")
    @classmethod
    def _delimiter_characters(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty: give one or more delimiter characters, e.g. '+'")
        if any(c == "@" or c.isspace() or not c.isprintable() for c in value):
            raise ValueError(
                f"{value!r} must not contain '@', whitespace or control characters: "
                "every character is a delimiter"
            )
        return value

    @field_validator("search")
    @classmethod
    def _search_entries(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_SEARCH_ENTRIES:
            raise ValueError(f"at most {MAX_SEARCH_ENTRIES} entries, not {len(value)}")
        return _reject_duplicates(value)

    @field_validator("stale_ttl")
    @classmethod
    def _stale_after_fresh(cls, value: float, info: ValidationInfo) -> float:
        if value == 0:
            return value
        # Absent when cache_ttl itself failed validation: that error is reported.
        cache_ttl = info.data.get("cache_ttl")
        if cache_ttl is None:
            return value
        if cache_ttl == 0:
            raise ValueError("needs cache_ttl > 0: only cached found answers can be served stale")
        if value < cache_ttl:
            raise ValueError(f"must be 0 or at least cache_ttl ({cache_ttl:g})")
        return value

    @property
    def is_query(self) -> bool:
        """Return True for a map given as a query template, False for table and key."""
        return self.query is not None

    @property
    def schema_name(self) -> str | None:
        """Return the schema part of table, or None when table is unqualified or absent."""
        if self.table is None:
            return None
        schema, sep, _ = self.table.partition(".")
        return schema if sep else None

    @property
    def table_name(self) -> str:
        """Return table without its schema part; only for maps given as table and key."""
        if self.table is None:
            raise AssertionError("a map given as a query has no table")
        return self.table.rpartition(".")[2]

    def domains(self) -> frozenset[str]:
        """Return the domains of the domain filter, names and file contents, in every IDNA form."""
        return self._domains


class Config(_Model):
    """The whole daemon configuration."""

    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    databases: dict[DatabaseName, DatabaseConfig] = {}
    maps: dict[MapName, MapConfig] = {}

    # Set only by from_legacy, so that the server can warn about the legacy defaults;
    # to_toml leaves it out, as a converted file is no longer legacy.
    _legacy: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _track_defined_databases(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        databases = data.databases if isinstance(data, Config) else None
        if isinstance(data, dict):
            databases = data.get("databases", {})
        names = frozenset(str(n) for n in databases) if isinstance(databases, dict) else None
        token = _defined_databases.set(names)
        try:
            return handler(data)
        finally:
            _defined_databases.reset(token)

    @field_validator("metrics")
    @classmethod
    def _metrics_listen_apart(cls, value: MetricsConfig, info: ValidationInfo) -> MetricsConfig:
        server: ServerConfig | None = info.data.get("server")
        if value.listen is not None and server is not None and value.listen in server.listen:
            raise ValueError(
                f"listen {value.listen!r} is also in server.listen: "
                "the metrics listener needs an address of its own"
            )
        if value.listen is not None and server is not None and server.workers > 1:
            # Counters live in each worker process: one listener in one of them
            # would report a fraction of the traffic as if it were all of it.
            raise ValueError(
                f"server.workers = {server.workers}: the metrics listener can only be used "
                "with one worker process; set server.workers = 1 or remove metrics.listen"
            )
        return value

    def __eq__(self, other: object) -> bool:
        # Legacy or not changes only a warning at start: a legacy file and its
        # conversion are the same configuration.
        if not isinstance(other, Config):
            return NotImplemented
        if other._legacy == self._legacy:
            return super().__eq__(other)
        same_origin = other.model_copy()
        same_origin._legacy = self._legacy
        return super().__eq__(same_origin)

    @property
    def is_legacy(self) -> bool:
        """Return True for a configuration read from the Go daemon's JSON."""
        return self._legacy
