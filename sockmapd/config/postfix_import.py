"""Postfix mysql_table(5), pgsql_table(5) and sqlite_table(5) files turned into a Config."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

from pydantic import ValidationError

from sockmapd.config.errors import error_message, format_path
from sockmapd.config.maps import DOMAIN_FILE_PREFIX
from sockmapd.config.models import Config

PostfixType = Literal["mysql", "pgsql", "sqlite"]
POSTFIX_TYPES: tuple[PostfixType, ...] = ("mysql", "pgsql", "sqlite")

# Postfix splits list parameters (hosts, domain) at commas and whitespace.
_LIST_SEPARATORS_RE = re.compile(r"[\s,]+")
_DATABASE_NAME_CHARS_RE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_DATABASE_NAME = 64
_DIGITS_RE = re.compile(r"[0-9]+")
# The whitespace of Postfix's ISSPACE(): ASCII only.
_CF_SPACE = " \t\n\v\f\r"
# split_nameval(): a name (up to whitespace or '='), optional whitespace, '=', the value.
_NAME_VALUE_RE = re.compile(r"(?P<name>[^ \t\n\v\f\r=]+)[ \t\n\v\f\r]*=(?P<value>.*)", re.DOTALL)
_BOM = "\ufeff"
_BOM_FIX = ": save the file without it"
# Postfix's own default when hosts is empty (mysql and pgsql).
_DEFAULT_HOST = "localhost"

_QUERY = ("query",)
_SELECT_FUNCTION = ("select_function",)
_LEGACY_QUERY = ("select_field", "table", "where_field", "additional_conditions")
_COMMON = frozenset({"query", "result_format", "domain", "expansion_limit", *_LEGACY_QUERY})
_SERVER = frozenset({"hosts", "user", "password", "dbname", "idle_interval", "retry_interval"})
_MYSQL_TLS = (
    "tls_cert_file",
    "tls_key_file",
    "tls_CAfile",
    "tls_CApath",
    "tls_verify_cert",
    "tls_ciphers",
)
PARAMETERS: dict[PostfixType, frozenset[str]] = {
    "mysql": _COMMON | _SERVER | {"option_file", "option_group", "require_result_set", *_MYSQL_TLS},
    "pgsql": _COMMON | _SERVER | {"select_function"},
    "sqlite": _COMMON | {"dbpath"},
}
_DRIVERS: dict[PostfixType, str] = {"mysql": "mysql", "pgsql": "postgresql", "sqlite": "sqlite"}

# Where a problem found by Config validation came from in the Postfix file.
_DATABASE_PARAMETERS = {
    "hosts": "hosts",
    "user": "user",
    "password": "password",
    "tls_ca_file": "tls_CAfile",
    "tls_cert_file": "tls_cert_file",
    "tls_key_file": "tls_key_file",
    "tls_verify": "tls_verify_cert",
    "retry_interval": "retry_interval",
}
_MAP_PARAMETERS = {
    "result_format": "result_format",
    "domain": "domain",
    "expansion_limit": "expansion_limit",
}

_DROPPED_REASONS = {
    "idle_interval": "sockmapd keeps its pooled connections open (pool_size, max_overflow) "
    "and closes no idle connection by time",
    "option_file": "sockmapd reads no MySQL option files (my.cnf): give these settings "
    "in the sockmapd configuration",
    "option_group": "sockmapd reads no MySQL option files (my.cnf): give these settings "
    "in the sockmapd configuration",
    "tls_CApath": "sockmapd takes CA certificates from one file (tls_ca_file) or from the "
    "system store: use tls_CAfile",
    "tls_ciphers": "sockmapd uses the TLS defaults of Python's ssl module; a cipher list "
    "cannot be set",
}


@dataclass(frozen=True, slots=True)
class PostfixSource:
    """One Postfix SQL table file: its name for messages, its text, its type and map name."""

    origin: str
    text: str
    table_type: PostfixType | None = None
    # The map name; None takes the file name without its extension.
    map_name: str | None = None


@dataclass(frozen=True, slots=True)
class DroppedParameter:
    """A parameter of a Postfix file that the imported configuration does not carry, and why."""

    origin: str
    parameter: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.parameter}: {self.reason}"


@dataclass(frozen=True, slots=True)
class PostfixImport:
    """The imported configuration and the parameters it leaves behind."""

    config: Config
    dropped: tuple[DroppedParameter, ...]


class PostfixImportError(Exception):
    """Postfix files that cannot be imported; carries one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def split_table_argument(text: str) -> tuple[PostfixType | None, str]:
    """Split 'mysql:/etc/postfix/x.cf' (also proxy:mysql:...) into type and path."""
    rest = text.removeprefix("proxy:")
    kind, sep, path = rest.partition(":")
    for known in POSTFIX_TYPES:
        if sep and kind == known:
            return known, path
    return None, text


