"""The configuration models: defaults, normalisation and every rejection, with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url

from sockmapd.config import (
    Config,
    DatabaseConfig,
    LogConfig,
    MapConfig,
    ServerConfig,
    TcpAddress,
    UnixAddress,
)
from sockmapd.config.errors import format_path, problems_from_validation_error

IDENTIFIER_REASON = "must be a plain SQL identifier (letters, digits, underscore)"
SQLITE_DB = {"url": "sqlite+aiosqlite:////var/lib/sockmapd/mail.sqlite3"}


def problems(data: dict[str, Any], base_dir: Path | None = None) -> dict[str, str]:
    """Return {path: message} of every problem in data; fail if it is valid."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data, context={"base_dir": base_dir})
    return {p.path: p.message for p in problems_from_validation_error(info.value)}


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
    assert config.server.max_request_bytes == 100_000
    assert config.server.max_reply_bytes == 100_000
    assert config.server.idle_timeout == 60.0
    assert config.server.request_timeout == 30.0
    assert config.server.run_as_user is None
    assert config.server.run_as_group is None
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
            "mysql://u:p%40ss@db/mail?charset=utf8mb4",
            "mysql+asyncmy://u:p%40ss@db/mail?charset=utf8mb4",
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
    [problem] = problems_from_validation_error(info.value)
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
    assert only_problem({"mapz": {}}) == ("mapz", "unknown key")


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
