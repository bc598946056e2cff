"""The configuration models: defaults, normalisation and every rejection, with its path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url

from sockmapd.config import (
    Config,
    DatabaseConfig,
    Endpoint,
    LogConfig,
    MapConfig,
    SecretError,
    ServerConfig,
    TcpAddress,
    UnixAddress,
)
from sockmapd.config.databases import MAX_PASSWORD_FILE_BYTES
from sockmapd.config.errors import format_path, problems_from_validation_error

IDENTIFIER_REASON = "must be a plain SQL identifier (letters, digits, underscore)"
SQLITE_DB = {"url": "sqlite+aiosqlite:////var/lib/sockmapd/mail.sqlite3"}


def problems(data: dict[str, Any], base_dir: Path | None = None) -> dict[str, str]:
    """Return {path: message} of every problem in data; fail if it is valid."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data, context={"base_dir": base_dir})
    return {p.path: p.message for p in problems_from_validation_error(info.value, Config)}


def only_problem(data: dict[str, Any]) -> tuple[str, str]:
    found = problems(data)
    assert len(found) == 1, found
    return next(iter(found.items()))


def with_database(database: dict[str, Any]) -> dict[str, Any]:
    return {"databases": {"db": database}}


def with_map(**fields: Any) -> dict[str, Any]:
    entry = {"database": "mail", "table": "aliases", "key": "address", **fields}
    return {"databases": {"mail": SQLITE_DB}, "maps": {"recipient": entry}}


# ---------------------------------------------------------------- defaults


def test_defaults() -> None:
    config = Config()
    assert config.server.listen == ["tcp://127.0.0.1:2224"]
    assert config.server.allow == ["127.0.0.0/8", "::1/128"]
    assert config.server.max_connections == 1000
    assert config.server.max_request_bytes == 10_000
    assert config.server.max_reply_bytes == 100_000
    assert config.server.idle_timeout == 60.0
    assert config.server.request_timeout == 30.0
    assert config.server.shutdown_grace == 10.0
    assert (config.server.unix_mode, config.server.unix_owner, config.server.unix_group) == (
        None,
        None,
        None,
    )
    assert config.server.run_as_user is None
    assert config.server.run_as_group is None
    assert config.server.allow_root is False
    assert config.is_legacy is False
    assert config.log == LogConfig(level="info", file=None)
    assert config.databases == {}
    assert config.maps == {}


def test_models_are_frozen() -> None:
    config = Config()
    with pytest.raises(ValidationError, match="frozen"):
        config.server = ServerConfig()  # type: ignore[misc]


# ---------------------------------------------------------------- server


def test_listen_is_normalised_and_parsed() -> None:
    server = ServerConfig(
        listen=["TCP://Localhost:2224", "tcp://[0:0::1]:2224", "unix:///run/s.sock"]
    )
    assert server.listen == ["tcp://localhost:2224", "tcp://[::1]:2224", "unix:///run/s.sock"]
    assert server.listen_addresses() == [
        TcpAddress("localhost", 2224),
        TcpAddress("::1", 2224),
        UnixAddress("/run/s.sock"),
    ]


@pytest.mark.parametrize(
    ("listen", "path", "reason"),
    [
        (["tcp://127.0.0.1:0"], "server.listen[0]", "0 is not in the range 1 to 65535"),
        (["tcp://h:1", "tcp://h:70000"], "server.listen[1]", "70000 is not in the range"),
        (["tcp://127.0.0.1:abc"], "server.listen[0]", "expected a number from 1 to 65535"),
        (["127.0.0.1:2224"], "server.listen[0]", "expected tcp://HOST:PORT"),
        (["unix://run/x.sock"], "server.listen[0]", "must be absolute"),
        (["tcp://::1:2224"], "server.listen[0]", "write IPv6 addresses in brackets"),
        ([], "server.listen", "at least 1 item"),
        (["tcp://h:1", "TCP://H:1"], "server.listen", "duplicate listen address 'tcp://h:1'"),
        ("tcp://127.0.0.1:2224", "server.listen", "valid list"),
        ([2224], "server.listen[0]", "valid string"),
    ],
)
def test_listen_rejected(listen: object, path: str, reason: str) -> None:
    found_path, message = only_problem({"server": {"listen": listen}})
    assert found_path == path
    assert reason in message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("max_request_bytes", 0, "greater than or equal to 1"),
        ("max_request_bytes", 10_000_001, "less than or equal to 10000000"),
        ("max_request_bytes", "100", "valid integer"),
        ("max_request_bytes", True, "valid integer"),
        ("max_request_bytes", 1.5, "valid integer"),
        ("max_reply_bytes", -1, "greater than or equal to 1"),
        ("idle_timeout", 0, "greater than 0"),
        ("idle_timeout", -1.0, "greater than 0"),
        ("idle_timeout", float("inf"), "finite number"),
        ("idle_timeout", float("nan"), "finite number"),
        ("idle_timeout", "60", "valid number"),
        ("request_timeout", 100, "less than 100 seconds"),
        ("request_timeout", 0.0, "greater than 0"),
        ("run_as_user", "", "non-empty user or group name"),
        ("run_as_user", "no body", "without whitespace"),
        ("run_as_group", 65534, "valid string"),
        ("port", 2224, "unknown key"),
    ],
)
def test_server_field_rejected(field: str, value: object, reason: str) -> None:
    path, message = only_problem({"server": {field: value}})
    assert path == f"server.{field}"
    assert reason in message


def test_server_accepts_limits_and_int_seconds() -> None:
    server = ServerConfig(
        max_request_bytes=1,
        max_reply_bytes=10_000_000,
        idle_timeout=1,
        request_timeout=99.999,
        run_as_user="nobody",
        run_as_group="nogroup",
    )
    assert server.idle_timeout == 1.0
    assert isinstance(server.idle_timeout, float)


# ---------------------------------------------------------------- log


def test_log_file_relative_is_resolved_against_base_dir() -> None:
    config = Config.model_validate(
        {"log": {"level": "debug", "file": "logs/s.log"}}, context={"base_dir": Path("/etc/s")}
    )
    assert config.log == LogConfig(level="debug", file=Path("/etc/s/logs/s.log"))


def test_log_file_without_base_dir_is_kept() -> None:
    assert LogConfig(file=Path("s.log")).file == Path("s.log")


@pytest.mark.parametrize(
    ("log", "path", "reason"),
    [
        ({"level": "verbose"}, "log.level", "'debug', 'info', 'warning' or 'error'"),
        ({"level": "INFO"}, "log.level", "'debug', 'info', 'warning' or 'error'"),
        ({"file": ""}, "log.file", "must not be empty"),
        ({"file": 3}, "log.file", "path"),
        ({"rotate": True}, "log.rotate", "unknown key"),
    ],
)
def test_log_rejected(log: dict[str, Any], path: str, reason: str) -> None:
    found_path, message = only_problem({"log": log})
    assert found_path == path
    assert reason in message


