"""Map options for Postfix SQL-table parity: each one accepted, each rejection at its path."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sockmapd.config import Config, DatabaseConfig, MapConfig, parse_config, to_toml
from sockmapd.config.errors import problems_from_validation_error
from sockmapd.config.expansions import (
    RESULT_CODES,
    SEARCH_CODES,
    TemplateError,
    compile_query,
    parse_template,
)
from sockmapd.config.maps import MAX_DOMAIN_FILE_BYTES

SQLITE_DB = {"url": "sqlite+aiosqlite:////var/lib/sockmapd/mail.sqlite3"}
QUERY = "SELECT goto FROM alias WHERE address = '%s'"


def problems(data: dict[str, Any], base_dir: Path | None = None) -> dict[str, str]:
    """Return {path: message} of every problem in data; fail if it is valid."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data, context={"base_dir": base_dir})
    return {p.path: p.message for p in problems_from_validation_error(info.value, Config)}


def only_problem(data: dict[str, Any], base_dir: Path | None = None) -> tuple[str, str]:
    found = problems(data, base_dir)
    assert len(found) == 1, found
    return next(iter(found.items()))


def config_with(entry: dict[str, Any]) -> dict[str, Any]:
    return {"databases": {"mail": SQLITE_DB}, "maps": {"m": {"database": "mail", **entry}}}


def table_map(**fields: Any) -> dict[str, Any]:
    return config_with({"table": "aliases", "key": "address", **fields})


def query_map(**fields: Any) -> dict[str, Any]:
    return config_with({"query": QUERY, **fields})


def load(data: dict[str, Any], base_dir: Path | None = None) -> MapConfig:
    return Config.model_validate(data, context={"base_dir": base_dir}).maps["m"]


def template_message(text: str, codes: str) -> str:
    with pytest.raises(TemplateError) as info:
        parse_template(text, codes)
    return str(info.value)


# ---------------------------------------------------------------- the two forms


def test_table_form_defaults() -> None:
    entry = load(table_map())
    assert not entry.is_query
    assert entry.query is None
    assert entry.result_format is None
    assert entry.expansion_limit == 0
    assert entry.domain == []
    assert entry.domains() == frozenset()
    assert entry.key_transform == []
    assert entry.recipient_delimiter == "+"
    assert entry.search == []
    assert (entry.schema_name, entry.table_name) == (None, "aliases")


def test_query_form() -> None:
    entry = load(query_map())
    assert entry.is_query
    assert entry.query == QUERY
    assert (entry.table, entry.key, entry.value, entry.reason) == (None, None, None, None)
    assert entry.schema_name is None
    with pytest.raises(AssertionError):
        _ = entry.table_name


def test_query_is_kept_as_written() -> None:
    query = "SELECT CONCAT(name, '@', domain) FROM users WHERE local = %u AND domain = '%d'"
    assert load(query_map(query=query)).query == query


def test_both_forms_rejected() -> None:
    assert only_problem(table_map(query=QUERY)) == (
        "maps.m.query",
        "give either query, or table and key, not both",
    )


def test_neither_form_rejected() -> None:
    assert only_problem(config_with({})) == (
        "maps.m.table",
        "required key is missing: give table and key, or query",
    )


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"key": "k"}, "maps.m.table"),
        ({"value": "v"}, "maps.m.table"),
        ({"table": "t", "value": "v"}, "maps.m.key"),
    ],
)
def test_table_form_needs_table_and_key(entry: dict[str, Any], path: str) -> None:
    assert only_problem(config_with(entry)) == (path, "required key is missing")


