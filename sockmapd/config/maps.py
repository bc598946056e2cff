"""The maps section: one socketmap per entry, a table and columns or a Postfix query."""

from __future__ import annotations

import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from sockmapd.config.base import Model, must_be_defined, reject_duplicates, resolve_path
from sockmapd.config.expansions import (
    RESULT_CODES,
    SEARCH_CODES,
    QueryDialect,
    TemplateError,
    compile_query,
    parse_template,
)
from sockmapd.config.files import read_bounded_text

MAX_IDENTIFIER = 64

IDENTIFIER_MESSAGE = "must be a plain SQL identifier (letters, digits, underscore)"
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_COLUMN_RE = re.compile(_IDENTIFIER)
_TABLE_RE = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})?")

# Names of the databases of the Config being validated, so that each map can
# report an undefined database at its own path (maps.<name>.database) in the
# same pass as every other error. None outside Config validation.
defined_databases: ContextVar[frozenset[str] | None] = ContextVar("defined_databases", default=None)
# The dialect of each valid database of that Config, so that a map's query is read
# as its database reads it. None outside Config validation.
database_dialects: ContextVar[dict[str, QueryDialect] | None] = ContextVar(
    "database_dialects", default=None
)


def _check_identifier(value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} {IDENTIFIER_MESSAGE}")
    if any(len(part) > MAX_IDENTIFIER for part in value.split(".")):
        raise ValueError(f"{value!r} has a part longer than {MAX_IDENTIFIER} characters")
    return value


KeyTransform = Literal["lowercase", "lowercase_domain", "strip_extension", "idna_to_ascii", "trim"]

# A map names either a table and columns or a Postfix query template.
_TABLE_FORM_FIELDS = frozenset({"table", "key", "value", "reason"})
MAX_SEARCH_ENTRIES = 10
DOMAIN_FILE_PREFIX = "file:"
# A domain file is a list of names; the cap keeps a wrong path from filling memory.
MAX_DOMAIN_FILE_BYTES = 16 * 1024 * 1024
_MAX_DOMAIN = 253
_DOMAIN_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOMAIN_FILE_SEPARATORS_RE = re.compile(r"[\s,]+")

# The fields given (not None) in the map being validated, so that each field can
# report a conflict with another at its own path in one pass. Empty outside MapConfig.
_given_map_fields: ContextVar[frozenset[str]] = ContextVar("_given_map_fields", default=frozenset())
# Domains read from the file: entries of the map being validated, keyed by entry.
_domain_files_read: ContextVar[dict[str, frozenset[str]] | None] = ContextVar(
    "_domain_files_read", default=None
)


def _given_fields(data: object) -> frozenset[str]:
    if isinstance(data, dict):
        return frozenset(str(name) for name, value in data.items() if value is not None)
    if isinstance(data, BaseModel):
        return frozenset(name for name, value in data if value is not None)
    return frozenset()


def _domain_forms(text: str) -> frozenset[str]:
    """Return a domain name lower-cased, as the only form it matches; raise ValueError if invalid.

    Postfix compares the key's domain with the list as written, so an internationalised
    name matches only in the form listed; key_transform idna_to_ascii with an xn--
    list matches both forms of a key.
    """
    name = text.lower()
    problem = ValueError(
        f"{text!r} is not a valid domain name: use labels of letters, digits and '-' "
        f"(not first or last) of at most 63 characters, {_MAX_DOMAIN} in all, "
        "without a trailing dot"
    )
    if not name or any(c.isspace() or not c.isprintable() for c in name):
        raise problem
    try:
        ascii_name = name.encode("idna").decode("ascii")
        # Decoding back rejects xn-- labels that are not valid punycode.
        ascii_name.encode("ascii").decode("idna")
    except UnicodeError:
        raise problem from None
    labels = ascii_name.split(".")
    if len(ascii_name) > _MAX_DOMAIN or not all(_DOMAIN_LABEL_RE.fullmatch(x) for x in labels):
        raise problem
    return frozenset({name})


def _read_domain_file(path: Path) -> frozenset[str]:
    """Return the domains listed in path; raise ValueError if it cannot be used."""
    text = read_bounded_text(path, MAX_DOMAIN_FILE_BYTES, str(path))
    domains: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        for name in _DOMAIN_FILE_SEPARATORS_RE.split(stripped):
            if not name:
                continue
            try:
                domains |= _domain_forms(name)
            except ValueError as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None
    return frozenset(domains)


def _check_domain_entry(value: str, info: ValidationInfo) -> str:
    """Return a domain name lower-cased or file:PATH resolved; read the file into the context."""
    if not value.startswith(DOMAIN_FILE_PREFIX):
        if ":" in value:
            raise ValueError(
                f"{value!r}: type:table lookups are not supported; list the domains here "
                f"or write them to a file and give {DOMAIN_FILE_PREFIX}/path/to/file"
            )
        _domain_forms(value)
        return value.lower()
    name = value[len(DOMAIN_FILE_PREFIX) :]
    if not name.strip() or "\0" in name:
        raise ValueError(f"{value!r} must name a file: {DOMAIN_FILE_PREFIX}/path/to/file")
    path = resolve_path(Path(name), info)
    entry = f"{DOMAIN_FILE_PREFIX}{path}"
    files = _domain_files_read.get()
    if files is not None:
        files[entry] = _read_domain_file(path)
    else:
        _read_domain_file(path)
    return entry