# ---------------------------------------------------------------- databases: url form


@pytest.mark.parametrize(
    ("url", "normalised", "dialect"),
    [
        ("sqlite+aiosqlite:////var/db/m.db", "sqlite+aiosqlite:////var/db/m.db", "sqlite"),
        ("sqlite:////var/db/m.db", "sqlite+aiosqlite:////var/db/m.db", "sqlite"),
        ("mysql+asyncmy://u:p@db/mail", "mysql+asyncmy://u:p@db/mail", "mysql"),
        ("mysql://u:p@db:3307/mail", "mysql+asyncmy://u:p@db:3307/mail", "mysql"),
        ("mariadb://u@db/mail", "mysql+asyncmy://u@db/mail", "mysql"),
        ("mariadb+asyncmy://u@db/mail", "mysql+asyncmy://u@db/mail", "mysql"),
        ("postgresql://u@db/mail", "postgresql+asyncpg://u@db/mail", "postgresql"),
        ("postgres://u@[::1]:5433/mail", "postgresql+asyncpg://u@[::1]:5433/mail", "postgresql"),
        ("postgresql+asyncpg://u@db/mail", "postgresql+asyncpg://u@db/mail", "postgresql"),
        (
            "mysql://u:p%40ss@db/mail",
            "mysql+asyncmy://u:p%40ss@db/mail",
            "mysql",
        ),
    ],
)
def test_url_is_normalised_to_async_driver(url: str, normalised: str, dialect: str) -> None:
    database = DatabaseConfig(url=url)
    assert database.url == normalised
    assert database.dialect == dialect
    assert database.sqlalchemy_url() == make_url(normalised)
    assert DatabaseConfig(url=normalised) == database


def test_url_password_survives_in_sqlalchemy_url_but_not_in_repr() -> None:
    database = DatabaseConfig(url="mysql://postmap:s3cr%40t@db/mail")
    assert database.sqlalchemy_url().password == "s3cr@t"
    assert "s3cr" not in repr(database)
    assert "s3cr" not in repr(Config(databases={"m": database}))


def test_sqlite_relative_url_is_resolved_against_base_dir() -> None:
    config = Config.model_validate(
        {"databases": {"m": {"url": "sqlite:///data/m.db", "init_sql": "q.sql"}}},
        context={"base_dir": Path("/etc/sockmapd")},
    )
    database = config.databases["m"]
    assert database.url == "sqlite+aiosqlite:////etc/sockmapd/data/m.db"
    assert database.sqlalchemy_url().database == "/etc/sockmapd/data/m.db"
    assert database.init_sql == Path("/etc/sockmapd/q.sql")


def test_sqlite_relative_url_without_base_dir_is_kept() -> None:
    database = DatabaseConfig(url="sqlite:///m.db", init_sql=Path("q.sql"))
    assert database.url == "sqlite+aiosqlite:///m.db"
    assert database.init_sql == Path("q.sql")


def test_sqlite_uri_mode_is_not_resolved() -> None:
    config = Config.model_validate(
        {"databases": {"m": {"url": "sqlite:///file:m.db?mode=ro&uri=true"}}},
        context={"base_dir": Path("/etc/sockmapd")},
    )
    assert config.databases["m"].sqlalchemy_url().database == "file:m.db"


@pytest.mark.parametrize(
    ("database", "path", "reason"),
    [
        ({"url": "not a url"}, "databases.db.url", "is not a valid database URL"),
        ({"url": "mysql://h:port/x"}, "databases.db.url", "is not a valid database URL"),
        ({"url": "mysql://h:0/x"}, "databases.db.url", "port 0 in the database URL"),
        ({"url": "mysql://h:70000/x"}, "databases.db.url", "port 70000 in the database URL"),
        ({"url": "oracle://u@h/x"}, "databases.db.url", "unsupported database driver 'oracle'"),
        (
            {"url": "mysql+pymysql://u@h/x"},
            "databases.db.url",
            "unsupported database driver 'mysql+pymysql'",
        ),
        ({"url": "postgresql+psycopg://u@h/x"}, "databases.db.url", "unsupported database"),
        ({"url": "sqlite://"}, "databases.db.url", "must name a database file"),
        ({"url": "sqlite:///:memory:"}, "databases.db.url", "must name a database file"),
        ({"url": "sqlite://host/x.db"}, "databases.db.url", "has no host"),
        ({"url": 3}, "databases.db.url", "valid string"),
        (
            {"url": "mysql://u:p@h/x", "init_sql": "q.sql"},
            "databases.db.init_sql",
            "only supported for SQLite",
        ),
        (
            {"url": "postgresql://u@h/x", "init_sql": "q.sql"},
            "databases.db.init_sql",
            "only supported for SQLite",
        ),
        ({"url": "sqlite:////x.db", "init_sql": ""}, "databases.db.init_sql", "not be empty"),
        ({"url": "sqlite:////x.db", "driver": "sqlite"}, "databases.db.driver", "not both"),
        ({"url": "mysql://u@h/x", "hosts": ["h"]}, "databases.db.hosts", "together with url"),
        ({"url": "mysql://u@h/x", "port": 3306}, "databases.db.port", "together with url"),
        ({"url": "mysql://u@h/x", "name": "x"}, "databases.db.name", "together with url"),
        ({"url": "mysql://u@h/x", "user": "u"}, "databases.db.user", "together with url"),
        ({"url": "mysql://h/x", "password": "p"}, "databases.db.password", "together with url"),
        ({"url": "mysql://u@h/x", "pool": 3}, "databases.db.pool", "unknown key"),
        ({"url": "mysql://u@/x"}, "databases.db.url", "the database URL names no host"),
        ({"url": "mysql:///x"}, "databases.db.url", "use mysql+asyncmy://user@HOST/name"),
        ({"url": "postgresql://u@/x"}, "databases.db.url", "or ?host=/run/postgresql for a"),
        (
            {"url": "postgresql://u@/x?host=pg2"},
            "databases.db.url",
            "the host parameter of the database URL must be one absolute Unix socket path: "
            "give a TCP host in the url itself",
        ),
        (
            {"url": "postgresql://u@/x?host=/a&host=/b"},
            "databases.db.url",
            "must be one absolute Unix socket path",
        ),
        (
            {"url": "mysql://u@h/x?unix_socket=m.sock"},
            "databases.db.url",
            "the unix_socket parameter of the database URL must be one absolute Unix socket path",
        ),
        ({}, "databases.db.driver", "either url or driver is required"),
    ],
)
def test_url_form_rejected(database: dict[str, Any], path: str, reason: str) -> None:
    found_path, message = only_problem(with_database(database))
    assert found_path == path
    assert reason in message


