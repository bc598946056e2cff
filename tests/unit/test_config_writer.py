"""Writing TOML: masking of secrets and the write/parse round trip."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockmapd.config import Config, DatabaseConfig, parse_config, to_toml
from sockmapd.config.writer import SECRET_MASK

# Files that exist wherever the tests run, standing in for password and TLS files.
THIS_FILE = Path(__file__).resolve()
OTHER_FILE = THIS_FILE.parent / "__init__.py"
PASSWORD_VAR = "SOCKMAPD_TEST_WRITER_PASSWORD"


@pytest.fixture(autouse=True)
def password_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "from env")


FULL_TOML = (
    """\
[server]
listen = ["tcp://127.0.0.1:2224", "tcp://[::1]:2224", "unix:///run/sockmapd/sockmapd.sock"]
allow = ["192.0.2.0/24", "2001:db8::1", "::1"]
max_connections = 20
max_request_bytes = 5000
max_reply_bytes = 7000
idle_timeout = 12.5
request_timeout = 99
shutdown_grace = 2.5
unix_mode = "660"
unix_owner = "sockmapd"
unix_group = "1001"
run_as_user = "nobody"
run_as_group = "nogroup"
allow_root = true
[log]
level = "warning"
file = "/var/log/sockmapd.log"
[databases.mail]
url = "sqlite:////var/lib/sockmapd/mail.sqlite3"
init_sql = "/usr/share/sockmapd/quickstart.sql"
[databases.pg]
url = "postgres://reader:p%40ss@[::1]:5433/mail"
[databases.legacydb]
driver = "mysql"
hosts = ["db1.example.org", "db2.example.org:3307"]
port = 3306
name = "postfix"
user = "postmap"
password = "se\\"cret"
[databases.local]
driver = "sqlite"
name = "/srv/local.db"
connect_timeout = 0.5
pool_size = 1
[databases.secure]
driver = "postgresql"
hosts = ["pg1.example.org", "[2001:db8::5]:5433", "unix:/run/postgresql/.s.PGSQL.5432"]
name = "mail"
user = "reader"
password_file = "THIS_FILE"
tls = true
tls_ca_file = "THIS_FILE"
tls_cert_file = "OTHER_FILE"
tls_key_file = "THIS_FILE"
tls_verify = false
connect_timeout = 1.5
query_timeout = 2
pool_size = 20
max_overflow = 3
retry_interval = 30
host_order = "random"
target_session_attrs = "read-write"
[databases.envpw]
url = "mysql://postmap@db3.example.org/postfix?unix_socket=/run/mysqld/mysqld.sock"
password_env = "PASSWORD_VAR"
tls = true
max_overflow = 1000
[maps.recipient]
database = "mail"
table = "aliases"
key = "address"
value = "destination"
reason = "reason"
[maps."virtual.domains"]
database = "legacydb"
table = "postfix.domains"
key = "domain"
""".replace("THIS_FILE", str(THIS_FILE))
    .replace("OTHER_FILE", str(OTHER_FILE))
    .replace("PASSWORD_VAR", PASSWORD_VAR)
)


def test_full_round_trip() -> None:
    config = parse_config(FULL_TOML)
    assert parse_config(to_toml(config, reveal_secrets=True)) == config


def test_output_is_canonical_and_stable() -> None:
    config = parse_config(FULL_TOML)
    text = to_toml(config, reveal_secrets=True)
    assert to_toml(parse_config(text), reveal_secrets=True) == text
    assert text.startswith("[server]\n")
    data = tomllib.loads(text)
    assert list(data) == ["server", "log", "databases", "maps"]
    assert data["databases"]["mail"]["url"] == "sqlite+aiosqlite:////var/lib/sockmapd/mail.sqlite3"
    assert data["databases"]["pg"]["url"] == ("postgresql+asyncpg://reader:p%40ss@[::1]:5433/mail")
    assert data["server"]["request_timeout"] == 99.0
    assert data["server"]["allow"] == ["192.0.2.0/24", "2001:db8::1/128", "::1/128"]
    assert data["server"]["unix_mode"] == "0660"
    assert data["server"]["allow_root"] is True
    assert "value" not in data["maps"]["virtual.domains"]
    assert data["databases"]["secure"] == {
        "driver": "postgresql",
        "hosts": ["pg1.example.org", "[2001:db8::5]:5433", "unix:/run/postgresql/.s.PGSQL.5432"],
        "name": "mail",
        "user": "reader",
        "password_file": str(THIS_FILE),
        "tls": True,
        "tls_ca_file": str(THIS_FILE),
        "tls_cert_file": str(OTHER_FILE),
        "tls_key_file": str(THIS_FILE),
        "tls_verify": False,
        "connect_timeout": 1.5,
        "query_timeout": 2.0,
        "pool_size": 20,
        "max_overflow": 3,
        "retry_interval": 30.0,
        "host_order": "random",
        "target_session_attrs": "read-write",
    }
    assert data["databases"]["envpw"] == {
        "url": "mysql+asyncmy://postmap@db3.example.org/postfix"
        "?unix_socket=%2Frun%2Fmysqld%2Fmysqld.sock",
        "password_env": PASSWORD_VAR,
        "tls": True,
        "max_overflow": 1000,
    }
    assert data["databases"]["local"] == {
        "driver": "sqlite",
        "name": "/srv/local.db",
        "connect_timeout": 0.5,
        "pool_size": 1,
    }


def test_default_connection_settings_are_not_written() -> None:
    text = to_toml(parse_config("[databases.m]\ndriver = 'mysql'\nhosts = ['db']\n"))
    assert tomllib.loads(text)["databases"]["m"] == {"driver": "mysql", "hosts": ["db"]}
    explicit = (
        "[databases.m]\ndriver = 'mysql'\nhosts = ['db']\ntls = false\nconnect_timeout = 3\n"
        "query_timeout = 5.0\npool_size = 10\nmax_overflow = 0\nretry_interval = 60\n"
        "host_order = 'in_order'\n"
    )
    assert to_toml(parse_config(explicit)) == text


def test_pgbouncer_is_written_when_set() -> None:
    text = "[databases.m]\nurl = 'postgresql://u@bouncer:6432/mail'\npgbouncer = true\n"
    config = parse_config(text)
    written = to_toml(config)
    assert tomllib.loads(written)["databases"]["m"]["pgbouncer"] is True
    assert parse_config(written) == config
    unset = to_toml(parse_config(text.replace("true", "false")))
    assert "pgbouncer" not in tomllib.loads(unset)["databases"]["m"]


def test_password_file_and_env_are_written_unmasked() -> None:
    config = parse_config(FULL_TOML)
    data = tomllib.loads(to_toml(config))
    assert data["databases"]["secure"]["password_file"] == str(THIS_FILE)
    assert data["databases"]["envpw"]["password_env"] == PASSWORD_VAR
    assert "from env" not in to_toml(config, reveal_secrets=True)
    assert config.databases["envpw"].secret() == "from env"


def test_no_note_for_password_file_or_env() -> None:
    text = to_toml(
        parse_config(
            f"[databases.f]\nurl = 'mysql://u@h/d'\npassword_file = '{THIS_FILE}'\n"
            "[databases.e]\ndriver = 'postgresql'\nhosts = ['h']\n"
            f"password_env = '{PASSWORD_VAR}'\n"
        )
    )
    assert "--show-secrets" not in text
    assert SECRET_MASK not in text


def test_relative_password_and_tls_files_survive_without_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("pw", "ca.pem"):
        (tmp_path / name).write_text("x\n")
    config = parse_config(
        "[databases.m]\ndriver = 'mysql'\nhosts = ['h']\npassword_file = 'pw'\n"
        "tls = true\ntls_ca_file = 'ca.pem'\n"
    )
    database = config.databases["m"]
    assert (database.password_file, database.tls_ca_file) == (Path("pw"), Path("ca.pem"))
    assert parse_config(to_toml(config)) == config


def test_secrets_are_masked_by_default() -> None:
    config = parse_config(FULL_TOML)
    text = to_toml(config)
    assert 'se\\"cret' not in text
    assert "p%40ss" not in text
    data = tomllib.loads(text)
    assert data["databases"]["legacydb"]["password"] == SECRET_MASK
    assert data["databases"]["pg"]["url"] == (
        f"postgresql+asyncpg://reader:{SECRET_MASK}@[::1]:5433/mail"
    )
    note = f'# Passwords are masked as "{SECRET_MASK}"; run with --show-secrets to write them.'
    lines = text.splitlines()
    assert lines.count(note) == 1
    assert lines[lines.index(note) + 1].startswith("[databases.")


def test_masked_output_still_parses() -> None:
    config = parse_config(FULL_TOML)
    reloaded = parse_config(to_toml(config))
    assert reloaded.server == config.server
    assert reloaded.maps == config.maps
    pg = reloaded.databases["pg"].sqlalchemy_url()
    assert pg.password == SECRET_MASK
    assert reloaded.databases["secure"] == config.databases["secure"]
    assert reloaded.databases["envpw"] == config.databases["envpw"]


def test_no_note_without_secrets() -> None:
    text = to_toml(parse_config("[databases.m]\nurl = 'mysql://u@h/d'\n"))
    assert "--show-secrets" not in text


def test_default_config_writes_nothing() -> None:
    assert to_toml(Config()) == ""
    assert parse_config(to_toml(Config())) == Config()


def test_only_settings_that_differ_from_their_defaults_are_written() -> None:
    text = to_toml(
        parse_config(
            "[server]\nlisten = ['tcp://127.0.0.1:2224']\nmax_connections = 1000\n"
            "idle_timeout = 61\nallow_root = false\n[log]\nlevel = 'info'\nformat = 'json'\n"
            "[databases.m]\nurl = 'sqlite:////m.db'\npool_size = 10\ntls = false\n"
            "[maps.r]\ndatabase = 'm'\ntable = 't'\nkey = 'k'\ncache_size = 10000\n"
            "recipient_delimiter = '+'\nkey_transform = []\n"
        )
    )
    assert tomllib.loads(text) == {
        "server": {"idle_timeout": 61.0},
        "log": {"format": "json"},
        "databases": {"m": {"url": "sqlite+aiosqlite:////m.db"}},
        "maps": {"r": {"database": "m", "table": "t", "key": "k"}},
    }


def test_include_defaults_writes_every_setting() -> None:
    text = to_toml(Config(), include_defaults=True)
    assert tomllib.loads(text) == {
        "server": {
            "listen": ["tcp://127.0.0.1:2224"],
            "allow": ["127.0.0.0/8", "::1/128"],
            "max_connections": 1000,
            "max_request_bytes": 10000,
            "max_reply_bytes": 100000,
            "idle_timeout": 60.0,
            "request_timeout": 30.0,
            "shutdown_grace": 10.0,
            "allow_root": False,
            "workers": 1,
        },
        "log": {
            "level": "info",
            "format": "text",
            "target": "stderr",
            "syslog_facility": "mail",
            "syslog_address": "/dev/log",
            "log_keys": True,
        },
    }
    assert parse_config(text) == Config()


def test_include_defaults_writes_every_database_and_map_setting() -> None:
    config = parse_config(
        "[databases.m]\nurl = 'sqlite:////m.db'\n"
        "[databases.p]\ndriver = 'postgresql'\nhosts = ['db']\ntls = true\n"
        "[maps.r]\ndatabase = 'm'\ntable = 't'\nkey = 'k'\n"
    )
    text = to_toml(config, include_defaults=True)
    data = tomllib.loads(text)
    connection = {
        "connect_timeout": 3.0,
        "query_timeout": 5.0,
        "pool_size": 10,
        "max_overflow": 0,
        "pool_recycle": 1800.0,
        "retry_interval": 60.0,
        "host_order": "in_order",
        "pgbouncer": False,
    }
    # tls_verify is refused without TLS, even at its default: written only with tls = true.
    assert data["databases"] == {
        "m": {"url": "sqlite+aiosqlite:////m.db", "hosts": [], "tls": False, **connection},
        "p": {
            "driver": "postgresql",
            "hosts": ["db"],
            "tls": True,
            "tls_verify": True,
            **connection,
        },
    }
    assert data["maps"]["r"] == {
        "database": "m",
        "table": "t",
        "key": "k",
        "expansion_limit": 0,
        "domain": [],
        "key_transform": [],
        "recipient_delimiter": "+",
        "search": [],
        "result_columns": "all",
        "cache_ttl": 0.0,
        "negative_cache_ttl": 0.0,
        "cache_size": 10000,
        "stale_ttl": 0.0,
    }
    assert parse_config(text) == config
    assert to_toml(parse_config(text)) == to_toml(config)


def test_relative_paths_survive_without_base_dir() -> None:
    config = parse_config(
        "[log]\nfile = 'rel.log'\n[databases.m]\nurl = 'sqlite:///m.db'\ninit_sql = 'q.sql'\n"
    )
    assert config.log.file == Path("rel.log")
    assert parse_config(to_toml(config)) == config


# ---------------------------------------------------------------- generated configurations

ports = st.integers(min_value=1, max_value=65535)
names = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z]{2,6}){0,2}", fullmatch=True)
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=20)
absolute_paths = text.map(lambda s: "/" + s.strip().replace("\0", ""))
map_names = st.text(
    st.characters(exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters=":\x85"),
    min_size=1,
    max_size=20,
).filter(lambda s: not any(c.isspace() or not c.isprintable() for c in s))

listen_addresses = st.one_of(
    st.builds(lambda ip, p: f"tcp://{ip}:{p}", st.ip_addresses(v=4), ports),
    st.builds(lambda ip, p: f"tcp://[{ip}]:{p}", st.ip_addresses(v=6), ports),
    st.builds(lambda h, p: f"tcp://{h}:{p}", hostnames, ports),
    st.from_regex(r"/[a-z0-9/._-]{1,40}", fullmatch=True).map(lambda p: "unix://" + p),
)
host_entries = st.one_of(
    hostnames,
    st.builds(lambda h, p: f"{h}:{p}", hostnames, ports),
    st.builds(lambda ip, p: f"[{ip}]:{p}", st.ip_addresses(v=6), ports),
    st.from_regex(r"/[a-z0-9/._-]{1,40}", fullmatch=True).map(lambda p: "unix:" + p),
)
seconds = st.floats(min_value=0.001, max_value=99.99, allow_nan=False, allow_infinity=False)
existing_files = st.sampled_from([str(THIS_FILE), str(OTHER_FILE)])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def without_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def connection_settings(*, tls: bool, postgresql: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Return optional connection settings valid for a database of the given kind."""
    tls_cert = existing_files if tls else st.none()
    return st.builds(
        lambda cert, key, **values: without_none(
            tls_cert_file=cert, tls_key_file=None if cert is None else key, **values
        ),
        optional(tls_cert),
        existing_files,
        tls=st.just(True) if tls else optional(st.just(False)),
        tls_ca_file=optional(existing_files) if tls else st.none(),
        tls_verify=optional(st.booleans()) if tls else st.none(),
        connect_timeout=optional(seconds),
        query_timeout=optional(seconds),
        pool_size=optional(st.integers(min_value=1, max_value=1000)),
        max_overflow=optional(st.integers(min_value=0, max_value=1000)),
        retry_interval=optional(seconds),
        host_order=optional(st.sampled_from(["in_order", "random"])),
        target_session_attrs=optional(
            st.sampled_from(
                ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]
            )
        )
        if postgresql
        else st.none(),
    )


