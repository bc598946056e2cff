"""Importing Postfix mysql:, pgsql: and sqlite: table files, and the import-postfix command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from sockmapd.cli import main
from sockmapd.config import Config, load_config, parse_config, to_toml
from sockmapd.config.postfix_import import (
    CfFile,
    DroppedParameter,
    PostfixImport,
    PostfixImportError,
    PostfixSource,
    PostfixType,
    import_postfix,
    parse_cf,
    split_table_argument,
)
from sockmapd.config.writer import SECRET_MASK

MYSQL_CF = """\
# mysql-virtual.cf: virtual_alias_maps = proxy:mysql:/etc/postfix/mysql-virtual.cf
hosts = inet:db1.example.org:3307, unix:/run/mysqld/mysqld.sock
        db2.example.org
user = postfix
password = some_password
dbname = mail

query = SELECT goto FROM alias
    WHERE address = '%s' AND active = 1
result_format = smtp:[%s]
domain = Example.COM, example.net
expansion_limit = 1
tls_cert_file = CERT
tls_key_file = KEY
tls_CAfile = CA
tls_verify_cert = yes
"""

PGSQL_CF = """\
hosts = inet:pg1.example.org:5433 unix:/run/postgresql
user = someone
password = some_password
dbname = customer_database
query = SELECT replacement FROM aliases WHERE mailbox = '%s'
"""

SQLITE_CF = """\
dbpath = /var/lib/postfix/aliases.sqlite
query = SELECT replacement FROM aliases WHERE mailbox = '%s'
"""

LEGACY_CF = """\
dbpath = /var/lib/postfix/mail.sqlite
select_field = forw_addr
table = mxaliases
where_field = alias
additional_conditions = AND status = 'paid'
"""


def run(
    *texts: str, kind: PostfixType | None = "mysql", names: list[str] | None = None
) -> PostfixImport:
    sources = [
        PostfixSource(
            f"/etc/postfix/t{index}.cf",
            text,
            kind,
            None if names is None else names[index],
        )
        for index, text in enumerate(texts)
    ]
    return import_postfix(sources)


def failure(*texts: str, kind: PostfixType | None = "mysql") -> list[str]:
    with pytest.raises(PostfixImportError) as info:
        run(*texts, kind=kind)
    return info.value.problems


def dropped(result: PostfixImport) -> list[tuple[str, str]]:
    return [(d.parameter, d.reason) for d in result.dropped]


def assert_loads(config: Config) -> None:
    """The written config loads back to the same, with and without secrets."""
    assert parse_config(to_toml(config, reveal_secrets=True)) == config
    masked = parse_config(to_toml(config))
    assert masked.maps == config.maps


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name.lower()}.pem" for name in ("CERT", "KEY", "CA")}
    for path in files.values():
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
    return files


def mysql_cf(tls_files: dict[str, Path]) -> str:
    text = MYSQL_CF
    for name, path in tls_files.items():
        text = text.replace(f" = {name}\n", f" = {path}\n")
    return text


# ---------------------------------------------------------------- .cf syntax


def test_parse_cf_continuation_lines_are_joined_as_they_are() -> None:
    # Only the line break goes: the spaces at the end of one line and at the start of
    # the next stay, as in Postfix (postmap -q printed "[A   ]" for this result_format).
    text = "query = SELECT x  \n    FROM t\n\tWHERE k = '%s'   \nresult_format = [%s\n   ]  \n"
    assert parse_cf(text).parameters == {
        "query": "SELECT x      FROM t\tWHERE k = '%s'",
        "result_format": "[%s   ]",
    }
    # A line that starts with whitespace continues even a line without '='.
    assert parse_cf("user\n  = alice\n").parameters == {"user": "alice"}


def test_parse_cf_comments_and_blank_lines_end_no_parameter() -> None:
    text = (
        "# comment\n"
        "query = SELECT x\n"
        "# a comment inside does not end the line\n"
        "\n"
        "  \t \n"
        "    # nor does an indented one\n"
        " FROM t\n"
        "   # user = indented comments are skipped, not continued\n"
        "result_format = a = b # not a comment\n"
    )
    assert parse_cf(text) == CfFile(
        {"query": "SELECT x FROM t", "result_format": "a = b # not a comment"}
    )


@pytest.mark.parametrize(
    "line", ["user=alice", "user =alice", "user= alice", "user\t=\talice", "user   =   alice  "]
)
def test_parse_cf_equals_with_or_without_spaces(line: str) -> None:
    assert parse_cf(f"{line}\n").parameters == {"user": "alice"}


def test_parse_cf_last_value_wins() -> None:
    text = "user = alice\npassword =\nuser = bob\n"
    assert parse_cf(text).parameters == {"user": "bob", "password": ""}


def test_parse_cf_skips_a_first_logical_line_that_starts_with_whitespace() -> None:
    # Postfix: "logical line must not start with whitespace", and the line is skipped
    # with its continuation lines.
    text = "# comment\n  hosts = a\n\tb\nuser = alice\n"
    assert parse_cf(text) == CfFile({"user": "alice"}, (2,))


def test_parse_cf_reads_line_ends_and_whitespace_as_postfix() -> None:
    # CRLF: the CR ends the value (trimmed) but stays inside a continued value.
    assert parse_cf("query = SELECT x\r\n FROM t\r\n").parameters == {"query": "SELECT x\r FROM t"}
    # Lines end at LF only; VT and FF are whitespace (they continue a line), other
    # characters Python would split lines at are text.
    assert parse_cf("query = a\n\vb\n\fc\x1cd\u2028e\n").parameters == {
        "query": "a\vb\fc\x1cd\u2028e"
    }
    # Whitespace is ASCII only: a no-break space is not trimmed.
    assert parse_cf("result_format = <%s>\u00a0\n").parameters == {"result_format": "<%s>\u00a0"}


def test_parse_cf_reads_a_byte_order_mark_as_text() -> None:
    assert parse_cf("\ufeffhosts = a\nuser = b\n").parameters == {"\ufeffhosts": "a", "user": "b"}
    expected = "line 1: expected 'name = value', found no '=' (the file starts with a byte"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}"):
        parse_cf("\ufeff# comment\nuser = b\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts = a\nuser\n", "line 2: expected 'name = value', found no '='"),
        ("= value\n", "line 1: expected 'name = value', found '' before '='"),
        ("two words = x\n", "line 1: expected 'name = value', found 'two words' before '='"),
    ],
)
def test_parse_cf_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        parse_cf(text)


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("mysql:/etc/postfix/a.cf", ("mysql", "/etc/postfix/a.cf")),
        ("pgsql:/etc/postfix/a.cf", ("pgsql", "/etc/postfix/a.cf")),
        ("sqlite:a.cf", ("sqlite", "a.cf")),
        ("proxy:mysql:/etc/postfix/a.cf", ("mysql", "/etc/postfix/a.cf")),
        ("/etc/postfix/a.cf", (None, "/etc/postfix/a.cf")),
        ("hash:/etc/postfix/a", (None, "hash:/etc/postfix/a")),
        ("mysql", (None, "mysql")),
    ],
)
def test_split_table_argument(argument: str, expected: tuple[str | None, str]) -> None:
    assert split_table_argument(argument) == expected


# ---------------------------------------------------------------- each table type


def test_mysql_file(tls_files: dict[str, Path]) -> None:
    result = run(mysql_cf(tls_files), names=["virtual"])
    assert result.dropped == ()
    config = result.config
    database = config.databases["virtual"]
    assert database.driver == "mysql"
    assert database.hosts == [
        "db1.example.org:3307",
        "unix:/run/mysqld/mysqld.sock",
        "db2.example.org",
    ]
    assert (database.name, database.user) == ("mail", "postfix")
    assert database.password == SecretStr("some_password")
    assert database.tls is True
    assert database.tls_cert_file == tls_files["CERT"]
    assert database.tls_key_file == tls_files["KEY"]
    assert database.tls_ca_file == tls_files["CA"]
    assert database.tls_verify is True
    assert database.host_order == "random"
    entry = config.maps["virtual"]
    assert entry.database == "virtual"
    # The continuation line keeps its indentation, as in Postfix.
    assert entry.query == "SELECT goto FROM alias    WHERE address = '%s' AND active = 1"
    assert entry.result_format == "smtp:[%s]"
    assert entry.domain == ["example.com", "example.net"]
    assert entry.expansion_limit == 1
    assert entry.key_transform == ["lowercase"]
    assert_loads(config)


def test_mysql_tls_verify_cert_no(tls_files: dict[str, Path]) -> None:
    text = mysql_cf(tls_files).replace("tls_verify_cert = yes", "tls_verify_cert = No")
    assert run(text).config.databases["t0"].tls_verify is False


def test_mysql_tls_only_ca_file(tls_files: dict[str, Path]) -> None:
    text = f"hosts = db\nquery = {SQLITE_CF.splitlines()[1][8:]}\ntls_CAfile = {tls_files['CA']}\n"
    database = run(text).config.databases["t0"]
    assert (database.tls, database.tls_ca_file, database.tls_verify) == (
        True,
        tls_files["CA"],
        True,
    )


def test_mysql_without_tls_settings_or_hosts() -> None:
    result = run("dbname = mail\nquery = SELECT 1 FROM t WHERE k = '%s'\ntls_verify_cert = no\n")
    database = result.config.databases["t0"]
    assert database.tls is False
    # Postfix's own default host.
    assert database.hosts == ["localhost"]
    assert result.dropped == ()


def test_pgsql_file() -> None:
    result = run(PGSQL_CF, kind="pgsql")
    assert result.dropped == ()
    database = result.config.databases["t0"]
    assert database.driver == "postgresql"
    assert database.hosts == ["pg1.example.org:5433", "unix:/run/postgresql"]
    assert (database.name, database.user) == ("customer_database", "someone")
    assert database.password == SecretStr("some_password")
    assert database.host_order == "random"
    entry = result.config.maps["t0"]
    assert entry.query == "SELECT replacement FROM aliases WHERE mailbox = '%s'"
    assert entry.key_transform == ["lowercase"]
    assert_loads(result.config)


def test_pgsql_select_function() -> None:
    text = "hosts = db\nselect_function = my_lookup_user_alias\nselect_field = x\n"
    result = run(text, kind="pgsql")
    assert result.config.maps["t0"].query == "SELECT my_lookup_user_alias('%s')"
    assert dropped(result) == [
        ("select_field", "ignored, as by Postfix, because select_function is set")
    ]


def test_pgsql_uri_is_dropped_when_other_hosts_remain() -> None:
    text = PGSQL_CF.replace("hosts = ", "hosts = postgresql://u:pw@db.example.org/mail ")
    result = run(text, kind="pgsql")
    assert result.config.databases["t0"].hosts == ["pg1.example.org:5433", "unix:/run/postgresql"]
    [(parameter, reason)] = dropped(result)
    assert parameter == "hosts"
    assert reason.startswith("a postgresql:// connection URI cannot be expressed")
    assert "pw" not in reason


def test_pgsql_uri_alone_is_an_error() -> None:
    text = "hosts = postgresql://u:pw@db/mail?sslmode=require\n" + PGSQL_CF.split("\n", 1)[1]
    [problem] = failure(text, kind="pgsql")
    assert problem.startswith("/etc/postfix/t0.cf: hosts: a postgresql:// connection URI")
    assert "pw@" not in problem


def test_sqlite_file() -> None:
    result = run(SQLITE_CF, kind="sqlite")
    assert result.dropped == ()
    database = result.config.databases["t0"]
    assert (database.driver, database.name) == ("sqlite", "/var/lib/postfix/aliases.sqlite")
    assert database.host_order == "in_order"
    assert result.config.maps["t0"].query == (
        "SELECT replacement FROM aliases WHERE mailbox = '%s'"
    )
    assert_loads(result.config)


def test_sqlite_is_guessed_from_dbpath() -> None:
    assert run(SQLITE_CF, kind=None).config.databases["t0"].driver == "sqlite"


def test_type_cannot_be_guessed_without_dbpath() -> None:
    assert failure(PGSQL_CF, kind=None) == [
        "/etc/postfix/t0.cf: cannot tell the table type: write mysql:FILE, pgsql:FILE or "
        "sqlite:FILE (a file with dbpath is taken as sqlite)"
    ]


def test_sqlite_needs_dbpath() -> None:
    assert failure("query = SELECT 1 FROM t WHERE k = '%s'\n", kind="sqlite") == [
        "/etc/postfix/t0.cf: dbpath: required: the SQLite database file"
    ]


# ---------------------------------------------------------------- the legacy query fields


def test_legacy_select_field_form() -> None:
    result = run(LEGACY_CF, kind="sqlite")
    assert result.dropped == ()
    assert result.config.maps["t0"].query == (
        "SELECT forw_addr FROM mxaliases WHERE alias = '%s' AND status = 'paid'"
    )
    assert_loads(result.config)


def test_legacy_without_additional_conditions() -> None:
    text = "hosts = db\nselect_field = forw_addr\ntable = mxaliases\nwhere_field = alias\n"
    query = run(text).config.maps["t0"].query
    assert query == "SELECT forw_addr FROM mxaliases WHERE alias = '%s'"


def test_legacy_fields_are_ignored_when_query_is_set() -> None:
    result = run(SQLITE_CF + "select_field = x\ntable = t\n", kind="sqlite")
    assert result.config.maps["t0"].query == (
        "SELECT replacement FROM aliases WHERE mailbox = '%s'"
    )
    assert dropped(result) == [
        ("select_field", "ignored, as by Postfix, because query is set"),
        ("table", "ignored, as by Postfix, because query is set"),
    ]


def test_incomplete_legacy_fields() -> None:
    assert failure("hosts = db\nselect_field = x\ntable = t\n") == [
        "/etc/postfix/t0.cf: select_field, table, where_field: give all three (or query instead)"
    ]


def test_no_query_at_all() -> None:
    assert failure("hosts = db\n") == [
        "/etc/postfix/t0.cf: query: required (or the legacy select_field, table, where_field)"
    ]


def test_legacy_query_problem_names_the_legacy_fields() -> None:
    text = "hosts = db\nselect_field = x; DROP TABLE t\ntable = t\nwhere_field = k\n"
    [problem] = failure(text)
    assert problem.startswith(
        "/etc/postfix/t0.cf: select_field, table, where_field, additional_conditions: ';'"
    )


# ---------------------------------------------------------------- dropped parameters


def test_dropped_parameters_are_reported_in_file_order() -> None:
    text = """\