def test_bad_url_message_does_not_echo_password() -> None:
    _, message = only_problem(with_database({"url": "mysql://u:hunter2@h:x/db"}))
    assert "hunter2" not in message


# ---------------------------------------------------------------- databases: structured form


def test_structured_mysql() -> None:
    database = DatabaseConfig(
        driver="mysql",
        hosts=["db1.example.org", "db2.example.org:3307", "[::1]"],
        port=3306,
        name="postfix",
        user="postmap",
        password=SecretStr("p@ss:word"),
    )
    assert database.dialect == "mysql"
    urls = database.sqlalchemy_urls()
    assert [(u.drivername, u.host, u.port) for u in urls] == [
        ("mysql+asyncmy", "db1.example.org", 3306),
        ("mysql+asyncmy", "db2.example.org", 3307),
        ("mysql+asyncmy", "::1", 3306),
    ]
    assert all(u.username == "postmap" and u.password == "p@ss:word" for u in urls)
    assert all(u.database == "postfix" for u in urls)
    assert database.sqlalchemy_url() == urls[0]
    assert "p@ss" not in repr(database)


def test_structured_postgresql_without_port_uses_driver_default() -> None:
    database = DatabaseConfig(driver="postgresql", hosts=["pg"], name="mail", user="u")
    url = database.sqlalchemy_url()
    assert (url.drivername, url.host, url.port, url.password) == (
        "postgresql+asyncpg",
        "pg",
        None,
        None,
    )


def test_structured_sqlite_name_is_resolved() -> None:
    config = Config.model_validate(
        {"databases": {"m": {"driver": "sqlite", "name": "m.db", "init_sql": "/abs/q.sql"}}},
        context={"base_dir": Path("/srv")},
    )
    database = config.databases["m"]
    assert database.name == "/srv/m.db"
    assert database.init_sql == Path("/abs/q.sql")
    assert database.dialect == "sqlite"
    assert database.sqlalchemy_url() == make_url("sqlite+aiosqlite:////srv/m.db")


@pytest.mark.parametrize(
    ("database", "path", "reason"),
    [
        ({"driver": "oracle", "hosts": ["h"]}, "databases.db.driver", "'mysql', 'postgresql'"),
        ({"driver": "mysql"}, "databases.db.hosts", "at least one host is required"),
        ({"driver": "postgresql", "hosts": []}, "databases.db.hosts", "at least one host"),
        ({"driver": "mysql", "hosts": ["h:0"]}, "databases.db.hosts[0]", "not in the range"),
        ({"driver": "mysql", "hosts": ["a", "h:x"]}, "databases.db.hosts[1]", "expected a num"),
        ({"driver": "mysql", "hosts": [""]}, "databases.db.hosts[0]", "the host is empty"),
        ({"driver": "mysql", "hosts": "h"}, "databases.db.hosts", "valid list"),
        (
            {"driver": "mysql", "hosts": ["h"], "port": 0},
            "databases.db.port",
            "greater than or equal to 1",
        ),
        (
            {"driver": "mysql", "hosts": ["h"], "port": 70000},
            "databases.db.port",
            "less than or equal to 65535",
        ),
        ({"driver": "mysql", "hosts": ["h"], "port": "3306"}, "databases.db.port", "integer"),
        ({"driver": "mysql", "hosts": ["h"], "name": ""}, "databases.db.name", "non-empty"),
        ({"driver": "mysql", "hosts": ["h"], "user": ""}, "databases.db.user", "not be empty"),
        (
            {"driver": "mysql", "hosts": ["h"], "init_sql": "q.sql"},
            "databases.db.init_sql",
            "init_sql is only supported for SQLite databases",
        ),
        (
            {"driver": "postgresql", "hosts": ["h"], "init_sql": "q.sql"},
            "databases.db.init_sql",
            "only supported for SQLite",
        ),
        ({"driver": "sqlite"}, "databases.db.name", "needs the database file path"),
        ({"driver": "sqlite", "name": ":memory:"}, "databases.db.name", "file path"),
        ({"driver": "sqlite", "name": "x", "hosts": ["h"]}, "databases.db.hosts", "not used"),
        ({"driver": "sqlite", "name": "x", "port": 1}, "databases.db.port", "not used"),
        ({"driver": "sqlite", "name": "x", "user": "u"}, "databases.db.user", "not used"),
        ({"driver": "sqlite", "name": "x", "password": "p"}, "databases.db.password", "not used"),
        ({"driver": "mysql", "hosts": ["h"], "db": "x"}, "databases.db.db", "unknown key"),
    ],
)
def test_structured_form_rejected(database: dict[str, Any], path: str, reason: str) -> None:
    found_path, message = only_problem(with_database(database))
    assert found_path == path
    assert reason in message


@pytest.mark.parametrize(
    ("name", "ok"),
    [("mail", True), ("legacy-db_2", True), ("a" * 64, True), ("a" * 65, False), ("a b", False)],
)
def test_database_names(name: str, ok: bool) -> None:
    data = {"databases": {name: SQLITE_DB}}
    if ok:
        assert name in Config.model_validate(data).databases
    else:
        path, message = only_problem(data)
        assert path in (f"databases.{name}", f'databases["{name}"]')
        assert "invalid database name" in message


# ---------------------------------------------------------------- databases: connection settings

MYSQL_DB: dict[str, Any] = {"driver": "mysql", "hosts": ["db"], "name": "mail", "user": "u"}
PG_DB: dict[str, Any] = {"driver": "postgresql", "hosts": ["pg"], "name": "mail", "user": "u"}
PASSWORD_VAR = "SOCKMAPD_TEST_DB_PASSWORD"


def database_of(database: dict[str, Any], base_dir: Path | None = None) -> DatabaseConfig:
    config = Config.model_validate(with_database(database), context={"base_dir": base_dir})
    return config.databases["db"]


def only_database_problem(
    database: dict[str, Any], base_dir: Path | None = None
) -> tuple[str, str]:
    found = problems(with_database(database), base_dir)
    assert len(found) == 1, found
    return next(iter(found.items()))