@dataclass(frozen=True, slots=True)
class CfFile:
    """The parameters of a Postfix table file, and the lines Postfix skips with a warning."""

    parameters: dict[str, str]
    # The first line of each logical line that starts with whitespace.
    ignored_lines: tuple[int, ...] = ()


def parse_cf(text: str) -> CfFile:
    """Read table-file text as Postfix does; raise ValueError naming the line Postfix rejects.

    Postfix reads these files with readllines() and split_nameval(): a line that starts
    with whitespace continues the logical line before it, joined as it is (only the line
    break goes); blank lines, whitespace-only lines and lines whose first non-whitespace
    character is '#' are skipped and end no logical line; 'name = value' may have any
    whitespace, or none, around '='; the value is trimmed at both ends; a parameter
    given again replaces the earlier value. Whitespace is ASCII whitespace only, lines
    end at LF only, and a byte-order mark is text like any other.
    """
    logical: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        content = line.lstrip(_CF_SPACE)
        if not content or content.startswith("#"):
            continue
        if line[0] in _CF_SPACE and logical:
            start, previous = logical[-1]
            logical[-1] = (start, previous + line)
        else:
            logical.append((number, line))
    parameters: dict[str, str] = {}
    ignored: list[int] = []
    for number, line in logical:
        if line[0] in _CF_SPACE:
            # Only the first lines of a file can start a logical line with whitespace:
            # Postfix warns "logical line must not start with whitespace" and skips it.
            ignored.append(number)
            continue
        match = _NAME_VALUE_RE.fullmatch(line)
        if match is None:
            raise ValueError(f"line {number}: {_syntax_problem(line)}")
        parameters[match["name"]] = match["value"].strip(_CF_SPACE)
    return CfFile(parameters, tuple(ignored))


def _syntax_problem(line: str) -> str:
    before, sep, _ = line.partition("=")
    if sep:
        problem = f"expected 'name = value', found {before.strip(_CF_SPACE)!r} before '='"
    else:
        problem = "expected 'name = value', found no '='"
    if line.startswith(_BOM):
        problem += (
            f" (the file starts with a byte-order mark, which Postfix reads as text{_BOM_FIX})"
        )
    return problem


def import_postfix(sources: Sequence[PostfixSource]) -> PostfixImport:
    """Return one map (and its database) per Postfix file; raise PostfixImportError if invalid."""
    problems: list[str] = []
    dropped: list[DroppedParameter] = []
    databases: dict[str, dict[str, Any]] = {}
    maps: dict[str, dict[str, Any]] = {}
    shared: dict[str, str] = {}
    origins: dict[str, str] = {}
    for source in sources:
        name = source.map_name if source.map_name is not None else PurePath(source.origin).stem
        if name in origins:
            problems.append(
                f"{source.origin}: map name {name!r} is already used for {origins[name]}: "
                "name the maps apart"
            )
            continue
        origins[name] = source.origin
        converted = _convert(source, name, _unique_database_name(name, databases))
        dropped.extend(converted.dropped)
        if converted.problems:
            problems.extend(f"{source.origin}: {problem}" for problem in converted.problems)
            continue
        database_name, database, entry = converted.database_name, converted.database, converted.map
        found = _validation_problems(converted)
        if found:
            problems.extend(f"{source.origin}: {problem}" for problem in found)
            continue
        # Files with identical connection settings share one database.
        fingerprint = json.dumps(database, sort_keys=True)
        if fingerprint in shared:
            entry["database"] = shared[fingerprint]
        else:
            shared[fingerprint] = database_name
            databases[database_name] = database
        maps[name] = entry
    if problems:
        raise PostfixImportError(problems)
    try:
        config = Config.model_validate(
            {"databases": databases, "maps": maps}, context={"base_dir": None}
        )
    except ValidationError as exc:
        raise PostfixImportError(
            [f"{format_path(e['loc'])}: {error_message(e)}" for e in exc.errors()]
        ) from None
    return PostfixImport(config, tuple(dropped))