def server_settings(driver: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.booleans().flatmap(
        lambda tls: connection_settings(tls=tls, postgresql=driver.startswith("postgres"))
    )


password_sources = st.one_of(
    st.builds(lambda p: {"password": p}, text),
    st.builds(lambda p: {"password_file": p}, existing_files),
    st.just({"password_env": PASSWORD_VAR}),
    st.just({}),
)


networks = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses().flatmap(
        lambda ip: st.integers(min_value=0, max_value=ip.max_prefixlen).map(
            lambda prefix: str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
        )
    ),
)
unix_settings = st.builds(
    without_none,
    unix_mode=optional(st.from_regex(r"[0-7]{3}", fullmatch=True)),
    unix_owner=optional(identifiers | st.from_regex(r"[0-9]{1,6}", fullmatch=True)),
    unix_group=optional(identifiers),
)
servers = st.builds(
    lambda listen, unix, **values: without_none(
        listen=listen,
        **(unix if any(a.startswith("unix://") for a in listen) else {}),
        **values,
    ),
    st.lists(listen_addresses, min_size=1, max_size=3, unique_by=str.lower),
    unix_settings,
    allow=optional(st.lists(networks, max_size=4, unique_by=lambda n: ipaddress.ip_network(n))),
    max_connections=optional(st.integers(min_value=1, max_value=1_000_000)),
    max_request_bytes=st.integers(min_value=1, max_value=10_000_000),
    max_reply_bytes=st.integers(min_value=1, max_value=10_000_000),
    idle_timeout=seconds,
    request_timeout=seconds,
    shutdown_grace=optional(st.floats(min_value=0, max_value=1e6, allow_nan=False)),
    run_as_user=optional(identifiers),
    run_as_group=optional(identifiers),
    allow_root=optional(st.booleans()),
    workers=optional(st.integers(min_value=1, max_value=64)),
)
log_targets = st.one_of(
    st.builds(
        lambda file, explicit: without_none(file=file, target="file" if explicit else None),
        absolute_paths.filter(lambda p: p.strip()),
        st.booleans(),
    ),
    st.builds(
        lambda facility, address: without_none(
            target="syslog", syslog_facility=facility, syslog_address=address
        ),
        optional(st.sampled_from(["mail", "daemon", "local0", "local7"])),
        optional(st.sampled_from(["/dev/log", "/run/systemd/journal/syslog", "192.0.2.9:514"])),
    ),
    st.builds(lambda explicit: {"target": "stderr"} if explicit else {}, st.booleans()),
)
key_privacy = st.one_of(
    st.builds(lambda keys: without_none(log_keys=keys), optional(st.booleans())),
    st.just({"log_keys": False, "key_salt_file": str(THIS_FILE)}),
)
logs = st.builds(
    lambda target, privacy, **values: without_none(**target, **privacy, **values),
    log_targets,
    key_privacy,
    level=st.sampled_from(["debug", "info", "warning", "error"]),
    format=optional(st.sampled_from(["text", "json"])),
)
url_databases = st.one_of(
    st.builds(
        lambda path, init: without_none(url=f"sqlite+aiosqlite:///{path}", init_sql=init),
        absolute_paths.filter(lambda p: p != "/:memory:" and "?" not in p and "#" not in p),
        optional(absolute_paths.filter(lambda p: p.strip())),
    ),
    st.sampled_from(["mysql", "mariadb", "postgresql", "postgres", "mysql+asyncmy"]).flatmap(
        lambda scheme: (
            st.builds(
                lambda user, password, host, port, db, extra: {
                    "url": f"{scheme}://{user}{password}@{host}:{port}/{db}",
                    **extra,
                },
                identifiers,
                st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True).map(lambda p: ":" + p),
                hostnames,
                ports,
                identifiers,
                server_settings(scheme),
            )
            | st.builds(
                lambda user, host, db, secret, extra: {
                    "url": f"{scheme}://{user}@{host}/{db}",
                    **secret,
                    **extra,
                },
                identifiers,
                hostnames,
                identifiers,
                password_sources.filter(lambda s: "password" not in s),
                server_settings(scheme),
            )
        )
    ),
)
structured_databases = st.one_of(
    st.sampled_from(["mysql", "postgresql"]).flatmap(
        lambda driver: st.builds(
            lambda hosts, port, name, user, secret, extra: without_none(
                driver=driver, hosts=hosts, port=port, name=name, user=user, **secret, **extra
            ),
            st.lists(host_entries, min_size=1, max_size=3),
            optional(ports),
            optional(identifiers),
            optional(identifiers),
            password_sources,
            server_settings(driver),
        )
    ),
    st.builds(
        lambda name, init, extra: without_none(driver="sqlite", name=name, init_sql=init, **extra),
        absolute_paths.filter(lambda p: p != "/:memory:"),
        optional(absolute_paths.filter(lambda p: p.strip())),
        connection_settings(tls=False, postgresql=False),
    ),
)