def test_database_connection_defaults() -> None:
    database = DatabaseConfig(driver="mysql", hosts=["db"])
    assert (database.password_file, database.password_env) == (None, None)
    assert (database.tls, database.tls_verify) == (False, True)
    assert (database.tls_ca_file, database.tls_cert_file, database.tls_key_file) == (None,) * 3
    assert (database.connect_timeout, database.query_timeout) == (3.0, 5.0)
    assert (database.pool_size, database.max_overflow) == (10, 0)
    assert database.retry_interval == 60.0
    assert database.host_order == "in_order"
    assert database.target_session_attrs is None
    assert database.pgbouncer is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout", 0.001),
        ("connect_timeout", 1),
        ("connect_timeout", 120.5),
        ("query_timeout", 0.5),
        ("query_timeout", 30),
        ("retry_interval", 0.1),
        ("retry_interval", 3600),
        ("pool_size", 1),
        ("pool_size", 1000),
        ("max_overflow", 0),
        ("max_overflow", 1000),
        ("host_order", "in_order"),
        ("host_order", "random"),
    ],
)
@pytest.mark.parametrize("base", [MYSQL_DB, PG_DB, {"url": "mysql://u@db/mail"}, SQLITE_DB])
def test_connection_setting_accepted(field: str, value: object, base: dict[str, Any]) -> None:
    database = database_of({**base, field: value})
    assert getattr(database, field) == value
    if isinstance(value, int) and field.endswith(("timeout", "interval")):
        assert isinstance(getattr(database, field), float)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("connect_timeout", 0, "Input should be greater than 0"),
        ("connect_timeout", -1.0, "Input should be greater than 0"),
        ("connect_timeout", float("inf"), "Input should be a finite number"),
        ("connect_timeout", float("nan"), "Input should be a finite number"),
        ("connect_timeout", "3", "Input should be a valid number"),
        ("connect_timeout", True, "Input should be a valid number"),
        ("query_timeout", 0.0, "Input should be greater than 0"),
        ("query_timeout", "5s", "Input should be a valid number"),
        ("retry_interval", 0, "Input should be greater than 0"),
        ("retry_interval", float("-inf"), "Input should be a finite number"),
        ("pool_size", 0, "Input should be greater than or equal to 1"),
        ("pool_size", 1001, "Input should be less than or equal to 1000"),
        ("pool_size", 1.5, "Input should be a valid integer"),
        ("pool_size", 5.0, "Input should be a valid integer"),
        ("pool_size", "5", "Input should be a valid integer"),
        ("pool_size", True, "Input should be a valid integer"),
        ("max_overflow", -1, "Input should be greater than or equal to 0"),
        ("max_overflow", 1001, "Input should be less than or equal to 1000"),
        ("max_overflow", "10", "Input should be a valid integer"),
        ("host_order", "shuffle", "Input should be 'in_order' or 'random'"),
        ("host_order", "in-order", "Input should be 'in_order' or 'random'"),
        ("host_order", None, "Input should be 'in_order' or 'random'"),
        ("tls", "true", "Input should be a valid boolean"),
        ("tls", 1, "Input should be a valid boolean"),
        ("target_session_attrs", "master", "Input should be 'any', 'read-write', 'read-only'"),
        ("target_session_attrs", "read_write", "Input should be 'any', 'read-write'"),
        ("password_env", 3, "Input should be a valid string"),
        ("password_file", 3, "Input is not a valid path"),
    ],
)
def test_connection_setting_rejected(field: str, value: object, reason: str) -> None:
    path, message = only_database_problem({**PG_DB, field: value})
    assert path == f"databases.db.{field}"
    assert message.startswith(reason)


@pytest.mark.parametrize(
    "value", ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]
)
@pytest.mark.parametrize("base", [PG_DB, {"url": "postgresql://u@pg/mail"}])
def test_target_session_attrs_accepted(value: str, base: dict[str, Any]) -> None:
    assert database_of({**base, "target_session_attrs": value}).target_session_attrs == value


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ({**MYSQL_DB, "target_session_attrs": "any"}, "only supported for PostgreSQL databases"),
        (
            {"url": "mysql://u@db/mail", "target_session_attrs": "primary"},
            "only supported for PostgreSQL databases",
        ),
        (
            {"driver": "sqlite", "name": "/x.db", "target_session_attrs": "any"},
            "only supported for PostgreSQL databases",
        ),
    ],
)
def test_target_session_attrs_rejected(database: dict[str, Any], message: str) -> None:
    assert only_database_problem(database) == ("databases.db.target_session_attrs", message)


@pytest.mark.parametrize("base", [PG_DB, {"url": "postgresql://u@pg/mail"}])
@pytest.mark.parametrize("attrs", [None, "any"])
def test_pgbouncer_accepted_for_postgresql(base: dict[str, Any], attrs: str | None) -> None:
    extra = {} if attrs is None else {"target_session_attrs": attrs}
    assert database_of({**base, "pgbouncer": True, **extra}).pgbouncer is True


@pytest.mark.parametrize(
    ("database", "message"),
    [
        ({**MYSQL_DB, "pgbouncer": True}, "only supported for PostgreSQL databases"),
        (
            {"driver": "sqlite", "name": "/x.db", "pgbouncer": True},
            "only supported for PostgreSQL databases",
        ),
        ({**PG_DB, "pgbouncer": "yes"}, "Input should be a valid boolean"),
        (
            {**PG_DB, "pgbouncer": True, "target_session_attrs": "primary"},
            "cannot be combined with target_session_attrs",
        ),
        (
            {**PG_DB, "pgbouncer": True, "target_session_attrs": "read-write"},
            "cannot be combined with target_session_attrs",
        ),
    ],
)
def test_pgbouncer_rejected(database: dict[str, Any], message: str) -> None:
    path, problem = only_database_problem(database)
    assert path == "databases.db.pgbouncer"
    assert problem.startswith(message), problem


def test_pgbouncer_false_is_accepted_everywhere() -> None:
    assert database_of({**MYSQL_DB, "pgbouncer": False}).pgbouncer is False


# ---------------------------------------------------------------- databases: secrets


def password_file(tmp_path: Path, content: bytes | str = "s3cret\n") -> Path:
    path = tmp_path / "db.password"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "secret"),
    [
        ("s3cret\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret\n\n", "s3cret"),
        (" pass word \n", " pass word "),
        ("pässwörd\n", "pässwörd"),
        ("a\nb\n", "a\nb"),
        ("", ""),
    ],
)
def test_password_file_is_read_and_stripped(tmp_path: Path, content: str, secret: str) -> None:
    path = password_file(tmp_path, content)
    database = database_of({**MYSQL_DB, "password_file": str(path)})
    assert database.password_file == path
    assert database.password is None
    assert database.secret() == secret


def test_password_file_relative_is_resolved_against_base_dir(tmp_path: Path) -> None:
    password_file(tmp_path)
    database = database_of({**MYSQL_DB, "password_file": "db.password"}, base_dir=tmp_path)
    assert database.password_file == tmp_path / "db.password"
    assert database.secret() == "s3cret"


def test_password_file_is_read_again_by_secret(tmp_path: Path) -> None:
    path = password_file(tmp_path, "old\n")
    database = database_of({**PG_DB, "password_file": str(path)})
    path.write_text("new\n")
    assert database.secret() == "new"
    path.unlink()
    with pytest.raises(SecretError) as info:
        database.secret()
    assert str(info.value) == f"cannot read password_file {path}: No such file or directory"