def _check_template(value: str, codes: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    try:
        parse_template(value, codes)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


def _check_search_entry(value: str) -> str:
    return _check_template(value, SEARCH_CODES)


ExpansionLimit = Annotated[int, Field(strict=True, ge=0)]
DomainEntry = Annotated[str, AfterValidator(_check_domain_entry)]
SearchEntry = Annotated[str, AfterValidator(_check_search_entry)]


class MapConfig(Model):
    """One socketmap: a table and columns, or a Postfix query, and how keys and answers look."""

    # Revalidate MapConfig instances passed to Config, so that the database check runs.
    model_config = ConfigDict(revalidate_instances="always")

    database: str
    # Validated even when absent, so that a map with neither form is reported.
    table: str | None = Field(default=None, validate_default=True)
    key: str | None = Field(default=None, validate_default=True)
    value: str | None = None
    reason: str | None = None
    query: str | None = None
    result_format: str | None = None
    expansion_limit: ExpansionLimit = 0
    domain: list[DomainEntry] = []  # noqa: RUF012
    key_transform: list[KeyTransform] = []  # noqa: RUF012
    recipient_delimiter: str = "+"
    search: list[SearchEntry] = []  # noqa: RUF012
    result_columns: Literal["all", "first"] = "all"
    # Seconds; 0 turns each off. Entries per map are capped: memory stays bounded.
    cache_ttl: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 0.0
    negative_cache_ttl: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 0.0
    cache_size: Annotated[int, Field(strict=True, ge=1, le=10_000_000)] = 10000
    stale_ttl: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = 0.0

    _domains: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _validate_with_context(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        files: dict[str, frozenset[str]] = {}
        given = _given_map_fields.set(_given_fields(data))
        read = _domain_files_read.set(files)
        try:
            entry = handler(data)
        finally:
            _domain_files_read.reset(read)
            _given_map_fields.reset(given)
        if isinstance(entry, MapConfig):
            domains: set[str] = set()
            for item in entry.domain:
                domains |= files[item] if item in files else _domain_forms(item)
            entry._domains = frozenset(domains)
        return entry

    @field_validator("database")
    @classmethod
    def _database_defined(cls, value: str) -> str:
        return must_be_defined("database", value, defined_databases.get())

    @field_validator("table")
    @classmethod
    def _table_identifier(cls, value: str | None) -> str | None:
        given = _given_map_fields.get()
        if value is None:
            if "query" in given:
                return None
            if given & _TABLE_FORM_FIELDS:
                raise ValueError("required key is missing")
            raise ValueError("required key is missing: give table and key, or query")
        return _check_identifier(value, _TABLE_RE)

    @field_validator("key")
    @classmethod
    def _key_identifier(cls, value: str | None) -> str | None:
        given = _given_map_fields.get()
        if value is None:
            if "table" in given and "query" not in given:
                raise ValueError("required key is missing")
            return None
        if "query" in given and "table" not in given:
            raise ValueError("only used with table, not with query")
        return _check_identifier(value, _COLUMN_RE)

    @field_validator("value", "reason")
    @classmethod
    def _column_identifier(cls, value: str | None) -> str | None:
        if value is None:
            return None
        given = _given_map_fields.get()
        if "query" in given and "table" not in given:
            raise ValueError("only used with table, not with query: the query's columns answer")
        return _check_identifier(value, _COLUMN_RE)

    @field_validator("query")
    @classmethod
    def _query_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "table" in _given_map_fields.get():
            raise ValueError("give either query, or table and key, not both")
        dialect = (database_dialects.get() or {}).get(info.data.get("database", ""))
        try:
            compile_query(value, dialect)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("result_format")
    @classmethod
    def _result_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "reason" in _given_map_fields.get():
            raise ValueError("give either result_format or reason, not both")
        return _check_template(value, RESULT_CODES)

    @field_validator("key_transform")
    @classmethod
    def _unique_transforms(cls, value: list[KeyTransform]) -> list[KeyTransform]:
        return reject_duplicates(value, "key transform")

    @field_validator("recipient_delimiter")
    @classmethod
    def _delimiter_characters(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty: give one or more delimiter characters, e.g. '+'")
        if any(c == "@" or c.isspace() or not c.isprintable() for c in value):
            raise ValueError(
                f"{value!r} must not contain '@', whitespace or control characters: "
                "every character is a delimiter"
            )
        return value

    @field_validator("search")
    @classmethod
    def _search_entries(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_SEARCH_ENTRIES:
            raise ValueError(f"at most {MAX_SEARCH_ENTRIES} entries, not {len(value)}")
        return reject_duplicates(value)

    @field_validator("stale_ttl")
    @classmethod
    def _stale_after_fresh(cls, value: float, info: ValidationInfo) -> float:
        if value == 0:
            return value
        # Absent when cache_ttl itself failed validation: that error is reported.
        cache_ttl = info.data.get("cache_ttl")
        if cache_ttl is None:
            return value
        if cache_ttl == 0:
            raise ValueError("needs cache_ttl > 0: only cached found answers can be served stale")
        if value < cache_ttl:
            raise ValueError(f"must be 0 or at least cache_ttl ({cache_ttl:g})")
        return value

    @property
    def is_query(self) -> bool:
        """Return True for a map given as a query template, False for table and key."""
        return self.query is not None

    @property
    def schema_name(self) -> str | None:
        """Return the schema part of table, or None when table is unqualified or absent."""
        if self.table is None:
            return None
        schema, sep, _ = self.table.partition(".")
        return schema if sep else None

    @property
    def table_name(self) -> str:
        """Return table without its schema part; only for maps given as table and key."""
        if self.table is None:
            raise AssertionError("a map given as a query has no table")
        return self.table.rpartition(".")[2]

    def domains(self) -> frozenset[str]:
        """Return the domains of the domain filter, names and file contents, in every IDNA form."""
        return self._domains
