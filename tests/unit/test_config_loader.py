"""Loading: format detection, syntax errors, unreadable files, fallback port and relative paths."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from sockmapd.config import (
    Config,
    ConfigError,
    DatabaseConfig,
    MapConfig,
    Problem,
    load_config,
    parse_config,
)
from sockmapd.config.loader import MAX_CONFIG_BYTES

CANONICAL_TOML = """\
[server]
listen = ["tcp://127.0.0.1:2224", "tcp://[::1]:2224", "unix:///run/sockmapd/sockmapd.sock"]
max_request_bytes = 100000     # max request payload; default 10000
max_reply_bytes = 100000       # default 100000
idle_timeout = 60.0            # seconds, >0
request_timeout = 30.0         # seconds, >0 and < 100 (Postfix's own fixed timeout is 100 s)
run_as_user = "nobody"         # optional
run_as_group = "nogroup"       # optional
[log]
level = "info"                 # debug, info, warning, error
file = "/var/log/sockmapd.log" # optional; stderr when absent
[databases.mail]
url = "sqlite+aiosqlite:///var/lib/sockmapd/mail.sqlite3"
init_sql = "quickstart.sql"    # optional, SQLite only
[databases.legacydb]           # structured form (alternative to url)
driver = "mysql"               # mysql | postgresql | sqlite
hosts = ["db1.example.org", "db2.example.org:3307"]
port = 3306                    # optional default port for hosts without one
name = "postfix"               # database/schema name
user = "postmap"
password = "secret"
[maps.recipient]
database = "mail"
table = "aliases"              # identifier, or schema.identifier
key = "address"
value = "destination"          # optional column
reason = "reason"              # optional column
"""

MINIMAL_LEGACY = '{"database": {"host": ["db"], "username": "u"}}'


def parse_problems(text: str, **kwargs: Any) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.conf", **kwargs)
    assert info.value.source == "test.conf"
    return info.value.problems


def only_problem(text: str, **kwargs: Any) -> Problem:
    [problem] = parse_problems(text, **kwargs)
    return problem


# ---------------------------------------------------------------- TOML


def test_canonical_toml() -> None:
    config = parse_config(CANONICAL_TOML, base_dir=Path("/etc/sockmapd"))
    assert config.server.listen == [
        "tcp://127.0.0.1:2224",
        "tcp://[::1]:2224",
        "unix:///run/sockmapd/sockmapd.sock",
    ]
    assert (config.server.run_as_user, config.server.run_as_group) == ("nobody", "nogroup")
    assert config.log.file == Path("/var/log/sockmapd.log")
    # Three slashes make a relative SQLite path, resolved against the config's directory.
    assert config.databases["mail"] == DatabaseConfig(
        url="sqlite+aiosqlite:////etc/sockmapd/var/lib/sockmapd/mail.sqlite3",
        init_sql=Path("/etc/sockmapd/quickstart.sql"),
    )
    assert config.databases["legacydb"] == DatabaseConfig(
        driver="mysql",
        hosts=["db1.example.org", "db2.example.org:3307"],
        port=3306,
        name="postfix",
        user="postmap",
        password=SecretStr("secret"),
    )
    assert config.maps == {
        "recipient": MapConfig(
            database="mail", table="aliases", key="address", value="destination", reason="reason"
        )
    }


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "\ufeff"])
def test_empty_toml_is_the_default_config(text: str) -> None:
    assert parse_config(text) == Config()


def test_toml_syntax_error_has_line_and_column() -> None:
    problem = only_problem('[server]\nidle_timeout = 5\nlisten = ["tcp://h:1",,]\n')
    assert problem == Problem("", "line 3 column 23: Invalid value")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # The text ends after a line break: the end is the start of the line after it.
        (
            '[server]\nlisten = ["tcp://127.0.0.1:1",\n"tcp://[::1]:1"\n',
            "line 4 column 1 (end of file): Unclosed array",
        ),
        (
            "[server]\nlisten = [\n\n# not closed\n\n",
            "line 6 column 1 (end of file): Invalid value",
        ),
        ('[log]\nlevel = "info', "line 2 column 14 (end of file): Unterminated string"),
        (
            "[server",
            "line 1 column 8 (end of file): Expected ']' at the end of a table declaration",
        ),
        ("a", "line 1 column 2 (end of file): Expected '=' after a key in a key/value pair"),
    ],
)
def test_toml_syntax_error_at_the_end_names_the_last_line(text: str, message: str) -> None:
    assert only_problem(text) == Problem("", message)


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "sockmapd.toml"
    path.write_text('[server]\nallow = [\n  "192.0.2.0/24"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 4 column 1 (end of file): Unclosed array"


def test_toml_duplicate_key_is_a_syntax_error() -> None:
    problem = only_problem("[log]\nlevel = 'info'\nlevel = 'debug'\n")
    assert problem.message.startswith("line 3 column ")


def test_toml_deeply_nested_is_an_error() -> None:
    problems = parse_problems("x = " + "[" * 100_000)
    assert len(problems) == 1


MAP_HEAD = "[databases.m]\nurl = 'sqlite:////x.db'\n[maps.recipient]\ndatabase = 'm'\n"


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("bogus = 1\n", "bogus", "unknown key"),
        ("[servers]\n", "servers", 'unknown key (did you mean "server"?)'),
        ("[server]\nport = 2224\n", "server.port", "unknown key"),
        (
            "[server]\nlisten_addr = []\n",
            "server.listen_addr",
            'unknown key (did you mean "listen"?)',
        ),
        (
            "[server]\nmax_conections = 5\n",
            "server.max_conections",
            'unknown key (did you mean "max_connections"?)',
        ),
        ("[log]\nlevels = 'info'\n", "log.levels", 'unknown key (did you mean "level"?)'),
        (
            "[metrics]\nlistn = 'tcp://127.0.0.1:9224'\n",
            "metrics.listn",
            'unknown key (did you mean "listen"?)',
        ),
        (
            "[databases.m]\nurl = 'sqlite:////x.db'\npoolsize = 5\n",
            "databases.m.poolsize",
            'unknown key (did you mean "pool_size"?)',
        ),
        (
            MAP_HEAD + "table = 't'\nkey = 'k'\nvaleu = 'v'\n",
            "maps.recipient.valeu",
            'unknown key (did you mean "value"?)',
        ),
        (
            MAP_HEAD + "table = 't'\nkey = 'k'\nreasn = 'r'\n",
            "maps.recipient.reasn",
            'unknown key (did you mean "reason"?)',
        ),
        # Too far from every map option ("result_columns" is only 0.6 alike): no guess.
        (
            MAP_HEAD + "table = 't'\nkey = 'k'\ncolumn = 'c'\n",
            "maps.recipient.column",
            "unknown key",
        ),
    ],
)
def test_unknown_keys_rejected(text: str, path: str, message: str) -> None:
    assert only_problem(text) == Problem(path, message)


def test_unknown_key_is_reported_with_its_suggestion_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sockmapd.toml"
    path.write_text(MAP_HEAD + "table = 't'\nkey = 'k'\nvaleu = 'v'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f'{path}: maps.recipient.valeu: unknown key (did you mean "value"?)'


def test_toml_native_types_are_not_coerced() -> None:
    problem = only_problem("[server]\nrun_as_user = 1979-05-27\n")
    assert problem.path == "server.run_as_user"


def test_several_problems_and_their_text() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            "[server]\nlisten = ['tcp://h:0']\nidle_timeout = 0\n"
            "[maps.r]\ndatabase = 'nosuch'\ntable = 'aliases; DROP TABLE x'\nkey = 'k'\n",
            "/etc/sockmapd/sockmapd.toml",
        )
    lines = str(info.value).splitlines()
    assert lines == [
        "/etc/sockmapd/sockmapd.toml: server.listen[0]: invalid port in 'tcp://h:0': "
        "0 is not in the range 1 to 65535",
        "/etc/sockmapd/sockmapd.toml: server.idle_timeout: Input should be greater than 0",
        "/etc/sockmapd/sockmapd.toml: maps.r.database: database 'nosuch' is not defined; "
        "no databases are defined",
        "/etc/sockmapd/sockmapd.toml: maps.r.table: 'aliases; DROP TABLE x' must be a plain "
        "SQL identifier (letters, digits, underscore)",
    ]


def test_file_level_problem_text_has_no_path() -> None:
    error = ConfigError("a.toml", [Problem("", "line 1 column 2: oops"), Problem("x.y", "bad")])
    assert str(error) == "a.toml: line 1 column 2: oops\na.toml: x.y: bad"
    assert error.source == "a.toml"


# ---------------------------------------------------------------- JSON detection and errors


@pytest.mark.parametrize("prefix", ["", "  ", "\n\t\n", "\ufeff", "\ufeff \r\n"])
def test_json_detected_after_blank_prefix(prefix: str) -> None:
    config = parse_config(prefix + MINIMAL_LEGACY)
    assert config.server.listen == ["tcp://0.0.0.0:2224"]


def test_json_syntax_error_has_line_and_column() -> None:
    problem = only_problem('{\n  "database": {"host": ["db"],,}\n}')
    assert problem == Problem(
        "", "line 2 column 31: Expecting property name enclosed in double quotes"
    )


def test_json_truncated() -> None:
    problem = only_problem('{"database": ')
    assert problem.message == "line 1 column 14: Expecting value"


def test_json_deeply_nested_is_an_error() -> None:
    problem = only_problem('{"a":' * 100_000)
    assert problem.path == ""


def test_legacy_error_carries_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('{"database": {"host": ["db"], "username": "u"}, "x": 1}', "old.json")
    assert str(info.value) == "old.json: x: unknown key"


def test_toml_that_looks_like_json_is_treated_as_json() -> None:
    problem = only_problem("{server = 1}")
    assert problem.path == ""
    assert problem.message.startswith("line 1 column 2:")


# ---------------------------------------------------------------- fallback port


def test_toml_fallback_port_without_server() -> None:
    assert parse_config("", fallback_port=3000).server.listen == ["tcp://127.0.0.1:3000"]


def test_toml_fallback_port_keeps_other_server_settings() -> None:
    config = parse_config("[server]\nidle_timeout = 5\n", fallback_port=3000)
    assert config.server.listen == ["tcp://127.0.0.1:3000"]
    assert config.server.idle_timeout == 5.0


def test_toml_listen_wins_over_fallback_port() -> None:
    config = parse_config("[server]\nlisten = ['unix:///run/s.sock']\n", fallback_port=3000)
    assert config.server.listen == ["unix:///run/s.sock"]


def test_toml_without_fallback_port_uses_2224() -> None:
    assert parse_config("[server]\n").server.listen == ["tcp://127.0.0.1:2224"]


def test_toml_fallback_port_with_invalid_server_table() -> None:
    assert only_problem("server = 5\n", fallback_port=3000).path == "server"


def test_legacy_fallback_port() -> None:
    assert parse_config(MINIMAL_LEGACY, fallback_port=3000).server.listen == ["tcp://0.0.0.0:3000"]
    with_port = '{"database": {"host": "db", "username": "u"}, "sysconfig": {"port": "2500"}}'
    assert parse_config(with_port, fallback_port=3000).server.listen == ["tcp://0.0.0.0:2500"]


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_invalid_fallback_port(port: int) -> None:
    problem = only_problem("", fallback_port=port)
    assert problem == Problem("", f"fallback port {port} is not in the range 1 to 65535")


# ---------------------------------------------------------------- files


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = write(
        conf_dir / "sockmapd.toml",
        "[log]\nfile = 'log/s.log'\n"
        "[databases.a]\nurl = 'sqlite:///a.db'\ninit_sql = 'sql/init.sql'\n"
        "[databases.b]\ndriver = 'sqlite'\nname = '../b.db'\n"
        "[databases.c]\nurl = 'sqlite:////abs/c.db'\ninit_sql = '/abs/c.sql'\n",
    )
    config = load_config(path)
    assert config.log.file == conf_dir / "log/s.log"
    assert config.databases["a"].url == f"sqlite+aiosqlite:///{conf_dir}/a.db"
    assert config.databases["a"].init_sql == conf_dir / "sql/init.sql"
    assert config.databases["b"].name == str(conf_dir / "../b.db")
    assert config.databases["c"].url == "sqlite+aiosqlite:////abs/c.db"
    assert config.databases["c"].init_sql == Path("/abs/c.sql")


def test_load_resolves_password_and_tls_files_against_the_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "tls").mkdir(parents=True)
    write(conf_dir / "db.password", "s3cret\n")
    for name in ("ca.pem", "client.pem", "client.key"):
        write(conf_dir / "tls" / name, "-----BEGIN PLACEHOLDER-----\n")
    path = write(
        conf_dir / "sockmapd.toml",
        "[databases.pg]\ndriver = 'postgresql'\nhosts = ['pg']\nuser = 'u'\n"
        "password_file = 'db.password'\ntls = true\ntls_ca_file = 'tls/ca.pem'\n"
        "tls_cert_file = 'tls/client.pem'\ntls_key_file = 'tls/client.key'\n",
    )
    database = load_config(path).databases["pg"]
    assert database.password_file == conf_dir / "db.password"
    assert database.secret() == "s3cret"
    assert database.tls_ca_file == conf_dir / "tls/ca.pem"
    assert database.tls_cert_file == conf_dir / "tls/client.pem"
    assert database.tls_key_file == conf_dir / "tls/client.key"


def test_load_reports_every_missing_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOCKMAPD_TEST_UNSET", raising=False)
    path = write(
        tmp_path / "s.toml",
        "[databases.a]\ndriver = 'mysql'\nhosts = ['db']\npassword_file = 'nope'\n"
        "[databases.b]\nurl = 'mysql://u@db/b'\npassword_env = 'SOCKMAPD_TEST_UNSET'\n"
        "tls = true\ntls_ca_file = 'ca.pem'\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [
        f"{path}: databases.a.password_file: cannot read {tmp_path / 'nope'}: "
        "No such file or directory",
        f"{path}: databases.b.password_env: environment variable SOCKMAPD_TEST_UNSET is not set",
        f"{path}: databases.b.tls_ca_file: cannot read {tmp_path / 'ca.pem'}: "
        "No such file or directory",
    ]


def test_load_with_relative_config_path_stores_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "s.toml", "[log]\nfile = 's.log'\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("s.toml"))
    assert config.log.file == tmp_path / "s.log"
    assert config.log.file is not None
    assert config.log.file.is_absolute()


def test_load_legacy_file(tmp_path: Path) -> None:
    path = write(tmp_path / "sockmapd.json", MINIMAL_LEGACY)
    assert load_config(path, fallback_port=2500).server.listen == ["tcp://0.0.0.0:2500"]


def test_load_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "[server]\nidle_timeout = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: server.idle_timeout: Input should be greater than 0"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the file: No such file or directory"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.problems == [Problem("", "cannot read the file: Is a directory")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", "")
    path.chmod(0)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [Problem("", "cannot read the file: Permission denied")]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"[log]\nfile = '/var/log/\xe9t\xe9.log'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [Problem("", "line 2 column 18: the file is not valid UTF-8")]


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_load_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"\xef\xbb\xbf[log]\nlevel = 'debug'\n")
    assert load_config(path).log.level == "debug"


# ---------------------------------------------------------------- nothing but ConfigError escapes


def assert_parses_or_config_error(text: str) -> None:
    try:
        result = parse_config(text, "fuzz", base_dir=Path("/etc/sockmapd"))
    except ConfigError as exc:
        error = exc
    else:
        assert isinstance(result, Config)
        return
    assert error.problems
    assert all(isinstance(p, Problem) for p in error.problems)
    assert str(error)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    assert_parses_or_config_error(text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["sqlite:///x.db", "mysql://u:p@h/d", "tcp://h:1", "h:0", "t"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "server",
                    "log",
                    "databases",
                    "maps",
                    "listen",
                    "url",
                    "driver",
                    "hosts",
                    "name",
                    "database",
                    "host",
                    "port",
                    "username",
                    "sysconfig",
                    "postmaps",
                    "service",
                    "table",
                    "key",
                    "init_sql",
                    "file",
                    "m",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_arbitrary_json_documents(document: dict[str, Any]) -> None:
    assert_parses_or_config_error(json.dumps(document))


def _toml_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_safe(v) for v in value if v is not None]
    return value


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_arbitrary_toml_documents(document: dict[str, Any]) -> None:
    try:
        text = tomli_w.dumps(_toml_safe(document))
    except (TypeError, ValueError):
        return
    assert_parses_or_config_error(text)


def test_permission_denied_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "s.toml", "")

    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [Problem("", "cannot read the file: Permission denied")]