def test_password_file_grown_too_large_fails_in_secret(tmp_path: Path) -> None:
    path = password_file(tmp_path)
    database = database_of({**PG_DB, "password_file": str(path)})
    path.write_bytes(b"x" * (MAX_PASSWORD_FILE_BYTES + 1))
    with pytest.raises(SecretError, match="larger than 65536 bytes"):
        database.secret()


def test_password_file_with_url(tmp_path: Path) -> None:
    path = password_file(tmp_path)
    database = database_of({"url": "postgresql://reader@pg/mail", "password_file": str(path)})
    assert database.secret() == "s3cret"
    assert database.sqlalchemy_url().password is None


def test_password_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    assert only_database_problem({**MYSQL_DB, "password_file": str(path)}) == (
        "databases.db.password_file",
        f"cannot read {path}: No such file or directory",
    )


def test_password_file_missing_relative_names_resolved_path(tmp_path: Path) -> None:
    assert only_database_problem({**MYSQL_DB, "password_file": "nope"}, base_dir=tmp_path) == (
        "databases.db.password_file",
        f"cannot read {tmp_path / 'nope'}: No such file or directory",
    )


def test_password_file_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = password_file(tmp_path)
    real_open = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Tests may run as root, who can read any file whatever its mode.
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    assert only_database_problem({**MYSQL_DB, "password_file": str(path)}) == (
        "databases.db.password_file",
        f"cannot read {path}: Permission denied",
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe", "is not valid UTF-8"),
        (b"x" * (MAX_PASSWORD_FILE_BYTES + 1), "is larger than 65536 bytes"),
    ],
)
def test_password_file_bad_content(tmp_path: Path, content: bytes, reason: str) -> None:
    path = password_file(tmp_path, content)
    assert only_database_problem({**MYSQL_DB, "password_file": str(path)}) == (
        "databases.db.password_file",
        f"{path} {reason}",
    )


def test_password_file_largest_accepted(tmp_path: Path) -> None:
    path = password_file(tmp_path, b"x" * MAX_PASSWORD_FILE_BYTES)
    assert database_of({**MYSQL_DB, "password_file": str(path)}).secret() == "x" * 65536


def test_password_file_directory(tmp_path: Path) -> None:
    assert only_database_problem({**MYSQL_DB, "password_file": str(tmp_path)}) == (
        "databases.db.password_file",
        f"{tmp_path} is not a regular file",
    )


def test_password_file_fifo_is_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert only_database_problem({**MYSQL_DB, "password_file": str(fifo)}) == (
        "databases.db.password_file",
        f"{fifo} is not a regular file",
    )


@pytest.mark.parametrize("value", ["", " ", "\0x"])
def test_password_file_empty_path(value: str) -> None:
    path, message = only_database_problem({**MYSQL_DB, "password_file": value})
    assert path == "databases.db.password_file"
    assert message in ("must not be empty", "must not contain a NUL byte")


def test_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "from env")
    database = database_of({**MYSQL_DB, "password_env": PASSWORD_VAR})
    assert database.password_env == PASSWORD_VAR
    assert database.secret() == "from env"
    assert database.sqlalchemy_url().password is None
    monkeypatch.setenv(PASSWORD_VAR, "changed")
    assert database.secret() == "changed"
    monkeypatch.setenv(PASSWORD_VAR, "")
    assert database.secret() == ""
    monkeypatch.delenv(PASSWORD_VAR)
    with pytest.raises(SecretError) as info:
        database.secret()
    assert str(info.value) == f"environment variable {PASSWORD_VAR} is not set"


def test_password_env_with_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "pw")
    database = database_of({"url": "mysql://postmap@db/postfix", "password_env": PASSWORD_VAR})
    assert database.secret() == "pw"


def test_password_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    assert only_database_problem({**MYSQL_DB, "password_env": PASSWORD_VAR}) == (
        "databases.db.password_env",
        f"environment variable {PASSWORD_VAR} is not set",
    )


@pytest.mark.parametrize("name", ["", "A=B", "=", "A\0B"])
def test_password_env_bad_name(name: str) -> None:
    assert only_database_problem({**MYSQL_DB, "password_env": name}) == (
        "databases.db.password_env",
        "must be the name of an environment variable (non-empty, without '=')",
    )


ONLY_ONE = "give only one of password, password_file and password_env"


@pytest.mark.parametrize(
    ("database", "path", "message"),
    [
        (
            {**MYSQL_DB, "password": "p", "password_file": "FILE"},
            "password_file",
            f"{ONLY_ONE} (password is set too)",
        ),
        (
            {**MYSQL_DB, "password": "p", "password_env": "VAR"},
            "password_env",
            f"{ONLY_ONE} (password is set too)",
        ),
        (
            {**MYSQL_DB, "password_file": "FILE", "password_env": "VAR"},
            "password_env",
            f"{ONLY_ONE} (password_file is set too)",
        ),
        (
            {"url": "mysql://u:p@db/mail", "password_file": "FILE"},
            "password_file",
            "the url holds a password already: remove it from the url to use password_file",
        ),
        (
            {"url": "postgresql://u:@pg/mail", "password_env": "VAR"},
            "password_env",
            "the url holds a password already: remove it from the url to use password_env",
        ),
        (
            {"url": "mysql://u@db/mail", "password_file": "FILE", "password_env": "VAR"},
            "password_env",
            f"{ONLY_ONE} (password_file is set too)",
        ),
        (
            {"url": "mysql://u@db/mail", "password": "p"},
            "password",
            "not allowed together with url: put the password into the url "
            "or use password_file or password_env",
        ),
        ({**SQLITE_DB, "password_file": "FILE"}, "password_file", "not used by the sqlite driver"),
        ({**SQLITE_DB, "password_env": "VAR"}, "password_env", "not used by the sqlite driver"),
        (
            {"driver": "sqlite", "name": "/x.db", "password_file": "FILE"},
            "password_file",
            "not used by the sqlite driver",
        ),
        (
            {"driver": "sqlite", "name": "/x.db", "password_env": "VAR"},
            "password_env",
            "not used by the sqlite driver",
        ),
    ],
)
def test_password_sources_exclusive(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database: dict[str, Any],
    path: str,
    message: str,
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "pw")
    substitutes = {"FILE": str(password_file(tmp_path)), "VAR": PASSWORD_VAR}
    database = {k: substitutes.get(v, v) if isinstance(v, str) else v for k, v in database.items()}
    assert only_database_problem(database) == (f"databases.db.{path}", message)


@pytest.mark.parametrize(
    ("database", "secret"),
    [
        ({**MYSQL_DB, "password": "inline"}, "inline"),
        ({"url": "mysql://u:in%40url@db/mail"}, "in@url"),
        ({"url": "postgresql://u:@pg/mail"}, ""),
        (MYSQL_DB, None),
        ({"url": "postgresql://u@pg/mail"}, None),
        (SQLITE_DB, None),
        ({"driver": "sqlite", "name": "/x.db"}, None),
    ],
)
def test_secret_inline_or_none(database: dict[str, Any], secret: str | None) -> None:
    assert database_of(database).secret() == secret