def _unique_database_name(map_name: str, taken: dict[str, dict[str, Any]]) -> str:
    base = _DATABASE_NAME_CHARS_RE.sub("_", map_name)[:_MAX_DATABASE_NAME] or "postfix"
    name, number = base, 1
    while name in taken:
        number += 1
        suffix = f"-{number}"
        name = base[: _MAX_DATABASE_NAME - len(suffix)] + suffix
    return name


@dataclass
class _Converted:
    """One file's database and map, with what was dropped and what is wrong."""

    origin: str
    table_type: PostfixType
    map_name: str
    database_name: str
    query_parameters: tuple[str, ...] = _QUERY
    database: dict[str, Any] = field(default_factory=dict)
    map: dict[str, Any] = field(default_factory=dict)
    dropped: list[DroppedParameter] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def drop(self, parameter: str, reason: str) -> None:
        self.dropped.append(DroppedParameter(self.origin, parameter, reason))


def _convert(source: PostfixSource, map_name: str, database_name: str) -> _Converted:
    try:
        cf_file = parse_cf(source.text)
    except ValueError as exc:
        result = _Converted(source.origin, "mysql", map_name, database_name)
        result.problems.append(str(exc))
        return result
    parameters = cf_file.parameters
    table_type = source.table_type
    if table_type is None:
        if "dbpath" not in parameters:
            result = _Converted(source.origin, "mysql", map_name, database_name)
            result.problems.append(
                "cannot tell the table type: write mysql:FILE, pgsql:FILE or sqlite:FILE "
                "(a file with dbpath is taken as sqlite)"
            )
            return result
        table_type = "sqlite"
    result = _Converted(source.origin, table_type, map_name, database_name)
    for name in parameters:
        if name not in PARAMETERS[table_type]:
            result.drop(name.removeprefix(_BOM), _unknown_reason(name, table_type))
    if table_type == "sqlite":
        _sqlite_database(parameters, result)
    else:
        _server_database(parameters, result)
    _map_entry(parameters, result)
    # Report in the order of the file; the skipped lines come before every parameter.
    order: dict[str, int] = {}
    for index, name in enumerate(parameters):
        order.setdefault(name.removeprefix(_BOM), index)
    result.dropped.sort(key=lambda dropped: order.get(dropped.parameter, len(order)))
    result.dropped[:0] = [
        DroppedParameter(
            source.origin,
            f"line {number}",
            "starts with whitespace but continues no parameter before it; Postfix skips "
            "it with a warning (logical line must not start with whitespace)",
        )
        for number in cf_file.ignored_lines
    ]
    return result


def _unknown_reason(name: str, table_type: PostfixType) -> str:
    if name.startswith(_BOM):
        return (
            "the file starts with a byte-order mark, which Postfix reads as part of this "
            f"name, so Postfix ignores this line too{_BOM_FIX}"
        )
    others = [kind for kind in POSTFIX_TYPES if kind != table_type and name in PARAMETERS[kind]]
    if others:
        return (
            f"not a parameter of {table_type}_table(5), only of "
            f"{' and '.join(f'{kind}_table(5)' for kind in others)}; Postfix ignores it here too"
        )
    return f"not a parameter of {table_type}_table(5); Postfix ignores it too"


def _sqlite_database(parameters: dict[str, str], result: _Converted) -> None:
    dbpath = parameters.get("dbpath", "")
    if not dbpath:
        result.problems.append("dbpath: required: the SQLite database file")
        return
    result.database = {"driver": "sqlite", "name": dbpath}