@st.composite
def configs(draw: st.DrawFn) -> Config:
    databases = draw(st.dictionaries(names, url_databases | structured_databases, max_size=3))
    maps: dict[str, Any] = {}
    if databases:
        entries = st.builds(
            lambda database, table, key, value, reason: without_none(
                database=database, table=table, key=key, value=value, reason=reason
            ),
            st.sampled_from(sorted(databases)),
            identifiers | st.builds(lambda s, t: f"{s}.{t}", identifiers, identifiers),
            identifiers,
            optional(identifiers),
            optional(identifiers),
        )
        maps = draw(st.dictionaries(map_names, entries, max_size=4))
    return Config.model_validate(
        {"server": draw(servers), "log": draw(logs), "databases": databases, "maps": maps}
    )


# The autouse fixture only sets an environment variable, the same for every example.
HYPOTHESIS_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=200, suppress_health_check=HYPOTHESIS_CHECKS)
@given(configs(), st.booleans())
def test_generated_round_trip(config: Config, include_defaults: bool) -> None:
    text = to_toml(config, reveal_secrets=True, include_defaults=include_defaults)
    assert parse_config(text) == config
    assert (
        to_toml(parse_config(text), reveal_secrets=True, include_defaults=include_defaults) == text
    )
    written = tomllib.loads(text)
    for model, table in _tables(config, written):
        fields = type(model).model_fields
        at_default = {k for k, v in table.items() if v == fields[k].get_default()}
        unset = {k for k in fields if getattr(model, k) is None}
        if include_defaults:
            # Every setting with a value is there; tls_verify only with TLS, where it applies.
            missing = set(fields) - set(table) - unset
            assert missing <= {"tls_verify"}
            assert not missing or getattr(model, "tls", None) is False
        else:
            assert not at_default, at_default