def test_secret_of_each_file_and_env_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "env secret")
    path = password_file(tmp_path, "file secret\n")
    assert database_of({**PG_DB, "password_file": str(path)}).secret() == "file secret"
    assert database_of({**PG_DB, "password_env": PASSWORD_VAR}).secret() == "env secret"


def test_password_file_and_env_are_not_secret_in_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "hunter2")
    path = password_file(tmp_path, "swordfish\n")
    for extra in ({"password_file": str(path)}, {"password_env": PASSWORD_VAR}):
        text = repr(database_of({**MYSQL_DB, **extra}))
        assert "hunter2" not in text
        assert "swordfish" not in text


# ---------------------------------------------------------------- databases: TLS


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
    return files


@pytest.mark.parametrize(
    "base",
    [MYSQL_DB, PG_DB, {"url": "mysql://u@db/mail"}, {"url": "postgresql://u@pg/mail"}],
)
def test_tls_accepted(tls_files: dict[str, Path], tmp_path: Path, base: dict[str, Any]) -> None:
    database = database_of(
        {
            **base,
            "tls": True,
            "tls_ca_file": "ca.pem",
            "tls_cert_file": str(tls_files["cert"]),
            "tls_key_file": "key.pem",
            "tls_verify": False,
        },
        base_dir=tmp_path,
    )
    assert database.tls is True
    assert database.tls_ca_file == tls_files["ca"]
    assert database.tls_cert_file == tls_files["cert"]
    assert database.tls_key_file == tls_files["key"]
    assert database.tls_verify is False


def test_tls_alone_and_with_ca_only(tls_files: dict[str, Path]) -> None:
    database = database_of({**PG_DB, "tls": True})
    assert (database.tls, database.tls_verify, database.tls_ca_file) == (True, True, None)
    database = database_of({**MYSQL_DB, "tls": True, "tls_ca_file": str(tls_files["ca"])})
    assert (database.tls_ca_file, database.tls_cert_file) == (tls_files["ca"], None)


@pytest.mark.parametrize("verify", [True, False])
def test_tls_verify_accepted_with_tls(verify: bool) -> None:
    assert database_of({**MYSQL_DB, "tls": True, "tls_verify": verify}).tls_verify is verify


@pytest.mark.parametrize("value", ["no", 0, None])
def test_tls_verify_must_be_a_boolean(value: object) -> None:
    assert only_database_problem({**PG_DB, "tls": True, "tls_verify": value}) == (
        "databases.db.tls_verify",
        "Input should be a valid boolean",
    )


def test_tls_false_may_be_written_out() -> None:
    assert database_of({**SQLITE_DB, "tls": False}).tls is False
    assert database_of({**MYSQL_DB, "tls": False}).tls is False


def test_ssl_in_url_is_rejected_because_it_would_be_ignored() -> None:
    path, message = only_database_problem({"url": "postgresql://u@pg/mail?ssl=require"})
    assert path == "databases.db.url"
    assert message.startswith("the database URL parameter(s) ssl are not supported: use")


@pytest.mark.parametrize("field", ["tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify"])
@pytest.mark.parametrize("tls", [None, False])
def test_tls_option_without_tls(tls_files: dict[str, Path], field: str, tls: bool | None) -> None:
    database: dict[str, Any] = {
        **MYSQL_DB,
        field: True if field == "tls_verify" else str(tls_files["key"]),
    }
    if tls is not None:
        database["tls"] = tls
    assert only_database_problem(database) == (
        f"databases.db.{field}",
        f"{field} is only used with TLS: set tls = true",
    )


@pytest.mark.parametrize("field", ["tls", "tls_ca_file", "tls_cert_file", "tls_key_file"])
@pytest.mark.parametrize("base", [SQLITE_DB, {"driver": "sqlite", "name": "/x.db"}])
def test_tls_rejected_for_sqlite(
    tls_files: dict[str, Path], field: str, base: dict[str, Any]
) -> None:
    value: object = True if field == "tls" else str(tls_files["ca"])
    assert only_database_problem({**base, field: value}) == (
        f"databases.db.{field}",
        "TLS is only supported for MySQL and PostgreSQL databases",
    )


def test_tls_verify_rejected_for_sqlite() -> None:
    assert only_database_problem({**SQLITE_DB, "tls_verify": False}) == (
        "databases.db.tls_verify",
        "TLS is only supported for MySQL and PostgreSQL databases",
    )


def test_tls_cert_without_key(tls_files: dict[str, Path]) -> None:
    database = {**MYSQL_DB, "tls": True, "tls_cert_file": str(tls_files["cert"])}
    assert only_database_problem(database) == (
        "databases.db.tls_key_file",
        "required when tls_cert_file is given: a certificate needs its key",
    )


def test_tls_key_without_cert(tls_files: dict[str, Path]) -> None:
    database = {**PG_DB, "tls": True, "tls_key_file": str(tls_files["key"])}
    assert only_database_problem(database) == (
        "databases.db.tls_key_file",
        "needs tls_cert_file: a client key is used only with its certificate",
    )


@pytest.mark.parametrize("field", ["tls_ca_file", "tls_cert_file", "tls_key_file"])
def test_tls_file_missing(tls_files: dict[str, Path], tmp_path: Path, field: str) -> None:
    database: dict[str, Any] = {
        **PG_DB,
        "tls": True,
        "tls_cert_file": str(tls_files["cert"]),
        "tls_key_file": str(tls_files["key"]),
        field: "missing.pem",
    }
    found = problems(with_database(database), tmp_path)
    assert found[f"databases.db.{field}"] == (
        f"cannot read {tmp_path / 'missing.pem'}: No such file or directory"
    )
    # A missing certificate is not reported a second time as a key without certificate.
    assert len(found) == 1


@pytest.mark.parametrize("field", ["tls_ca_file", "tls_cert_file", "tls_key_file"])
def test_tls_file_not_a_regular_file(
    tls_files: dict[str, Path], tmp_path: Path, field: str
) -> None:
    database: dict[str, Any] = {
        **PG_DB,
        "tls": True,
        "tls_cert_file": str(tls_files["cert"]),
        "tls_key_file": str(tls_files["key"]),
        field: str(tmp_path),
    }
    assert only_database_problem(database) == (
        f"databases.db.{field}",
        f"{tmp_path} is not a regular file",
    )