def _server_database(parameters: dict[str, str], result: _Converted) -> None:
    database: dict[str, Any] = {
        "driver": _DRIVERS[result.table_type],
        "hosts": _hosts(parameters.get("hosts", ""), result),
    }
    for postfix_name, name in (("dbname", "name"), ("user", "user"), ("password", "password")):
        # An empty value means none, as in Postfix.
        if parameters.get(postfix_name):
            database[name] = parameters[postfix_name]
    if result.table_type == "mysql":
        _mysql_options(parameters, database, result)
    if "retry_interval" in parameters:
        seconds = _count(parameters, "retry_interval", result)
        if seconds is not None:
            database["retry_interval"] = seconds
    if "idle_interval" in parameters:
        result.drop("idle_interval", _DROPPED_REASONS["idle_interval"])
    # Postfix tries the hosts in random order.
    database["host_order"] = "random"
    result.database = database


def _hosts(text: str, result: _Converted) -> list[str]:
    items = [item for item in _LIST_SEPARATORS_RE.split(text) if item]
    if not items:
        return [_DEFAULT_HOST]
    hosts = [item.removeprefix("inet:") for item in items if not _is_uri(item)]
    if len(hosts) < len(items):
        # The URI is not echoed: it may hold a password.
        reason = (
            "a postgresql:// connection URI cannot be expressed: give its host, and dbname, "
            "user and password as separate parameters"
        )
        if hosts:
            result.drop("hosts", reason)
        else:
            result.problems.append(f"hosts: {reason}")
    return hosts


def _is_uri(item: str) -> bool:
    return item.lower().startswith(("postgresql://", "postgres://"))


def _mysql_options(
    parameters: dict[str, str], database: dict[str, Any], result: _Converted
) -> None:
    for name in ("option_file", "option_group", "tls_CApath", "tls_ciphers"):
        if name in parameters:
            result.drop(name, _DROPPED_REASONS[name])
    if "require_result_set" in parameters:
        require = _boolean(parameters, "require_result_set", result)
        if require is False:
            result.drop(
                "require_result_set",
                "sockmapd accepts only SELECT queries, which always return a result set "
                "(stored procedures are not supported)",
            )
    verify = _boolean(parameters, "tls_verify_cert", result)
    files = {
        "tls_ca_file": parameters.get("tls_CAfile", ""),
        "tls_cert_file": parameters.get("tls_cert_file", ""),
        "tls_key_file": parameters.get("tls_key_file", ""),
    }
    # Postfix's MySQL client turns TLS on when any of these is set.
    uses_tls = (
        any(files.values())
        or bool(parameters.get("tls_CApath"))
        or bool(parameters.get("tls_ciphers"))
        or verify is True
    )
    if not uses_tls:
        return
    database["tls"] = True
    database.update({name: path for name, path in files.items() if path})
    if verify is not None:
        database["tls_verify"] = verify


def _boolean(parameters: dict[str, str], name: str, result: _Converted) -> bool | None:
    value = parameters.get(name)
    if value is None:
        return None
    if value.lower() == "yes":
        return True
    if value.lower() == "no":
        return False
    result.problems.append(f"{name}: expected yes or no, found {value!r}")
    return None


def _count(parameters: dict[str, str], name: str, result: _Converted) -> int | None:
    value = parameters[name]
    if not _DIGITS_RE.fullmatch(value):
        result.problems.append(f"{name}: expected a whole number, found {value!r}")
        return None
    return int(value)


def _map_entry(parameters: dict[str, str], result: _Converted) -> None:
    entry: dict[str, Any] = {"database": result.database_name}
    query = _query(parameters, result)
    if query is not None:
        entry["query"] = query
    if "result_format" in parameters:
        entry["result_format"] = parameters["result_format"]
    domains = _domains(parameters.get("domain", ""), result)
    if domains:
        entry["domain"] = domains
    if "expansion_limit" in parameters:
        limit = _count(parameters, "expansion_limit", result)
        if limit:
            entry["expansion_limit"] = limit
    # Postfix folds the key of these tables to lower case before the lookup.
    entry["key_transform"] = ["lowercase"]
    if result.table_type == "sqlite":
        # Postfix's sqlite client reads only the first column of each row.
        entry["result_columns"] = "first"
    result.map = entry