def _tables(config: Config, written: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Return each section and entry of config with the TOML table written for it."""
    pairs: list[tuple[Any, dict[str, Any]]] = [
        (getattr(config, section), written.get(section, {}))
        for section in ("server", "log", "metrics")
    ]
    pairs += [(d, written["databases"][n]) for n, d in config.databases.items()]
    pairs += [(m, written["maps"][n]) for n, m in config.maps.items()]
    return pairs


@settings(max_examples=100, suppress_health_check=HYPOTHESIS_CHECKS)
@given(configs())
def test_generated_masked_output_parses(config: Config) -> None:
    reloaded = parse_config(to_toml(config))
    assert reloaded.maps == config.maps
    assert reloaded.server == config.server
    assert set(reloaded.databases) == set(config.databases)
    for name, database in config.databases.items():
        # Everything but the password itself survives masking.
        masked = {"password", "url"}
        assert _without(reloaded.databases[name], masked) == _without(database, masked)


def _without(database: DatabaseConfig, fields: set[str]) -> dict[str, Any]:
    return database.model_dump(exclude=fields)


def test_log_options_written_only_when_not_default() -> None:
    # A file alone implies target = "file", which differs from the default "stderr".
    assert tomllib.loads(to_toml(parse_config("[log]\nfile = '/var/log/s.log'\n")))["log"] == {
        "target": "file",
        "file": "/var/log/s.log",
    }
    text = to_toml(
        parse_config(
            "[log]\nformat = 'json'\ntarget = 'syslog'\nsyslog_facility = 'local3'\n"
            f"log_keys = false\nkey_salt_file = '{THIS_FILE}'\n"
        )
    )
    assert tomllib.loads(text)["log"] == {
        "format": "json",
        "target": "syslog",
        "syslog_facility": "local3",
        "log_keys": False,
        "key_salt_file": str(THIS_FILE),
    }