@pytest.mark.parametrize("field", ["tls_ca_file", "tls_cert_file", "tls_key_file"])
def test_tls_file_unreadable(
    tls_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text("x")
    real_open = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        # Tests may run as root, who can read any file whatever its mode.
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    database: dict[str, Any] = {
        **PG_DB,
        "tls": True,
        "tls_cert_file": str(tls_files["cert"]),
        "tls_key_file": str(tls_files["key"]),
        field: str(unreadable),
    }
    assert only_database_problem(database) == (
        f"databases.db.{field}",
        f"cannot read {unreadable}: Permission denied",
    )


@pytest.mark.parametrize("field", ["tls_ca_file", "tls_cert_file", "tls_key_file"])
def test_tls_file_empty_path(field: str) -> None:
    found = problems(with_database({**PG_DB, "tls": True, field: ""}))
    assert found[f"databases.db.{field}"] == "must not be empty"


@pytest.mark.parametrize(
    ("url", "keys"),
    [
        ("postgresql://u@pg/mail?ssl=require", "ssl"),
        ("postgresql://u@pg/mail?sslmode=verify-full", "sslmode"),
        ("mysql://u@db/mail?ssl_ca=/ca.pem&ssl_check_hostname=false", "ssl_ca, ssl_check_hostname"),
        ("mysql://u@db/mail?charset=latin1", "charset"),
        ("postgresql://u@pg/mail?target_session_attrs=any", "target_session_attrs"),
    ],
)
def test_url_parameters_are_rejected(url: str, keys: str) -> None:
    assert only_database_problem({"url": url, "tls": True}) == (
        "databases.db.url",
        f"the database URL parameter(s) {keys} are not supported: use the options tls, "
        "tls_ca_file, tls_cert_file, tls_key_file, tls_verify, connect_timeout and "
        "target_session_attrs instead",
    )


# ---------------------------------------------------------------- databases: hosts and endpoints


def test_endpoint_str() -> None:
    assert str(Endpoint("db1", 3306, None)) == "db1:3306"
    assert str(Endpoint("::1", 5432, None)) == "[::1]:5432"
    assert str(Endpoint("10.0.0.1", 5432, None)) == "10.0.0.1:5432"
    assert str(Endpoint(None, None, "/run/mysqld/mysqld.sock")) == "unix:/run/mysqld/mysqld.sock"
    assert str(Endpoint("db1", None, None)) == "db1"


def test_endpoint_is_frozen_and_hashable() -> None:
    endpoint = Endpoint("db1", 3306, None)
    with pytest.raises(AttributeError):
        endpoint.port = 1  # type: ignore[misc]
    assert {endpoint, Endpoint("db1", 3306, None)} == {endpoint}


HOSTS = [
    "db1.example.org",
    "db2.example.org:3307",
    "10.0.0.1",
    "[::1]",
    "[2001:DB8::5]:3308",
    "2001:db8::6",
    "unix:/run/mysqld/mysqld.sock",
]


@pytest.mark.parametrize(
    ("driver", "port", "default"),
    [
        ("mysql", None, 3306),
        ("postgresql", None, 5432),
        ("mysql", 3310, 3310),
        ("postgresql", 6432, 6432),
    ],
)
def test_structured_endpoints(driver: str, port: int | None, default: int) -> None:
    fields: dict[str, Any] = {"driver": driver, "hosts": HOSTS}
    if port is not None:
        fields["port"] = port
    database = database_of(fields)
    assert database.hosts == HOSTS
    assert database.endpoints() == [
        Endpoint("db1.example.org", default, None),
        Endpoint("db2.example.org", 3307, None),
        Endpoint("10.0.0.1", default, None),
        Endpoint("::1", default, None),
        Endpoint("2001:db8::5", 3308, None),
        Endpoint("2001:db8::6", default, None),
        Endpoint(None, None, "/run/mysqld/mysqld.sock"),
    ]
    assert [str(e) for e in database.endpoints()] == [
        f"db1.example.org:{default}",
        "db2.example.org:3307",
        f"10.0.0.1:{default}",
        f"[::1]:{default}",
        "[2001:db8::5]:3308",
        f"[2001:db8::6]:{default}",
        "unix:/run/mysqld/mysqld.sock",
    ]


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("mysql://u@db/mail", Endpoint("db", 3306, None)),
        ("mariadb://u@db:3307/mail", Endpoint("db", 3307, None)),
        ("postgresql://u@pg/mail", Endpoint("pg", 5432, None)),
        ("postgres://u@pg:6432/mail", Endpoint("pg", 6432, None)),
        ("postgresql://u@[::1]/mail", Endpoint("::1", 5432, None)),
        ("mysql://u@[2001:db8::1]:3307/mail", Endpoint("2001:db8::1", 3307, None)),
        ("postgresql://u@/mail?host=/run/postgresql", Endpoint(None, None, "/run/postgresql")),
        (
            "postgresql://u@pg/mail?host=/run/postgresql/.s.PGSQL.5432",
            Endpoint(None, None, "/run/postgresql/.s.PGSQL.5432"),
        ),
        (
            "mysql://u@localhost/mail?unix_socket=/run/mysqld/mysqld.sock",
            Endpoint(None, None, "/run/mysqld/mysqld.sock"),
        ),
        ("mysql://u@/mail?unix_socket=/run/m.sock", Endpoint(None, None, "/run/m.sock")),
    ],
)
def test_url_endpoints(url: str, endpoint: Endpoint) -> None:
    assert database_of({"url": url}).endpoints() == [endpoint]


@pytest.mark.parametrize(
    "database",
    [SQLITE_DB, {"driver": "sqlite", "name": "/x.db"}, {"url": "sqlite:///file:m.db?uri=true"}],
)
def test_sqlite_has_no_endpoints(database: dict[str, Any]) -> None:
    assert database_of(database).endpoints() == []


@pytest.mark.parametrize(("driver", "key"), [("mysql", "unix_socket"), ("postgresql", "host")])
def test_unix_host_in_sqlalchemy_urls(driver: str, key: str) -> None:
    database = database_of(
        {"driver": driver, "hosts": ["db", "unix:/run/db.sock"], "port": 3400, "user": "u"}
    )
    tcp, unix = database.sqlalchemy_urls()
    assert (tcp.host, tcp.port, dict(tcp.query)) == ("db", 3400, {})
    assert (unix.host, unix.port, dict(unix.query)) == (None, None, {key: "/run/db.sock"})
    assert unix.username == "u"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("unix:", "invalid host 'unix:': the socket path must be absolute (unix:/path)"),
        ("unix:run/x.sock", "the socket path must be absolute (unix:/path)"),
        ("unix:/x\0y", "the socket path contains a NUL byte"),
        ("unix:/" + "x" * 107, "the socket path is longer than 107 bytes"),
    ],
)
def test_unix_host_rejected(host: str, reason: str) -> None:
    path, message = only_database_problem({"driver": "mysql", "hosts": ["db", host]})
    assert path == "databases.db.hosts[1]"
    assert reason in message