def _query(parameters: dict[str, str], result: _Converted) -> str | None:
    """Return the query, from query, select_function or the legacy fields, in Postfix's order."""
    legacy = [name for name in _LEGACY_QUERY if name in parameters]
    if parameters.get("query"):
        for name in (*_SELECT_FUNCTION, *_LEGACY_QUERY):
            if name in parameters and name in PARAMETERS[result.table_type]:
                result.drop(name, "ignored, as by Postfix, because query is set")
        return _without_final_semicolon(parameters["query"])
    if result.table_type == "pgsql" and parameters.get("select_function"):
        for name in legacy:
            result.drop(name, "ignored, as by Postfix, because select_function is set")
        result.query_parameters = _SELECT_FUNCTION
        return f"SELECT {parameters['select_function']}('%s')"
    fields = [parameters.get(name, "") for name in _LEGACY_QUERY[:3]]
    if all(fields):
        result.query_parameters = _LEGACY_QUERY
        select_field, table, where_field = fields
        # A template from the admin's own file, checked by compile_query like any query.
        query = f"SELECT {select_field} FROM {table} WHERE {where_field} = '%s'"  # noqa: S608
        conditions = parameters.get("additional_conditions", "")
        return f"{query} {conditions}" if conditions else query
    if legacy:
        result.problems.append(
            "select_field, table, where_field: give all three (or query instead)"
        )
    else:
        result.problems.append("query: required (or the legacy select_field, table, where_field)")
    return None


def _without_final_semicolon(query: str) -> str:
    """Drop one ';' that ends the query: Postfix sends it, and MySQL and PostgreSQL accept it.

    Published maps (mailcow, ISPConfig) end their queries so; sockmapd takes one statement
    written without it. Anything else after the statement is left for the query check.
    """
    text = query.rstrip()
    return text[:-1].rstrip() if text.endswith(";") else query


def _domains(text: str, result: _Converted) -> list[str]:
    items = [item for item in _LIST_SEPARATORS_RE.split(text) if item]
    domains: list[str] = []
    for item in items:
        if item.startswith("/"):
            domains.append(f"{DOMAIN_FILE_PREFIX}{item}")
        elif item.startswith("!"):
            result.drop("domain", f"{item}: negated patterns are not supported")
        elif ":" in item:
            result.drop(
                "domain",
                f"{item}: type:table lookups are not supported: list its domains in the "
                "domain option or in a file",
            )
        else:
            domains.append(item)
    if items and not domains:
        result.drop(
            "domain",
            "no domain is left, so sockmapd looks up the keys of every domain",
        )
    return domains


def _validation_problems(converted: _Converted) -> list[str]:
    """Return the problems of one file's database and map, named by their Postfix parameters."""
    document = {
        "databases": {converted.database_name: converted.database},
        "maps": {converted.map_name: converted.map},
    }
    try:
        Config.model_validate(document, context={"base_dir": None})
    except ValidationError as exc:
        return [_parameter_problem(converted, e["loc"], error_message(e)) for e in exc.errors()]
    return []


def _parameter_problem(converted: _Converted, loc: tuple[str | int, ...], message: str) -> str:
    section = loc[0] if loc else ""
    option = loc[2] if len(loc) > 2 else None
    if section == "maps" and (option is None or option == "[key]"):
        return f"map name {converted.map_name!r}: {message}"
    if section == "maps" and option == "query":
        return f"{', '.join(converted.query_parameters)}: {message}"
    if section == "maps" and isinstance(option, str) and option in _MAP_PARAMETERS:
        return f"{_MAP_PARAMETERS[option]}: {message}"
    if section == "databases" and option == "name":
        return f"{'dbpath' if converted.table_type == 'sqlite' else 'dbname'}: {message}"
    if section == "databases" and isinstance(option, str) and option in _DATABASE_PARAMETERS:
        return f"{_DATABASE_PARAMETERS[option]}: {message}"
    return f"{format_path(loc)}: {message}"