hosts = db
dbpath = /x.sqlite
option_file = /etc/my.cnf
option_group = client
query = SELECT goto FROM alias WHERE address = '%s'
require_result_set = no
idle_interval = 30
retry_interval = 20
domain = example.com hash:/etc/postfix/domains !bad.example
tls_CApath = /etc/ssl/certs
tls_ciphers = HIGH
frobnicate = 1
"""
    result = run(text)
    assert [parameter for parameter, _ in dropped(result)] == [
        "dbpath",
        "option_file",
        "option_group",
        "require_result_set",
        "idle_interval",
        "domain",
        "domain",
        "tls_CApath",
        "tls_ciphers",
        "frobnicate",
    ]
    reasons = dict(dropped(result))
    assert reasons["dbpath"] == (
        "not a parameter of mysql_table(5), only of sqlite_table(5); Postfix ignores it here too"
    )
    assert reasons["frobnicate"] == "not a parameter of mysql_table(5); Postfix ignores it too"
    assert "sockmapd reads no MySQL option files" in reasons["option_file"]
    assert "only SELECT queries" in reasons["require_result_set"]
    assert "closes no idle connection" in reasons["idle_interval"]
    assert "tls_ca_file" in reasons["tls_CApath"]
    assert "cipher list" in reasons["tls_ciphers"]
    domain_reasons = [r for p, r in dropped(result) if p == "domain"]
    assert domain_reasons[0].startswith("hash:/etc/postfix/domains: type:table lookups")
    assert domain_reasons[1] == "!bad.example: negated patterns are not supported"
    config = result.config
    assert config.maps["t0"].domain == ["example.com"]
    # TLS is on in Postfix when a CA path or cipher list is given.
    assert config.databases["t0"].tls is True
    assert config.databases["t0"].retry_interval == 20.0
    assert_loads(config)
    assert str(result.dropped[0]) == (
        "/etc/postfix/t0.cf: dbpath: not a parameter of mysql_table(5), only of "
        "sqlite_table(5); Postfix ignores it here too"
    )


def test_require_result_set_yes_is_what_sockmapd_does() -> None:
    result = run("hosts = db\nquery = SELECT 1 FROM t WHERE k = '%s'\nrequire_result_set = yes\n")
    assert result.dropped == ()


def test_tls_parameters_of_a_pgsql_file_are_dropped() -> None:
    result = run(PGSQL_CF + "tls_CAfile = /etc/ssl/ca.pem\n", kind="pgsql")
    assert dropped(result) == [
        (
            "tls_CAfile",
            "not a parameter of pgsql_table(5), only of mysql_table(5); Postfix ignores it "
            "here too",
        )
    ]
    assert result.config.databases["t0"].tls is False


def test_domain_with_only_tables_warns_that_no_filter_is_left() -> None:
    result = run(SQLITE_CF + "domain = hash:/etc/postfix/domains\n", kind="sqlite")
    assert [p for p, _ in dropped(result)] == ["domain", "domain"]
    assert dropped(result)[1][1] == (
        "no domain is left, so sockmapd looks up the keys of every domain"
    )
    assert result.config.maps["t0"].domain == []


def test_domain_files_become_file_entries(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("example.org\n")
    result = run(SQLITE_CF + f"domain = example.com {listed}\n", kind="sqlite")
    entry = result.config.maps["t0"]
    assert entry.domain == ["example.com", f"file:{listed}"]
    assert entry.domains() == {"example.com", "example.org"}


# ---------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("tls_verify_cert = maybe", "tls_verify_cert: expected yes or no, found 'maybe'"),
        ("require_result_set = 1", "require_result_set: expected yes or no, found '1'"),
        ("expansion_limit = -1", "expansion_limit: expected a whole number, found '-1'"),
        ("retry_interval = 1m", "retry_interval: expected a whole number, found '1m'"),
        ("retry_interval = 0", "retry_interval: Input should be greater than 0"),
        ("domain = bad_domain", "domain: 'bad_domain' is not a valid domain name"),
        ("domain = /nonexistent/domains", "domain: cannot read /nonexistent/domains"),
        ("hosts = db:99999", "hosts: invalid port in 'db:99999'"),
        ("result_format = %x", "result_format: unknown expansion %x"),
        ("query = DELETE FROM t WHERE k = '%s'", "query: the query may only read"),
        ("tls_CAfile = /nonexistent/ca.pem", "tls_CAfile: cannot read /nonexistent/ca.pem"),
    ],
)
def test_invalid_values_name_their_parameter(line: str, problem: str) -> None:
    text = f"hosts = db\nquery = SELECT 1 FROM t WHERE k = '%s'\n{line}\n"
    problems = failure(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"/etc/postfix/t0.cf: {problem}")


def test_tls_key_without_cert(tls_files: dict[str, Path]) -> None:
    text = (
        f"hosts = db\nquery = SELECT 1 FROM t WHERE k = '%s'\ntls_key_file = {tls_files['KEY']}\n"
    )
    assert failure(text) == [
        "/etc/postfix/t0.cf: tls_key_file: needs tls_cert_file: a client key is used only "
        "with its certificate"
    ]


def test_syntax_error_names_file_and_line() -> None:
    assert failure("hosts = db\nquery\n") == [
        "/etc/postfix/t0.cf: line 2: expected 'name = value', found no '='"
    ]


def test_every_file_is_checked() -> None:
    problems = failure("hosts = db\n", "hosts = db\nquery\n", SQLITE_CF)
    assert [p.split(":")[0] for p in problems] == ["/etc/postfix/t0.cf", "/etc/postfix/t1.cf"]


# ---------------------------------------------------------------- names and sharing


def test_map_names_default_to_the_file_stem() -> None:
    sources = [
        PostfixSource("/etc/postfix/mysql-virtual.cf", MYSQL_CF.split("tls_")[0], "mysql"),
        PostfixSource("relative/sqlite.aliases.cf", SQLITE_CF, "sqlite"),
    ]
    config = import_postfix(sources).config
    assert list(config.maps) == ["mysql-virtual", "sqlite.aliases"]
    assert list(config.databases) == ["mysql-virtual", "sqlite_aliases"]
    assert config.maps["sqlite.aliases"].database == "sqlite_aliases"
    assert_loads(config)


def test_identical_connections_share_one_database() -> None:
    other = PGSQL_CF.replace("FROM aliases", "FROM domains")
    third = PGSQL_CF.replace("dbname = customer_database", "dbname = other")
    result = run(PGSQL_CF, other, third, kind="pgsql", names=["aliases", "domains", "other"])
    config = result.config
    assert list(config.databases) == ["aliases", "other"]
    assert [entry.database for entry in config.maps.values()] == ["aliases", "aliases", "other"]
    assert_loads(config)


def test_database_names_stay_unique() -> None:
    names = ["a.b", "a_b"]
    result = run(SQLITE_CF, SQLITE_CF.replace("aliases.sqlite", "x.sqlite"), names=names, kind=None)
    assert list(result.config.databases) == ["a_b", "a_b-2"]
    assert [m.database for m in result.config.maps.values()] == ["a_b", "a_b-2"]


def test_duplicate_map_name_is_an_error() -> None:
    with pytest.raises(PostfixImportError) as info:
        run(SQLITE_CF, SQLITE_CF, kind="sqlite", names=["same", "same"])
    assert info.value.problems == [
        "/etc/postfix/t1.cf: map name 'same' is already used for /etc/postfix/t0.cf: "
        "name the maps apart"
    ]


def test_invalid_map_name_is_an_error() -> None:
    with pytest.raises(PostfixImportError) as info:
        run(SQLITE_CF, kind="sqlite", names=["a:b"])
    [problem] = info.value.problems
    assert problem.startswith("/etc/postfix/t0.cf: map name 'a:b': ")
    assert "must not contain ':'" in problem


def test_lines_postfix_skips_are_reported_first() -> None:
    result = run(
        " result_format = x%s\n\t<%s>\n" + SQLITE_CF + "idle_interval = 5\n", kind="sqlite"
    )
    assert result.config.maps["t0"].result_format is None
    assert [parameter for parameter, _ in dropped(result)] == ["line 1", "idle_interval"]
    assert dropped(result)[0][1] == (
        "starts with whitespace but continues no parameter before it; Postfix skips it "
        "with a warning (logical line must not start with whitespace)"
    )


def test_a_name_after_a_byte_order_mark_is_dropped_as_postfix_ignores_it() -> None:
    # Postfix reads the mark as part of the first name, "\ufeffresult_format", which is
    # no parameter: it ignores the line, and so does the import, saying why.
    result = run("\ufeffresult_format = x%s\n" + SQLITE_CF, kind="sqlite")
    assert result.config.maps["t0"].result_format is None
    assert dropped(result) == [
        (
            "result_format",
            "the file starts with a byte-order mark, which Postfix reads as part of this "
            "name, so Postfix ignores this line too: save the file without it",
        )
    ]


def test_a_byte_order_mark_before_a_comment_is_a_syntax_error() -> None:
    assert failure("\ufeff# comment\n" + SQLITE_CF, kind="sqlite") == [
        "/etc/postfix/t0.cf: line 1: expected 'name = value', found no '=' (the file starts "
        "with a byte-order mark, which Postfix reads as text: save the file without it)"
    ]


def test_dropped_parameter_text() -> None:
    assert str(DroppedParameter("/x.cf", "tls_CApath", "why")) == "/x.cf: tls_CApath: why"


# ---------------------------------------------------------------- the command


@pytest.fixture
def cf_dir(tmp_path: Path, tls_files: dict[str, Path]) -> Path:
    (tmp_path / "mysql-virtual.cf").write_text(mysql_cf(tls_files))
    (tmp_path / "pgsql-aliases.cf").write_text(PGSQL_CF)
    (tmp_path / "sqlite-legacy.cf").write_text(LEGACY_CF)
    (tmp_path / "dropping.cf").write_text(SQLITE_CF + "idle_interval = 5\nhosts = db\n")
    return tmp_path


def test_command_imports_every_type(cf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "config",
        "import-postfix",
        "--name",
        "virtual",
        "--show-secrets",
        f"mysql:{cf_dir / 'mysql-virtual.cf'}",
        f"proxy:pgsql:{cf_dir / 'pgsql-aliases.cf'}",
        str(cf_dir / "sqlite-legacy.cf"),
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    written = cf_dir / "imported.toml"
    written.write_text(out)
    config = load_config(written)
    assert list(config.maps) == ["virtual", "pgsql-aliases", "sqlite-legacy"]
    assert config.databases["virtual"].password == SecretStr("some_password")
    assert config.databases["sqlite-legacy"].driver == "sqlite"


def test_command_masks_passwords(cf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "import-postfix", f"pgsql:{cf_dir / 'pgsql-aliases.cf'}"]) == 0
    out = capsys.readouterr().out
    assert "some_password" not in out
    assert parse_config(out).databases["pgsql-aliases"].password == SecretStr(SECRET_MASK)


def test_command_reports_dropped_parameters(
    cf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cf_dir / "dropping.cf"
    assert main(["config", "import-postfix", f"sqlite:{path}"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"{path}: idle_interval: not a parameter of sqlite_table(5), only of mysql_table(5) "
        "and pgsql_table(5); Postfix ignores it here too",
        f"{path}: hosts: not a parameter of sqlite_table(5), only of mysql_table(5) "
        "and pgsql_table(5); Postfix ignores it here too",
    ]
    assert list(parse_config(out).maps) == ["dropping"]


def test_command_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.cf"
    assert main(["config", "import-postfix", f"mysql:{missing}"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{missing}: cannot read the file: No such file or directory\n"


def test_command_file_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.cf"
    path.write_bytes(b"dbpath = /caf\xe9.sqlite\n")
    assert main(["config", "import-postfix", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: the file is not valid UTF-8\n"


def test_command_invalid_input(cf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = cf_dir / "pgsql-aliases.cf"
    assert main(["config", "import-postfix", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: cannot tell the table type: write mysql:FILE")
    assert "Traceback" not in err


def imported_maps(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["config", "import-postfix", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return list(parse_config(out).maps)


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(["config", "import-postfix", *argv])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err.splitlines()[-1]


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[str, str]:
    for name in ("a", "b"):
        (tmp_path / f"{name}.cf").write_text(SQLITE_CF)
    return f"sqlite:{tmp_path / 'a.cf'}", f"sqlite:{tmp_path / 'b.cf'}"


def test_command_each_name_before_its_file(
    two_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    argv = ["--name", "first", a, "--name", "second", b]
    assert imported_maps(argv, capsys) == ["first", "second"]


def test_command_names_before_the_files(
    two_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    assert imported_maps(["--name", "first", "--name", "second", a, b], capsys) == [
        "first",
        "second",
    ]


def test_command_a_name_after_a_file_names_the_next_one(
    two_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    assert imported_maps([a, "--name", "second", b], capsys) == ["a", "second"]
    assert imported_maps(["--name", "first", a, b], capsys) == ["first", "b"]


def test_command_options_in_other_spellings(
    two_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    argv = ["--name=first", a, "--show", "--na", "second", b]
    assert imported_maps(argv, capsys) == ["first", "second"]


def test_command_name_after_the_last_file(
    two_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    assert usage_error([a, b, "--name", "late"], capsys) == (
        "sockmapd config import-postfix: error: --name late: no file left to name "
        "(a --name names the first file after it that no earlier --name names)"
    )


def test_command_more_names_than_files(
    two_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_files
    error = usage_error(["--name", "x", "--name", "y", "--name", "z", a], capsys)
    assert error.startswith("sockmapd config import-postfix: error: --name y, --name z: ")


def test_command_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "import-postfix"])
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "SELECT goto FROM alias WHERE address = '%s';",
            "SELECT goto FROM alias WHERE address = '%s'",
        ),
        (
            "SELECT goto FROM alias WHERE address = '%s' ;",
            "SELECT goto FROM alias WHERE address = '%s'",
        ),
        (
            "SELECT goto FROM alias WHERE address = '%s;'",
            "SELECT goto FROM alias WHERE address = '%s;'",
        ),
    ],
)
def test_one_final_semicolon_is_dropped(query: str, expected: str) -> None:
    # Postfix sends the query as written, and MySQL and PostgreSQL accept one final ';'.
    result = run(f"hosts = db\nquery = {query}\n")
    assert result.dropped == ()
    assert result.config.maps["t0"].query == expected


def test_a_semicolon_between_statements_is_still_refused() -> None:
    text = "hosts = db\nquery = SELECT 1 FROM alias WHERE address = '%s'; SELECT 2;\n"
    [problem] = failure(text)
    assert "';' is not allowed" in problem