@pytest.mark.parametrize(
    ("database", "name", "user"),
    [
        ({"url": "mysql://postmap:pw@db/postfix"}, "postfix", "postmap"),
        ({"url": "postgresql://pg/mail"}, "mail", None),
        ({"url": "mysql://u@db"}, None, "u"),
        (
            {"driver": "postgresql", "hosts": ["pg"], "name": "mail", "user": "reader"},
            "mail",
            "reader",
        ),
        ({"driver": "mysql", "hosts": ["db"]}, None, None),
        ({"url": "sqlite:////var/m.db"}, "/var/m.db", None),
        ({"driver": "sqlite", "name": "/srv/m.db"}, "/srv/m.db", None),
    ],
)
def test_database_and_user_name(
    database: dict[str, Any], name: str | None, user: str | None
) -> None:
    parsed = database_of(database)
    assert (parsed.database_name(), parsed.user_name()) == (name, user)


# ---------------------------------------------------------------- maps


def test_map_fields_and_table_parts() -> None:
    config = Config.model_validate(with_map(table="mail.aliases", value="dest", reason="why"))
    entry = config.maps["recipient"]
    assert entry == MapConfig(
        database="mail", table="mail.aliases", key="address", value="dest", reason="why"
    )
    assert entry.schema_name == "mail"
    assert entry.table_name == "aliases"
    plain = MapConfig(database="mail", table="aliases", key="address")
    assert (plain.schema_name, plain.table_name) == (None, "aliases")


@pytest.mark.parametrize("field", ["table", "key", "value", "reason"])
@pytest.mark.parametrize(
    "bad", ["aliases; DROP TABLE x", "a-b", '"q"', "", "1abc", "a b", "ä", "x\n", "`t`"]
)
def test_non_identifier_rejected(field: str, bad: str) -> None:
    path, message = only_problem(with_map(**{field: bad}))
    assert path == f"maps.recipient.{field}"
    assert message == f"{bad!r} {IDENTIFIER_REASON}"


@pytest.mark.parametrize("field", ["key", "value", "reason"])
def test_column_may_not_be_qualified(field: str) -> None:
    path, message = only_problem(with_map(**{field: "t.c"}))
    assert (path, message) == (f"maps.recipient.{field}", f"'t.c' {IDENTIFIER_REASON}")


@pytest.mark.parametrize("table", ["a.b.c", ".a", "a.", "a..b"])
def test_bad_qualified_table_rejected(table: str) -> None:
    assert only_problem(with_map(table=table)) == (
        "maps.recipient.table",
        f"{table!r} {IDENTIFIER_REASON}",
    )


def test_identifier_length_limit() -> None:
    assert Config.model_validate(with_map(table="s" * 64 + "." + "t" * 64, key="k" * 64))
    path, message = only_problem(with_map(key="k" * 65))
    assert path == "maps.recipient.key"
    assert "longer than 64 characters" in message
    path, _ = only_problem(with_map(table="s" * 65 + ".t"))
    assert path == "maps.recipient.table"


def test_map_naming_undefined_database() -> None:
    data = with_map(database="nosuch")
    data["databases"]["other"] = SQLITE_DB
    path, message = only_problem(data)
    assert path == "maps.recipient.database"
    assert message == "database 'nosuch' is not defined; defined databases: 'mail', 'other'"


def test_map_naming_database_when_none_defined() -> None:
    data = {"maps": {"r": {"database": "mail", "table": "t", "key": "k"}}}
    assert only_problem(data) == (
        "maps.r.database",
        "database 'mail' is not defined; no databases are defined",
    )


def test_undefined_database_is_reported_with_other_problems() -> None:
    found = problems(
        {
            "databases": {"mail": SQLITE_DB},
            "maps": {"r": {"database": "x", "table": "a-b", "key": "k"}},
            "server": {"idle_timeout": 0},
        }
    )
    assert set(found) == {"maps.r.database", "maps.r.table", "server.idle_timeout"}


def test_undefined_database_is_checked_for_model_instances() -> None:
    with pytest.raises(ValidationError) as info:
        Config(maps={"r": MapConfig(database="mail", table="t", key="k")})
    [problem] = problems_from_validation_error(info.value, Config)
    assert problem.path == "maps.r.database"


def test_map_config_alone_does_not_check_database() -> None:
    assert MapConfig(database="anything", table="t", key="k").database == "anything"


@pytest.mark.parametrize(
    ("name", "path", "reason"),
    [
        ("", 'maps[""]', "must not be empty"),
        ("a b", 'maps["a b"]', "must not contain whitespace"),
        ("a\tb", 'maps["a\\tb"]', "must not contain whitespace"),
        ("x" * 101, "maps." + "x" * 101, "longer than 100 characters"),
        ("a:b", 'maps["a:b"]', "must not contain ':'"),
    ],
)
def test_map_names_rejected(name: str, path: str, reason: str) -> None:
    data = with_map()
    data["maps"] = {name: data["maps"]["recipient"]}
    assert only_problem(data)[0] == path
    assert reason in only_problem(data)[1]


def test_map_names_accepted() -> None:
    data = with_map()
    entry = data["maps"]["recipient"]
    data["maps"] = {"x" * 100: entry, "virtual-alias.domains": entry, "ünï": entry}
    assert len(Config.model_validate(data).maps) == 3


def test_zero_maps_allowed() -> None:
    assert Config.model_validate({"databases": {"mail": SQLITE_DB}}).maps == {}


@pytest.mark.parametrize(
    ("entry", "path", "reason"),
    [
        ({"database": "mail", "table": "t"}, "maps.r.key", "required key is missing"),
        ({"database": "mail", "key": "k"}, "maps.r.table", "required key is missing"),
        ({"table": "t", "key": "k"}, "maps.r.database", "required key is missing"),
        ({"database": "mail", "table": "t", "key": "k", "x": 1}, "maps.r.x", "unknown key"),
    ],
)
def test_map_entry_rejected(entry: dict[str, Any], path: str, reason: str) -> None:
    assert only_problem({"databases": {"mail": SQLITE_DB}, "maps": {"r": entry}}) == (
        path,
        reason,
    )


def test_unknown_top_level_key() -> None:
    assert only_problem({"mapz": {}}) == ("mapz", 'unknown key (did you mean "maps"?)')


# ---------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), ""),
        (("maps", "recipient", "table"), "maps.recipient.table"),
        (("server", "listen", 0), "server.listen[0]"),
        (("postmaps", 1, "table"), "postmaps[1].table"),
        (("maps", "a.b", "[key]"), 'maps["a.b"]'),
        (("maps", 'q"', "key"), 'maps["q\\""].key'),
    ],
)
def test_format_path(loc: tuple[str | int, ...], path: str) -> None:
    assert format_path(loc) == path