@pytest.mark.parametrize("field", ["key", "value", "reason"])
def test_columns_only_with_table(field: str) -> None:
    path, message = only_problem(query_map(**{field: "c"}))
    assert path == f"maps.m.{field}"
    assert message.startswith("only used with table, not with query")


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM alias WHERE address = '%s'",
        "SELECT goto FROM alias",
        "SELECT goto FROM alias WHERE address = '%s'; DROP TABLE alias",
        "SELECT goto FROM alias WHERE address = '%x'",
        "   ",
    ],
)
def test_unusable_query_rejected_with_template_message(query: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_query(query)
    assert only_problem(query_map(query=query)) == ("maps.m.query", str(info.value))


def test_query_must_be_a_string() -> None:
    path, _ = only_problem(query_map(query=1))
    assert path == "maps.m.query"


def test_map_instance_with_query_is_revalidated() -> None:
    entry = MapConfig(database="mail", query=QUERY, domain=["example.com"])
    config = Config(databases={"mail": DatabaseConfig.model_validate(SQLITE_DB)}, maps={"m": entry})
    assert config.maps["m"] == entry
    assert config.maps["m"].domains() == {"example.com"}


# ---------------------------------------------------------------- result_format


@pytest.mark.parametrize("template", ["%s", "smtp:[%s]", "%u at %d for %S (%1.%2) 100%%"])
@pytest.mark.parametrize("make", [table_map, query_map])
def test_result_format_accepted(template: str, make: Any) -> None:
    assert load(make(result_format=template)).result_format == template


@pytest.mark.parametrize("template", ["%b", "%x", "50%", "%"])
def test_result_format_rejected(template: str) -> None:
    assert only_problem(query_map(result_format=template)) == (
        "maps.m.result_format",
        template_message(template, RESULT_CODES),
    )


def test_result_format_empty_rejected() -> None:
    assert only_problem(query_map(result_format="")) == (
        "maps.m.result_format",
        "must not be empty",
    )


def test_result_format_not_with_reason() -> None:
    assert only_problem(table_map(reason="why", result_format="%s")) == (
        "maps.m.result_format",
        "give either result_format or reason, not both",
    )


# ---------------------------------------------------------------- expansion_limit


@pytest.mark.parametrize("limit", [0, 1, 1000])
def test_expansion_limit_accepted(limit: int) -> None:
    assert load(query_map(expansion_limit=limit)).expansion_limit == limit


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        (-1, "greater than or equal to 0"),
        (True, "valid integer"),
        (1.0, "valid integer"),
        ("1", "valid integer"),
    ],
)
def test_expansion_limit_rejected(limit: object, reason: str) -> None:
    path, message = only_problem(query_map(expansion_limit=limit))
    assert path == "maps.m.expansion_limit"
    assert reason in message


# ---------------------------------------------------------------- domain


def test_domain_names_are_lowercased() -> None:
    entry = load(query_map(domain=["Example.COM", "mail.example.org", "localhost"]))
    assert entry.domain == ["example.com", "mail.example.org", "localhost"]
    assert entry.domains() == {"example.com", "mail.example.org", "localhost"}


def test_domain_idna_names_match_only_as_written_like_postfix() -> None:
    entry = load(query_map(domain=["Bücher.example", "xn--mnchen-3ya.example"]))
    assert entry.domain == ["bücher.example", "xn--mnchen-3ya.example"]
    assert entry.domains() == {"bücher.example", "xn--mnchen-3ya.example"}


@pytest.mark.parametrize(
    "name",
    [
        "",
        "example.com.",
        "-example.com",
        "example-.com",
        "exa mple.com",
        "a..b",
        "under_score.example",
        "user@example.com",
        "[192.0.2.1]",
        "x" * 64 + ".example",
        ("a" * 63 + ".") * 4 + "a",
        "xn--zz.example",
        "\x00.example",
    ],
)
def test_domain_name_rejected(name: str) -> None:
    path, message = only_problem(query_map(domain=["example.com", name]))
    assert path == "maps.m.domain[1]"
    assert message.startswith(f"{name!r} is not a valid domain name")


def test_domain_type_table_rejected() -> None:
    path, message = only_problem(query_map(domain=["hash:/etc/postfix/domains"]))
    assert path == "maps.m.domain[0]"
    assert "type:table lookups are not supported" in message


@pytest.mark.parametrize("entry", ["file:", "file: ", "file:\x00x"])
def test_domain_file_without_path_rejected(entry: str) -> None:
    path, message = only_problem(query_map(domain=[entry]))
    assert path == "maps.m.domain[0]"
    assert "must name a file" in message


