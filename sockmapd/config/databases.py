"""The databases section: one database per entry, as a URL or in structured form."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StrictBool,
    ValidationInfo,
    field_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sockmapd.config.addresses import UNIX_HOST_PREFIX, parse_host_port, parse_socket_host
from sockmapd.config.base import Model, Seconds, reject_empty_path, resolve_path
from sockmapd.config.errors import SecretError
from sockmapd.config.files import UnreadableFile, check_readable, read_bounded_text

Dialect = Literal["mysql", "postgresql", "sqlite"]
HostOrder = Literal["in_order", "random"]
TargetSessionAttrs = Literal[
    "any", "read-write", "read-only", "primary", "standby", "prefer-standby"
]

# A password file holds one line; the cap keeps a wrong path from filling memory.
MAX_PASSWORD_FILE_BYTES = 65536
DEFAULT_DATABASE_PORTS: dict[Dialect, int] = {"mysql": 3306, "postgresql": 5432}

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


def _read_password_file(path: Path, what: str) -> str:
    """Return the password in path without its trailing line break; raise UnreadableFile."""
    return read_bounded_text(path, MAX_PASSWORD_FILE_BYTES, what).rstrip("\r\n")


def _check_db_host(text: str) -> str:
    if parse_socket_host(text) is None:
        parse_host_port(text)
    return text


Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
PoolSize = Annotated[int, Field(strict=True, ge=1, le=1000)]
PoolOverflow = Annotated[int, Field(strict=True, ge=0, le=1000)]
DatabaseHost = Annotated[str, AfterValidator(_check_db_host)]


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


class DatabaseConfig(Model):
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
    pgbouncer: StrictBool = False

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
            return str(resolve_path(Path(value), info))
        return value

    _non_empty_paths = field_validator(
        "password_file", "init_sql", "tls_ca_file", "tls_cert_file", "tls_key_file", mode="before"
    )(reject_empty_path)

    @field_validator("password_file")
    @classmethod
    def _readable_password_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        _check_only_password_source(info)
        path = resolve_path(value, info)
        _read_password_file(path, str(path))
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
        return resolve_path(value, info)

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
            path = resolve_path(value, info)
            check_readable(path, str(path))
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

    @field_validator("pgbouncer")
    @classmethod
    def _pgbouncer_for_postgresql(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            return value
        dialect = _database_dialect(info)
        if dialect is not None and dialect != "postgresql":
            raise ValueError("only supported for PostgreSQL databases")
        if info.data.get("target_session_attrs") not in (None, "any"):
            raise ValueError(
                "cannot be combined with target_session_attrs: behind PgBouncer each "
                "transaction may run on another server connection, so the role of one "
                "says nothing about the next; point PgBouncer at the servers to use instead"
            )
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
                return _read_password_file(
                    self.password_file, f"password_file {self.password_file}"
                )
            except UnreadableFile as exc:
                raise SecretError(str(exc)) from None
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
    return str(resolve_path(Path(database), info))
