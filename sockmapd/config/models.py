"""Validated configuration models: the single source of truth for every setting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sockmapd.config.addresses import (
    TcpAddress,
    UnixAddress,
    parse_host_port,
    parse_listen_address,
)

Dialect = Literal["mysql", "postgresql", "sqlite"]

DEFAULT_PORT = 2224
DEFAULT_LISTEN = f"tcp://127.0.0.1:{DEFAULT_PORT}"
MAX_PAYLOAD_BYTES = 10_000_000
# Postfix abandons a socketmap request after a fixed 100 s; answering later is useless.
POSTFIX_TIMEOUT = 100.0
MAX_MAP_NAME = 100
MAX_IDENTIFIER = 64

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


def _check_db_host(text: str) -> str:
    parse_host_port(text)
    return text


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
ListenAddressText = Annotated[str, AfterValidator(_normalise_listen)]
DatabaseHost = Annotated[str, AfterValidator(_check_db_host)]
DatabaseName = Annotated[str, AfterValidator(_check_database_name)]
MapName = Annotated[str, AfterValidator(_check_map_name)]


class ServerConfig(_Model):
    """Listeners, limits, timeouts and the account to run as."""

    listen: list[ListenAddressText] = Field(default=[DEFAULT_LISTEN], min_length=1)
    max_request_bytes: PayloadLimit = 100_000
    max_reply_bytes: PayloadLimit = 100_000
    idle_timeout: Seconds = 60.0
    request_timeout: Seconds = 30.0
    run_as_user: str | None = None
    run_as_group: str | None = None

    @field_validator("listen")
    @classmethod
    def _unique_listen(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for address in value:
            if address in seen:
                raise ValueError(f"duplicate listen address {address!r}")
            seen.add(address)
        return value

    @field_validator("request_timeout")
    @classmethod
    def _below_postfix_timeout(cls, value: float) -> float:
        if value >= POSTFIX_TIMEOUT:
            raise ValueError(
                f"must be less than {POSTFIX_TIMEOUT:g} seconds: Postfix gives up on a "
                f"socketmap request after {POSTFIX_TIMEOUT:g} s"
            )
        return value

    _check_accounts = field_validator("run_as_user", "run_as_group")(_check_account_name)

    def listen_addresses(self) -> list[TcpAddress | UnixAddress]:
        """Return the parsed listen addresses in configuration order."""
        return [parse_listen_address(text) for text in self.listen]


class LogConfig(_Model):
    """Log level and destination (stderr when file is None)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    file: Path | None = None

    _non_empty_file = field_validator("file", mode="before")(_reject_empty_path)

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)


def _database_form(info: ValidationInfo) -> Literal["url", "mysql", "postgresql", "sqlite"] | None:
    """Return which form a database entry uses, or None when url/driver are themselves invalid."""
    if "url" not in info.data or "driver" not in info.data:
        return None
    if info.data["url"] is not None:
        return "url"
    driver: Dialect | None = info.data["driver"]
    return driver


class DatabaseConfig(_Model):
    """One database, given either as a SQLAlchemy URL or in structured form (driver, hosts, ...)."""

    url: str | None = None
    driver: Dialect | None = Field(default=None, validate_default=True)
    hosts: list[DatabaseHost] = Field(default=[], validate_default=True)
    port: Port | None = None
    name: str | None = Field(default=None, validate_default=True)
    user: str | None = None
    password: SecretStr | None = None
    init_sql: Path | None = None

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
            raise ValueError(
                f"not allowed together with url: put the {info.field_name} into the url"
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

    _non_empty_init_sql = field_validator("init_sql", mode="before")(_reject_empty_path)

    @field_validator("init_sql")
    @classmethod
    def _init_sql_for_sqlite(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        form = _database_form(info)
        if form == "url":
            url: str = info.data["url"]
            form = _DIALECT_OF_DRIVER[make_url(url).drivername]
        if form in ("mysql", "postgresql"):
            raise ValueError("init_sql is only supported for SQLite databases")
        return _resolve(value, info)

    def sqlalchemy_url(self) -> URL:
        """Return the URL for the first host (url form: the parsed url), with password."""
        return self.sqlalchemy_urls()[0]

    def sqlalchemy_urls(self) -> list[URL]:
        """Return one URL per host in failover order (url form and sqlite: exactly one)."""
        if self.url is not None:
            return [make_url(self.url)]
        dialect = self.dialect
        if dialect == "sqlite":
            return [URL.create(ASYNC_DRIVERS[dialect], database=self.name)]
        password = None if self.password is None else self.password.get_secret_value()
        urls: list[URL] = []
        for text in self.hosts:
            host, port = parse_host_port(text)
            urls.append(
                URL.create(
                    ASYNC_DRIVERS[dialect],
                    username=self.user,
                    password=password,
                    host=host,
                    port=port if port is not None else self.port,
                    database=self.name,
                )
            )
        return urls

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


class MapConfig(_Model):
    """One socketmap: the table and columns a lookup reads."""

    # Revalidate MapConfig instances passed to Config, so that the database check runs.
    model_config = ConfigDict(revalidate_instances="always")

    database: str
    table: str
    key: str
    value: str | None = None
    reason: str | None = None

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
    def _table_identifier(cls, value: str) -> str:
        return _check_identifier(value, _TABLE_RE)

    @field_validator("key", "value", "reason")
    @classmethod
    def _column_identifier(cls, value: str | None) -> str | None:
        return None if value is None else _check_identifier(value, _COLUMN_RE)

    @property
    def schema_name(self) -> str | None:
        """Return the schema part of table, or None when table is unqualified."""
        schema, sep, _ = self.table.partition(".")
        return schema if sep else None

    @property
    def table_name(self) -> str:
        """Return table without its schema part."""
        return self.table.rpartition(".")[2]


class Config(_Model):
    """The whole daemon configuration."""

    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    databases: dict[DatabaseName, DatabaseConfig] = {}
    maps: dict[MapName, MapConfig] = {}

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