def test_domain_file(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text(
        "# domains served here\n\nExample.COM\n  example.net  \n"
        "a.example, b.example c.example\n\t# indented comment\nbücher.example\n"
    )
    entry = load(query_map(domain=["other.example", f"file:{listed}"]))
    assert entry.domain == ["other.example", f"file:{listed}"]
    assert entry.domains() == {
        "other.example",
        "example.com",
        "example.net",
        "a.example",
        "b.example",
        "c.example",
        "bücher.example",
    }


def test_domain_file_relative_is_resolved_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text("example.com\n")
    entry = load(query_map(domain=["file:domains"]), base_dir=tmp_path)
    assert entry.domain == [f"file:{tmp_path / 'domains'}"]
    assert entry.domains() == {"example.com"}


def test_domain_file_empty_gives_no_domains(tmp_path: Path) -> None:
    (tmp_path / "domains").write_text("# none yet\n")
    entry = load(query_map(domain=[f"file:{tmp_path / 'domains'}"]))
    assert entry.domains() == frozenset()


def test_domain_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert only_problem(query_map(domain=["example.com", f"file:{missing}"])) == (
        "maps.m.domain[1]",
        f"cannot read {missing}: No such file or directory",
    )


def test_domain_file_missing_relative_names_resolved_path(tmp_path: Path) -> None:
    path, message = only_problem(query_map(domain=["file:nope"]), base_dir=tmp_path)
    assert path == "maps.m.domain[0]"
    assert message == f"cannot read {tmp_path / 'nope'}: No such file or directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_domain_file_unreadable(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("example.com\n")
    listed.chmod(0)
    assert only_problem(query_map(domain=[f"file:{listed}"])) == (
        "maps.m.domain[0]",
        f"cannot read {listed}: Permission denied",
    )


def test_domain_file_is_a_directory(tmp_path: Path) -> None:
    path, message = only_problem(query_map(domain=[f"file:{tmp_path}"]))
    assert path == "maps.m.domain[0]"
    assert message == f"{tmp_path} is not a regular file"


def test_domain_file_bad_line(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("example.com\n# fine\nbad_name.example\n")
    path, message = only_problem(query_map(domain=[f"file:{listed}"]))
    assert path == "maps.m.domain[0]"
    assert message.startswith(f"{listed} line 3: 'bad_name.example' is not a valid domain name")


def test_domain_file_not_utf8(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_bytes(b"example.com\n\xff\n")
    assert only_problem(query_map(domain=[f"file:{listed}"])) == (
        "maps.m.domain[0]",
        f"{listed} is not valid UTF-8",
    )


def test_domain_file_too_large(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    with listed.open("wb") as stream:
        stream.truncate(MAX_DOMAIN_FILE_BYTES + 1)
    assert only_problem(query_map(domain=[f"file:{listed}"])) == (
        "maps.m.domain[0]",
        f"{listed} is larger than {MAX_DOMAIN_FILE_BYTES} bytes",
    )


def test_domain_file_is_read_again_on_reload(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("example.com\n")
    text = "[databases.mail]\nurl = 'sqlite:////m.db'\n[maps.m]\ndatabase = 'mail'\n"
    text += f"query = \"{QUERY}\"\ndomain = ['file:{listed}']\n"
    first = parse_config(text)
    listed.write_text("example.org\n")
    second = parse_config(text)
    assert first.maps["m"].domains() == {"example.com"}
    assert second.maps["m"].domains() == {"example.org"}
    assert first != second


def test_domains_survive_revalidation_in_config(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("example.com\n")
    entry = MapConfig(database="mail", query=QUERY, domain=[f"file:{listed}", "example.net"])
    config = Config(databases={"mail": DatabaseConfig.model_validate(SQLITE_DB)}, maps={"m": entry})
    assert config.maps["m"].domains() == {"example.com", "example.net"}


# ---------------------------------------------------------------- key_transform


def test_key_transforms_keep_their_order() -> None:
    transforms = ["trim", "idna_to_ascii", "strip_extension", "lowercase_domain", "lowercase"]
    assert load(query_map(key_transform=transforms)).key_transform == transforms


def test_unknown_key_transform_rejected() -> None:
    path, message = only_problem(query_map(key_transform=["lowercase", "uppercase"]))
    assert path == "maps.m.key_transform[1]"
    assert "'lowercase', 'lowercase_domain', 'strip_extension', 'idna_to_ascii'" in message


def test_duplicate_key_transform_rejected() -> None:
    assert only_problem(query_map(key_transform=["lowercase", "trim", "lowercase"])) == (
        "maps.m.key_transform",
        "duplicate key transform 'lowercase'",
    )


def test_key_transform_must_be_a_list() -> None:
    path, _ = only_problem(query_map(key_transform="lowercase"))
    assert path == "maps.m.key_transform"


# ---------------------------------------------------------------- recipient_delimiter


@pytest.mark.parametrize("delimiter", ["+", "-", "+-=", "."])
def test_recipient_delimiter_accepted(delimiter: str) -> None:
    assert load(table_map(recipient_delimiter=delimiter)).recipient_delimiter == delimiter


@pytest.mark.parametrize(
    ("delimiter", "reason"),
    [
        ("", "must not be empty"),
        ("+@", "must not contain '@', whitespace or control characters"),
        ("+ ", "must not contain '@', whitespace or control characters"),
        ("\t", "must not contain '@', whitespace or control characters"),
        ("+\x00", "must not contain '@', whitespace or control characters"),
    ],
)
def test_recipient_delimiter_rejected(delimiter: str, reason: str) -> None:
    path, message = only_problem(table_map(recipient_delimiter=delimiter))
    assert path == "maps.m.recipient_delimiter"
    assert reason in message


# ---------------------------------------------------------------- search


def test_search_entries_accepted() -> None:
    search = ["%s", "%b@%d", "%u", "@%d", "%1.%2", "100%%-%s"]
    entry = load(table_map(search=search))
    assert entry.search == search


@pytest.mark.parametrize("template", ["%S", "%x", "%", "50% off"])
def test_search_entry_rejected(template: str) -> None:
    assert only_problem(table_map(search=["%s", template])) == (
        "maps.m.search[1]",
        template_message(template, SEARCH_CODES),
    )


def test_search_entry_empty_rejected() -> None:
    assert only_problem(table_map(search=[""])) == ("maps.m.search[0]", "must not be empty")


def test_search_at_most_ten_entries() -> None:
    ten = [f"%{n}" for n in range(1, 10)] + ["%s"]
    assert load(table_map(search=ten)).search == ten
    assert only_problem(table_map(search=[*ten, "%u"])) == (
        "maps.m.search",
        "at most 10 entries, not 11",
    )


def test_search_duplicates_rejected() -> None:
    assert only_problem(table_map(search=["%s", "@%d", "%s"])) == (
        "maps.m.search",
        "duplicate entry '%s'",
    )


# ---------------------------------------------------------------- many problems at once


def test_every_problem_is_reported_in_one_pass() -> None:
    found = problems(
        config_with(
            {
                "database": "nosuch",
                "query": "DELETE FROM x",
                "value": "v",
                "result_format": "%x",
                "expansion_limit": -1,
                "domain": ["bad_domain"],
                "key_transform": ["lowercase", "lowercase"],
                "recipient_delimiter": "",
                "search": ["%S"],
            }
        )
    )
    assert set(found) == {
        "maps.m.database",
        "maps.m.query",
        "maps.m.value",
        "maps.m.result_format",
        "maps.m.expansion_limit",
        "maps.m.domain[0]",
        "maps.m.key_transform",
        "maps.m.recipient_delimiter",
        "maps.m.search[0]",
    }


def test_unknown_map_option() -> None:
    assert only_problem(query_map(domains=["example.com"])) == (
        "maps.m.domains",
        'unknown key (did you mean "domain"?)',
    )


# ---------------------------------------------------------------- round trips


def test_round_trip_of_every_option(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("example.net\n")
    (tmp_path / "relative").write_text("example.org\n")
    text = f"""\
[databases.mail]
url = "sqlite:////var/lib/sockmapd/mail.sqlite3"
[maps.virtual]
database = "mail"
query = "SELECT goto FROM alias WHERE address = '%s' AND active = 1"
result_format = "smtp:[%s]"
expansion_limit = 1
domain = ["Example.COM", "bücher.example", "file:{listed}", "file:relative"]
key_transform = ["trim", "lowercase", "strip_extension"]
recipient_delimiter = "+-"
search = ["%s", "%b@%d", "@%d"]
[maps.access]
database = "mail"
table = "mail.access"
key = "address"
value = "action"
search = ["%s", "%d"]
expansion_limit = 2
[maps.plain]
database = "mail"
table = "aliases"
key = "address"
result_format = "%u"
"""
    config = parse_config(text, base_dir=tmp_path)
    written = to_toml(config, reveal_secrets=True)
    again = parse_config(written)
    assert again == config
    assert to_toml(again, reveal_secrets=True) == written
    every = to_toml(config, reveal_secrets=True, include_defaults=True)
    assert parse_config(every) == config
    assert tomllib.loads(every)["maps"]["virtual"]["cache_size"] == 10000
    data = tomllib.loads(written)["maps"]
    assert data["virtual"] == {
        "database": "mail",
        "query": "SELECT goto FROM alias WHERE address = '%s' AND active = 1",
        "result_format": "smtp:[%s]",
        "expansion_limit": 1,
        "domain": [
            "example.com",
            "bücher.example",
            f"file:{listed}",
            f"file:{tmp_path / 'relative'}",
        ],
        "key_transform": ["trim", "lowercase", "strip_extension"],
        "recipient_delimiter": "+-",
        "search": ["%s", "%b@%d", "@%d"],
    }
    assert again.maps["virtual"].domains() == {
        "example.com",
        "bücher.example",
        "example.net",
        "example.org",
    }


def test_defaults_are_not_written() -> None:
    config = Config.model_validate(table_map(expansion_limit=0, recipient_delimiter="+"))
    assert tomllib.loads(to_toml(config))["maps"]["m"] == {
        "database": "mail",
        "table": "aliases",
        "key": "address",
    }
    config = Config.model_validate(query_map(domain=[], key_transform=[], search=[]))
    assert tomllib.loads(to_toml(config))["maps"]["m"] == {"database": "mail", "query": QUERY}


def test_relative_domain_file_survives_without_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "domains").write_text("example.com\n")
    config = Config.model_validate(query_map(domain=["file:domains"]))
    assert config.maps["m"].domain == ["file:domains"]
    assert parse_config(to_toml(config)) == config


@pytest.mark.parametrize(
    ("url", "query", "problem"),
    [
        # One query, read as each database reads it: a backslash escapes on MySQL only.
        ("mysql+asyncmy://u@db/mail", r"SELECT a FROM t WHERE k = '%s' AND n <> 'it\'s'", None),
        (
            "postgresql+asyncpg://u@db/mail",
            r"SELECT a FROM t WHERE k = '%s' AND n <> 'it\'s'",
            "unterminated string literal",
        ),
        ("postgresql+asyncpg://u@db/mail", r"SELECT a FROM t WHERE k = '%s' AND n ~ '\.'", None),
        ("sqlite+aiosqlite:////tmp/x.sqlite3", r"SELECT a FROM t WHERE k = '\%s'", None),
        (
            "mysql+asyncmy://u@db/mail",
            r"SELECT a FROM t WHERE k = '\%s'",
            "a backslash right before an expansion",
        ),
    ],
)
def test_a_query_is_read_in_its_database_dialect(url: str, query: str, problem: str | None) -> None:
    data = {
        "databases": {"mail": {"url": url}},
        "maps": {"m": {"database": "mail", "query": query}},
    }
    if problem is None:
        assert load(data).query == query
    else:
        path, message = only_problem(data)
        assert path == "maps.m.query"
        assert problem in message


def test_a_query_of_a_map_without_a_valid_database_refuses_backslashes_in_literals() -> None:
    data = {
        "databases": {"mail": {"url": "nosuch://x"}},
        "maps": {"m": {"database": "mail", "query": r"SELECT a FROM t WHERE k = '%s\n'"}},
    }
    found = problems(data)
    assert "give the map a database" in found["maps.m.query"]
