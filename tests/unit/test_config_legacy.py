"""The Go daemon's JSON config: the documented sample loads unchanged; errors use JSON paths."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from sockmapd.config import (
    Config,
    ConfigError,
    DatabaseConfig,
    MapConfig,
    from_legacy,
    parse_config,
    to_toml,
)

# Verbatim from docs of the Go daemon (shared/reference/legacy-config.md).
LEGACY_SAMPLE = """\
{
  "database": {
    "host": ["dbnode1.example.org", "dbnode2.example.org"],
    "port": "3306",
    "username": "postmap",
    "password": "secret"
  },
  "sysconfig": {
    "run_as_user": "nobody",
    "run_as_group": "nogroup",
    "port": "2224",
    "logfile": "/var/log/sockmapd.log"
  },
  "postmaps": [
    {"service": "blacklist", "database": "postfix", "table": "blackwhite",
     "key": "name", "value": "status", "reason": "reason"},
    {"service": "recipient", "database": "dbmail", "table": "dbmail_aliases", "key": "alias"}
  ]
}
"""


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LEGACY_SAMPLE)
    return data


def legacy_problems(data: object, fallback_port: int | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        from_legacy(data, fallback_port=fallback_port)
    return {p.path: p.message for p in info.value.problems}


def only_problem(data: object) -> tuple[str, str]:
    found = legacy_problems(data)
    assert len(found) == 1, found
    return next(iter(found.items()))


def test_sample_loads_field_by_field() -> None:
    config = parse_config(LEGACY_SAMPLE, "sockmapd.json")

    server = config.server
    assert server.listen == ["tcp://0.0.0.0:2224"]
    assert server.run_as_user == "nobody"
    assert server.run_as_group == "nogroup"
    assert server.allow == ["0.0.0.0/0"]
    assert server.allow_root is True
    assert server.max_connections == 1000
    assert server.max_request_bytes == 10_000
    assert server.max_reply_bytes == 100_000
    assert server.idle_timeout == 60.0
    assert server.request_timeout == 30.0
    assert server.shutdown_grace == 10.0
    assert (server.unix_mode, server.unix_owner, server.unix_group) == (None, None, None)
    assert config.is_legacy is True

    assert config.log.level == "info"
    assert config.log.file == Path("/var/log/sockmapd.log")

    assert list(config.databases) == ["postfix", "dbmail"]
    for name in ("postfix", "dbmail"):
        database = config.databases[name]
        assert database.url is None
        assert database.driver == "mysql"
        assert database.dialect == "mysql"
        assert database.hosts == ["dbnode1.example.org", "dbnode2.example.org"]
        assert database.port == 3306
        assert database.name == name
        assert database.user == "postmap"
        assert database.password is not None
        assert database.password.get_secret_value() == "secret"
        assert database.init_sql is None
        assert (database.password_file, database.password_env) == (None, None)
        assert database.secret() == "secret"
        assert database.user_name() == "postmap"
        assert database.database_name() == name
        assert [str(e) for e in database.endpoints()] == [
            "dbnode1.example.org:3306",
            "dbnode2.example.org:3306",
        ]
        assert (database.tls, database.host_order) == (False, "in_order")
        urls = database.sqlalchemy_urls()
        assert [u.render_as_string(hide_password=False) for u in urls] == [
            f"mysql+asyncmy://postmap:secret@dbnode1.example.org:3306/{name}",
            f"mysql+asyncmy://postmap:secret@dbnode2.example.org:3306/{name}",
        ]

    assert list(config.maps) == ["blacklist", "recipient"]
    assert config.maps["blacklist"] == MapConfig(
        database="postfix", table="blackwhite", key="name", value="status", reason="reason"
    )
    assert config.maps["recipient"] == MapConfig(
        database="dbmail", table="dbmail_aliases", key="alias", value=None, reason=None
    )


def test_sample_equals_from_legacy() -> None:
    assert from_legacy(sample(), fallback_port=None) == parse_config(LEGACY_SAMPLE)


def test_sample_converts_to_toml_and_back() -> None:
    config = parse_config(LEGACY_SAMPLE)
    revealed = to_toml(config, reveal_secrets=True)
    assert parse_config(revealed) == config
    assert 'password = "secret"' in revealed
    masked = to_toml(config)
    assert '"secret"' not in masked
    reloaded = parse_config(masked)
    assert reloaded.databases["postfix"].password is not None
    assert reloaded.databases["postfix"].password.get_secret_value() == "********"
    assert reloaded.model_copy(update={"databases": config.databases}) == config


def test_converted_toml_keeps_legacy_access_explicitly() -> None:
    config = parse_config(LEGACY_SAMPLE)
    text = to_toml(config)
    assert 'allow = [\n    "0.0.0.0/0",\n]' in text
    assert "allow_root = true" in text
    assert "legacy" not in text
    converted = parse_config(text)
    assert converted.server.allow == ["0.0.0.0/0"]
    assert converted.server.allow_root is True


def test_only_legacy_json_is_legacy() -> None:
    config = parse_config(LEGACY_SAMPLE)
    converted = parse_config(to_toml(config, reveal_secrets=True))
    assert config.is_legacy
    assert from_legacy(sample(), fallback_port=None).is_legacy
    assert not converted.is_legacy
    assert not Config().is_legacy
    # A legacy file and its conversion are the same configuration.
    assert converted == config
    assert config == converted
    assert config.model_dump() == converted.model_dump()
    assert config.model_copy().is_legacy
    assert converted.model_copy(update={"maps": {}}) != config
    assert config != config.server


def test_legacy_without_run_as_user_may_stay_root() -> None:
    data = sample()
    del data["sysconfig"]["run_as_user"]
    config = from_legacy(data, fallback_port=None)
    assert config.server.run_as_user is None
    assert config.server.allow_root is True
    assert config.server.allowed_networks() == (ipaddress.IPv4Network("0.0.0.0/0"),)


def test_sample_with_crlf_and_bom_loads() -> None:
    text = "\ufeff" + LEGACY_SAMPLE.replace("\n", "\r\n")
    assert parse_config(text) == parse_config(LEGACY_SAMPLE)


# ---------------------------------------------------------------- port and fallback_port


def test_config_port_wins_over_fallback_port() -> None:
    config = from_legacy(sample(), fallback_port=9999)
    assert config.server.listen == ["tcp://0.0.0.0:2224"]


def test_fallback_port_used_without_sysconfig_port() -> None:
    data = sample()
    del data["sysconfig"]["port"]
    assert from_legacy(data, fallback_port=9999).server.listen == ["tcp://0.0.0.0:9999"]
    assert from_legacy(data, fallback_port=None).server.listen == ["tcp://0.0.0.0:2224"]


def test_empty_port_means_unset() -> None:
    data = sample()
    data["sysconfig"]["port"] = ""
    assert from_legacy(data, fallback_port=3000).server.listen == ["tcp://0.0.0.0:3000"]


def test_int_ports_accepted() -> None:
    data = sample()
    data["sysconfig"]["port"] = 10025
    data["database"]["port"] = 3307
    config = from_legacy(data, fallback_port=None)
    assert config.server.listen == ["tcp://0.0.0.0:10025"]
    assert config.databases["postfix"].port == 3307


# ---------------------------------------------------------------- lenient shapes of the Go daemon


def test_minimal_document() -> None:
    data = {"database": {"host": "db", "username": "u"}}
    config = from_legacy(data, fallback_port=None)
    assert config.server.listen == ["tcp://0.0.0.0:2224"]
    assert config.server.run_as_user is None
    assert config.log.file is None
    assert config.databases == {}
    assert config.maps == {}


def test_single_host_string_missing_port_and_empty_strings() -> None:
    data = sample()
    data["database"] = {"host": "db", "username": "u", "password": ""}
    data["sysconfig"] = {"run_as_user": "", "run_as_group": "", "logfile": ""}
    data["postmaps"] = [
        {"service": "m", "database": "d", "table": "t", "key": "k", "value": "", "reason": ""}
    ]
    config = from_legacy(data, fallback_port=None)
    assert config.databases == {
        "d": DatabaseConfig(driver="mysql", hosts=["db"], name="d", user="u")
    }
    assert config.maps == {"m": MapConfig(database="d", table="t", key="k")}
    assert config.server.run_as_user is None
    assert config.log.file is None


def test_maps_sharing_a_database_share_one_entry() -> None:
    data = sample()
    data["postmaps"][1]["database"] = "postfix"
    config = from_legacy(data, fallback_port=None)
    assert list(config.databases) == ["postfix"]
    assert {m.database for m in config.maps.values()} == {"postfix"}


def test_relative_logfile_resolved_against_base_dir() -> None:
    data = sample()
    data["sysconfig"]["logfile"] = "sockmapd.log"
    config = from_legacy(data, fallback_port=None, base_dir=Path("/etc/sockmapd"))
    assert config.log.file == Path("/etc/sockmapd/sockmapd.log")


# ---------------------------------------------------------------- rejections, with JSON paths


def changed(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    data = sample()
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


def removed(path: tuple[str | int, ...]) -> dict[str, Any]:
    data = sample()
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return data


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        (changed(("sysconfig", "port"), "1024"), "sysconfig.port", "1024 is not in the range"),
        (changed(("sysconfig", "port"), 1024), "sysconfig.port", "1025 to 65535"),
        (changed(("sysconfig", "port"), "0"), "sysconfig.port", "not in the range 1025"),
        (changed(("sysconfig", "port"), "70000"), "sysconfig.port", "not in the range"),
        (changed(("sysconfig", "port"), "abc"), "sysconfig.port", "'abc' is not a port number"),
        (changed(("sysconfig", "port"), "-5"), "sysconfig.port", "not a port number"),
        (changed(("sysconfig", "port"), True), "sysconfig.port", "must be a port number"),
        (changed(("sysconfig", "port"), 22.5), "sysconfig.port", "integer"),
        (changed(("database", "port"), "0"), "database.port", "0 is not in the range 1 to"),
        (changed(("database", "port"), "70000"), "database.port", "not in the range"),
        (changed(("database", "port"), "abc"), "database.port", "not a port number"),
        (changed(("database", "host"), []), "database.host", "at least 1 item"),
        (changed(("database", "host"), ["a", 3]), "database.host[1]", "valid string"),
        (changed(("database", "username"), 5), "database.username", "valid string"),
        (removed(("database", "username")), "database.username", "required key is missing"),
        (removed(("database",)), "database", "required key is missing"),
        (changed(("database", "driver"), "pg"), "database.driver", "unknown key"),
        (changed(("sysconfig", "listen"), "x"), "sysconfig.listen", "unknown key"),
        (changed(("sysconfig", "logfile"), 1), "sysconfig.logfile", "valid string"),
        (changed(("extra",), {}), "extra", "unknown key"),
        (changed(("postmaps",), {}), "postmaps", "valid list"),
        (changed(("postmaps", 1, "column"), "c"), "postmaps[1].column", "unknown key"),
        (changed(("postmaps", 1, "tabel"), "t"), "postmaps[1].tabel", 'did you mean "table"?'),
        (changed(("database", "usrname"), "u"), "database.usrname", 'did you mean "username"?'),
        (changed(("sysconfig", "log_file"), "x"), "sysconfig.log_file", 'did you mean "logfile"?'),
        (removed(("postmaps", 0, "table")), "postmaps[0].table", "required key is missing"),
        (removed(("postmaps", 1, "key")), "postmaps[1].key", "required key is missing"),
        (changed(("postmaps", 0, "value"), 1), "postmaps[0].value", "valid string"),
    ],
)
def test_legacy_shape_rejected(data: dict[str, Any], path: str, reason: str) -> None:
    found_path, message = only_problem(data)
    assert found_path == path
    assert reason in message


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        (
            changed(("postmaps", 0, "table"), "blackwhite; DROP TABLE x"),
            "postmaps[0].table",
            "must be a plain SQL identifier (letters, digits, underscore)",
        ),
        (changed(("postmaps", 1, "table"), "a-b"), "postmaps[1].table", "plain SQL identifier"),
        (changed(("postmaps", 1, "key"), '"q"'), "postmaps[1].key", "plain SQL identifier"),
        (changed(("postmaps", 0, "value"), "a b"), "postmaps[0].value", "plain SQL identifier"),
        (changed(("postmaps", 0, "reason"), "r;"), "postmaps[0].reason", "plain SQL identifier"),
        (changed(("postmaps", 1, "service"), "a b"), "postmaps[1].service", "whitespace"),
        (changed(("postmaps", 1, "service"), ""), "postmaps[1].service", "must not be empty"),
        (changed(("postmaps", 1, "database"), "d b"), "postmaps[1].database", "database name"),
        (changed(("database", "host"), ["ok", "bad host"]), "database.host[1]", "invalid host"),
        (changed(("database", "host"), "h:0"), "database.host[0]", "not in the range"),
        (changed(("database", "username"), ""), "database.username", "must not be empty"),
        (changed(("sysconfig", "run_as_user"), "a b"), "sysconfig.run_as_user", "whitespace"),
        (changed(("sysconfig", "logfile"), "/x\0"), "sysconfig.logfile", "NUL"),
    ],
)
def test_converted_config_rejected_with_legacy_path(
    data: dict[str, Any], path: str, reason: str
) -> None:
    found_path, message = only_problem(data)
    assert found_path == path
    assert reason in message


def test_duplicate_service() -> None:
    data = sample()
    data["postmaps"] += [
        {"service": "other", "database": "dbmail", "table": "t", "key": "k"},
        {"service": "blacklist", "database": "dbmail", "table": "t", "key": "k"},
    ]
    assert only_problem(data) == ("postmaps[3].service", "duplicate map name 'blacklist'")


def test_problems_are_collected() -> None:
    data = sample()
    data["postmaps"][0]["table"] = "a-b"
    data["postmaps"][1]["key"] = "c d"
    data["postmaps"].append(copy.deepcopy(data["postmaps"][1]))
    assert set(legacy_problems(data)) == {
        "postmaps[0].table",
        "postmaps[1].key",
        "postmaps[2].service",
    }


def test_shared_server_problem_is_reported_once() -> None:
    data = changed(("database", "host"), ["bad host"])
    assert legacy_problems(data) == {
        "database.host[0]": "invalid host 'bad host' in 'bad host': expected an IPv4 address, "
        "a bracketed IPv6 address or a DNS name"
    }


@pytest.mark.parametrize("data", [[], "x", None, 3, {"database": "db"}])
def test_not_an_object(data: object) -> None:
    with pytest.raises(ConfigError):
        from_legacy(data, fallback_port=None)


def test_result_is_a_config() -> None:
    assert isinstance(from_legacy(sample(), fallback_port=None), Config)
