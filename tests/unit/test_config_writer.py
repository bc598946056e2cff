"""Writing TOML: masking of secrets and the write/parse round trip."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockmapd.config import Config, parse_config, to_toml
from sockmapd.config.writer import SECRET_MASK

FULL_TOML = """\
[server]
listen = ["tcp://127.0.0.1:2224", "tcp://[::1]:2224", "unix:///run/sockmapd/sockmapd.sock"]
max_request_bytes = 5000
max_reply_bytes = 7000
idle_timeout = 12.5
request_timeout = 99
run_as_user = "nobody"
run_as_group = "nogroup"
[log]
level = "warning"
file = "/var/log/sockmapd.log"
[databases.mail]
url = "sqlite:////var/lib/sockmapd/mail.sqlite3"
init_sql = "/usr/share/sockmapd/quickstart.sql"
[databases.pg]
url = "postgres://reader:p%40ss@[::1]:5433/mail?ssl=require"
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
"""


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
    assert data["databases"]["pg"]["url"] == (
        "postgresql+asyncpg://reader:p%40ss@[::1]:5433/mail?ssl=require"
    )
    assert data["server"]["request_timeout"] == 99.0
    assert "value" not in data["maps"]["virtual.domains"]


def test_secrets_are_masked_by_default() -> None:
    config = parse_config(FULL_TOML)
    text = to_toml(config)
    assert 'se\\"cret' not in text
    assert "p%40ss" not in text
    data = tomllib.loads(text)
    assert data["databases"]["legacydb"]["password"] == SECRET_MASK
    assert data["databases"]["pg"]["url"] == (
        f"postgresql+asyncpg://reader:{SECRET_MASK}@[::1]:5433/mail?ssl=require"
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


def test_no_note_without_secrets() -> None:
    text = to_toml(parse_config("[databases.m]\nurl = 'mysql://u@h/d'\n"))
    assert "--show-secrets" not in text


def test_default_config_writes_every_server_setting() -> None:
    data = tomllib.loads(to_toml(Config()))
    assert data == {
        "server": {
            "listen": ["tcp://127.0.0.1:2224"],
            "max_request_bytes": 100000,
            "max_reply_bytes": 100000,
            "idle_timeout": 60.0,
            "request_timeout": 30.0,
        },
        "log": {"level": "info"},
    }


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
)
seconds = st.floats(min_value=0.001, max_value=99.99, allow_nan=False, allow_infinity=False)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def without_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


servers = st.builds(
    without_none,
    listen=st.lists(listen_addresses, min_size=1, max_size=3, unique_by=str.lower),
    max_request_bytes=st.integers(min_value=1, max_value=10_000_000),
    max_reply_bytes=st.integers(min_value=1, max_value=10_000_000),
    idle_timeout=seconds,
    request_timeout=seconds,
    run_as_user=optional(identifiers),
    run_as_group=optional(identifiers),
)
logs = st.builds(
    without_none,
    level=st.sampled_from(["debug", "info", "warning", "error"]),
    file=optional(absolute_paths.filter(lambda p: p.strip())),
)
url_databases = st.one_of(
    st.builds(
        lambda path, init: without_none(url=f"sqlite+aiosqlite:///{path}", init_sql=init),
        absolute_paths.filter(lambda p: p != "/:memory:" and "?" not in p and "#" not in p),
        optional(absolute_paths.filter(lambda p: p.strip())),
    ),
    st.builds(
        lambda scheme, user, password, host, port, db: (
            {"url": f"{scheme}://{user}:{password}@{host}:{port}/{db}"}
        ),
        st.sampled_from(["mysql", "mariadb", "postgresql", "postgres", "mysql+asyncmy"]),
        identifiers,
        st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True),
        hostnames,
        ports,
        identifiers,
    ),
)
structured_databases = st.one_of(
    st.builds(
        lambda driver, hosts, port, name, user, password: without_none(
            driver=driver, hosts=hosts, port=port, name=name, user=user, password=password
        ),
        st.sampled_from(["mysql", "postgresql"]),
        st.lists(host_entries, min_size=1, max_size=3),
        optional(ports),
        optional(identifiers),
        optional(identifiers),
        optional(text),
    ),
    st.builds(
        lambda name, init: without_none(driver="sqlite", name=name, init_sql=init),
        absolute_paths.filter(lambda p: p != "/:memory:"),
        optional(absolute_paths.filter(lambda p: p.strip())),
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


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_generated_round_trip(config: Config) -> None:
    text = to_toml(config, reveal_secrets=True)
    assert parse_config(text) == config
    assert to_toml(parse_config(text), reveal_secrets=True) == text


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_generated_masked_output_parses(config: Config) -> None:
    reloaded = parse_config(to_toml(config))
    assert reloaded.maps == config.maps
    assert reloaded.server == config.server
    assert set(reloaded.databases) == set(config.databases)
