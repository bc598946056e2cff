"""Postfix %-expansion templates (query, result_format of mysql_table(5)) parsed at load."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# Codes each kind of template accepts, as in mysql_table(5), pgsql_table(5) and sqlite_table(5).
QUERY_CODES = "sudSUD123456789"
RESULT_CODES = "sudSUD123456789"
# b is the local part without its address extension (recipient_delimiter); search templates only.
SEARCH_CODES = "sudb123456789"
# Bound parameter names are this prefix plus a lower-case code: x_s, x_u, x_d, x_1 .. x_9.
BIND_PREFIX = "x_"


class TemplateError(ValueError):
    """A template that cannot be used; the message says what is wrong and how to write it."""


@dataclass(frozen=True, slots=True)
class Text:
    """Literal text of a template, with %% already turned into %."""

    text: str


@dataclass(frozen=True, slots=True)
class Expansion:
    """One %X expansion of a template."""

    code: str


Template = tuple[Text | Expansion, ...]


# The SQL dialects a query is read in; None when the map's database is not known.
QueryDialect = Literal["mysql", "postgresql", "sqlite"]


@dataclass(frozen=True, slots=True)
class Parameter:
    """One bound parameter of a query: its bind name and the text it carries.

    A lone expansion ('%s', %u) carries just that expansion. A string literal that
    holds expansions ('@%d', '%u@', '%%%s') carries the literal's text, with the
    dialect's escapes decoded, %% made %, and the expansions filled in at lookup:
    the value Postfix's statement compares with, since Postfix pastes the escaped
    key into the literal.
    """

    name: str
    template: Template

    def fill(self, value: Callable[[str], str | None]) -> str | None:
        """Return the text with each expansion's value(code), or None if one is suppressed."""
        out: list[str] = []
        for piece in self.template:
            if isinstance(piece, Text):
                out.append(piece.text)
                continue
            filled = value(piece.code)
            if filled is None:
                return None
            out.append(filled)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class BoundQuery:
    """A query template turned into SQL for sqlalchemy.text() whose expansions are bound."""

    # Every expansion, and every literal holding one, is a bind such as :x_s or :x_l1;
    # every other ':' is written '\:' so that text() creates no other bind; %% outside
    # a bound literal became % (SQLAlchemy doubles it where the driver needs).
    sql: str
    # The binds, in first-use order; one per distinct expansion or literal text.
    parameters: tuple[Parameter, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """Distinct lower-case expansion codes of the binds, in first-use order."""
        codes: dict[str, None] = {}
        for parameter in self.parameters:
            for piece in parameter.template:
                if isinstance(piece, Expansion):
                    codes[piece.code] = None
        return tuple(codes)


def _describe(codes: str) -> str:
    return ", ".join(["%%", *(f"%{code}" for code in codes)])


def parse_template(text: str, codes: str) -> Template:
    """Parse %-expansions: %% is %, %X with X in codes an Expansion; else raise TemplateError."""
    # One pass over the text with str.find: linear in its length.
    pieces: list[Text | Expansion] = []
    pending: list[str] = []
    start = 0
    while (at := text.find("%", start)) >= 0:
        pending.append(text[start:at])
        if at + 1 == len(text):
            raise TemplateError(f"template {text!r} ends with a lone '%': write %% for a literal %")
        code = text[at + 1]
        if code == "%":
            pending.append("%")
        elif code in codes:
            if literal := "".join(pending):
                pieces.append(Text(literal))
            pending.clear()
            pieces.append(Expansion(code))
        else:
            raise TemplateError(
                f"unknown expansion %{code} in template {text!r}: "
                f"this template may use {_describe(codes)} (write %% for a literal %)"
            )
        start = at + 2
    pending.append(text[start:])
    if literal := "".join(pending):
        pieces.append(Text(literal))
    return tuple(pieces)


# Words that write data, lock rows or change the session. A lookup only reads, and the
# database user should only be granted SELECT; this list catches configuration mistakes
# (and SELECT ... INTO OUTFILE / INTO new_table) before the query ever reaches a server.
_WRITE_WORDS = frozenset(
    {
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "REPLACE",
        "UPSERT",
        "DROP",
        "ALTER",
        "CREATE",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "CALL",
        "EXEC",
        "EXECUTE",
        "COPY",
        "LOCK",
        "SET",
        "INTO",
        "LOAD",
        "HANDLER",
        "DO",
        "PREPARE",
        "DEALLOCATE",
    }
)
# SHARE after these words is a row-locking clause (FOR SHARE, FOR KEY SHARE), not a name.
_LOCK_PREFIX_WORDS = frozenset({"FOR", "KEY"})
_WORD_RE = re.compile(r"\w+")
_CALL_RE = re.compile(r"\s*\(")
# $$ or $tag$ opens a PostgreSQL dollar-quoted string; $1 is a PostgreSQL positional
# parameter, which asyncpg would fill with one of our binds. Matched even inside a name
# such as a$b$ (legal but rare): a false refusal is better than a string read two ways.
_DOLLAR_RE = re.compile(r"\$(?:[^\W\d]\w*)?\$|\$\d")
_BIND_MARK = ":" + BIND_PREFIX
# A bind is recognised by text() only when ':' does not follow one of these characters.
_BIND_BLOCKER_RE = re.compile(r"[\w:\\]")

_EXAMPLE = "SELECT goto FROM alias WHERE address = '%s'"
_BACKSLASH_OUTSIDE = (
    "a backslash is only allowed inside a string literal: remove it, or write the character itself"
)
_BACKSLASH_UNKNOWN = (
    "a backslash inside a string literal is read differently by MySQL (an escape) and "
    "by PostgreSQL and SQLite (a plain character): give the map a database, so that the "
    "query is read as that database reads it"
)
_BACKSLASH_BEFORE_EXPANSION = (
    "a backslash right before an expansion would escape the first character of the key "
    "in Postfix's statement: write \\\\ for a backslash before it"
)
_ADJACENT = (
    "an expansion must stand apart from names, numbers and other expansions to be bound: "
    "put a space or an operator next to it, and join values with "
    "CONCAT(%u, '@', %d) on MySQL or %u || '@' || %d on PostgreSQL and SQLite"
)
_PREFIXED = (
    "a string literal with a prefix ({prefix}'') cannot hold an expansion: the key would "
    "be read as {what}; write the literal without the prefix"
)
# MySQL's escapes inside a string literal; any other \c is c. \% and \_ keep their
# backslash, for LIKE.
_MYSQL_ESCAPES = {
    "0": "\0",
    "b": "\b",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "Z": "\x1a",
    "%": "\\%",
    "_": "\\_",
}
# PostgreSQL's single-character escapes in E'...' strings; octal, \x, \u and \U below.
_POSTGRESQL_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_OCTAL_RE = re.compile(r"[0-7]{1,3}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]{1,2}")
_UNICODE_RE = {"u": re.compile(r"[0-9A-Fa-f]{4}"), "U": re.compile(r"[0-9A-Fa-f]{8}")}
_LITERAL_BIND = "l"


class _QueryCompiler:
    """One pass over a query template, reading it as the dialect does; builds SQL and binds."""

    __slots__ = ("_dialect", "_literals", "_out", "_parameters", "_previous_word", "_text")

    def __init__(self, text: str, dialect: QueryDialect | None) -> None:
        self._text = text
        self._dialect = dialect
        self._out: list[str] = []
        self._parameters: dict[Template, Parameter] = {}
        self._literals = 0
        self._previous_word = ""

    def run(self) -> BoundQuery:
        # Each step consumes at least one character, and the literal scan, anchored regex
        # matches and parse_template of a quoted token look at each character a bounded
        # number of times: the cost is linear in the query length. Queries come from the
        # administrator's config, never from clients.
        text = self._text
        end = len(text)
        at = 0
        while at < end:
            char = text[at]
            if char == "'":
                at = self._string(at, "")
            elif char == '"' and self._dialect == "mysql":
                # MySQL reads "..." as a string (unless sql_mode has ANSI_QUOTES).
                at = self._string(at, "")
            elif char in '"`':
                at = self._identifier(at, char)
            elif char == "%":
                at = self._percent(at)
            elif char == ":":
                self._out.append("\\:")
                at += 1
            elif char == ";":
                raise TemplateError(
                    "';' is not allowed outside a string literal: the query must be exactly "
                    "one statement, written without a trailing ';'"
                )
            elif char == "#" or text.startswith(("--", "/*"), at):
                raise TemplateError(
                    "comments ('--', '/*', '#') are not allowed in a query: remove the comment"
                )
            elif char == "\\":
                raise TemplateError(_BACKSLASH_OUTSIDE)
            elif char == "$" and _DOLLAR_RE.match(text, at):
                raise TemplateError(
                    "PostgreSQL dollar quoting ($$, $tag$) and positional parameters ($1) are "
                    "not allowed: write strings in single quotes (doubling a ' inside) and "
                    "use %s, %u, %d for the key"
                )
            elif (word := _WORD_RE.match(text, at)) is not None:
                at = word.end()
                if text.startswith("'", at):
                    # A prefixed literal: E'..' on PostgreSQL, N'..', X'..', _utf8mb4'..'.
                    at = self._string(at, word.group())
                else:
                    self._word(word.group(), at)
            else:
                self._out.append(char)
                at += 1
        return BoundQuery("".join(self._out), tuple(self._parameters.values()))

    def _word(self, word: str, after: int) -> None:
        upper = word.upper()
        if upper in _WRITE_WORDS and not self._is_function_call(upper, after):
            raise TemplateError(f"the query may only read: {upper} is not allowed")
        if upper == "SHARE" and self._previous_word in _LOCK_PREFIX_WORDS:
            raise TemplateError(
                f"the query may only read: {self._previous_word} SHARE is not allowed"
            )
        self._previous_word = upper
        self._out.append(word)

    def _is_function_call(self, upper: str, after: int) -> bool:
        # REPLACE(str, from, to) is a string function in every engine, while the REPLACE
        # statement can neither follow SELECT or WITH nor have '(' after the word.
        # The whitespace after the word is scanned once more here: still linear.
        if upper != "REPLACE":
            return False
        return _CALL_RE.match(self._text, after) is not None

    def _escapes(self, prefix: str) -> bool:
        """Return True if a backslash escapes the next character in this literal."""
        if self._dialect == "mysql":
            return True
        return self._dialect == "postgresql" and prefix in ("E", "e")

    def _string(self, start: int, prefix: str) -> int:
        quote = self._text[start]
        escapes = self._escapes(prefix)
        end = _closing_quote(self._text, start, quote, escapes=escapes)
        if end < 0:
            doubled = "write '' for a quote inside it"
            if escapes:
                doubled += " (or \\')"
            raise TemplateError(
                f"unterminated string literal at offset {start}: close it with {quote} "
                f"and {doubled}"
            )
        raw = self._text[start + 1 : end]
        if "\\" in raw and self._dialect is None:
            raise TemplateError(_BACKSLASH_UNKNOWN)
        template = parse_template(raw, QUERY_CODES)
        if not any(isinstance(piece, Expansion) for piece in template):
            literal = "".join(piece.text for piece in template if isinstance(piece, Text))
            self._out.append(prefix + quote + literal.replace(":", "\\:") + quote)
            return end + 1
        if prefix and not (self._dialect == "postgresql" and prefix in ("E", "e")):
            raise TemplateError(_describe_prefix(prefix))
        if self._dialect == "postgresql" and self._unicode_prefix():
            raise TemplateError(_describe_prefix("U&"))
        if self._blocks_bind():
            raise TemplateError(_ADJACENT)
        decoded = tuple(
            Text(self._decode(piece.text, quote, escapes)) if isinstance(piece, Text) else piece
            for piece in template
        )
        self._bind(decoded, end + 1)
        return end + 1

    def _unicode_prefix(self) -> bool:
        # U&'...' on PostgreSQL: the & was written out as an operator character.
        out = self._out
        return len(out) >= 2 and out[-1] == "&" and out[-2] in ("U", "u")

    def _decode(self, text: str, quote: str, escapes: bool) -> str:
        """Return the characters a piece of literal text stands for in this dialect."""
        if not escapes:
            return text.replace(quote + quote, quote)
        if text.endswith("\\") and (len(text) - len(text.rstrip("\\"))) % 2:
            raise TemplateError(_BACKSLASH_BEFORE_EXPANSION)
        if self._dialect == "mysql":
            return _decode_mysql(text, quote)
        return _decode_postgresql(text)

    def _identifier(self, start: int, quote: str) -> int:
        end = _closing_quote(self._text, start, quote, escapes=False)
        if end < 0:
            raise TemplateError(
                f"unterminated quoted identifier at offset {start}: close it with {quote} "
                f"and write {quote}{quote} for a {quote} inside it"
            )
        raw = self._text[start + 1 : end]
        template = parse_template(raw, QUERY_CODES)
        if any(isinstance(piece, Expansion) for piece in template):
            raise TemplateError(
                f"an expansion inside a quoted identifier ({quote}{raw}{quote}) cannot be "
                "bound: table and column names cannot come from the key; "
                "write the value in single quotes, e.g. address = '%s'"
            )
        literal = "".join(piece.text for piece in template if isinstance(piece, Text))
        self._out.append(quote + literal.replace(":", "\\:") + quote)
        return end + 1

    def _percent(self, at: int) -> int:
        text = self._text
        if at + 1 == len(text):
            raise TemplateError("the query ends with a lone '%': write %% for a literal %")
        code = text[at + 1]
        if code == "%":
            self._out.append("%")
        elif code in QUERY_CODES:
            if self._blocks_bind():
                raise TemplateError(_ADJACENT)
            self._bind((Expansion(code),), at + 2)
        else:
            raise TemplateError(
                f"unknown expansion %{code} in the query: a query may use {_describe(QUERY_CODES)}"
            )
        return at + 2

    def _blocks_bind(self) -> bool:
        return bool(self._out) and _BIND_BLOCKER_RE.fullmatch(self._out[-1][-1:]) is not None

    def _bind(self, template: Template, after: int) -> None:
        if after < len(self._text) and _WORD_RE.match(self._text[after]):
            # ':x_sabc' would be a different bind name.
            raise TemplateError(_ADJACENT)
        # Upper-case codes expand as lower-case ones in a query (mysql_table(5)).
        template = tuple(
            Expansion(piece.code.lower()) if isinstance(piece, Expansion) else piece
            for piece in template
        )
        parameter = self._parameters.get(template)
        if parameter is None:
            if len(template) == 1 and isinstance(template[0], Expansion):
                name = BIND_PREFIX + template[0].code
            else:
                self._literals += 1
                name = f"{BIND_PREFIX}{_LITERAL_BIND}{self._literals}"
            parameter = self._parameters[template] = Parameter(name, template)
        self._out.append(":" + parameter.name)


def _describe_prefix(prefix: str) -> str:
    upper = prefix.upper()
    if upper == "U&":
        what = "Unicode escapes"
    elif upper in ("X", "B"):
        what = "hexadecimal digits" if upper == "X" else "binary digits"
    elif upper == "E":
        what = "PostgreSQL escapes on this database"
    else:
        what = "text in another character set" if prefix.startswith("_") else "national text"
    return _PREFIXED.format(prefix=prefix, what=what)


def _decode_mysql(text: str, quote: str) -> str:
    """Decode a MySQL literal's text: backslash escapes and the doubled quote."""
    out: list[str] = []
    at = 0
    end = len(text)
    while at < end:
        char = text[at]
        if char == "\\":
            escaped = text[at + 1]
            out.append(_MYSQL_ESCAPES.get(escaped, escaped))
            at += 2
        else:
            # A quote inside the literal's text is always doubled.
            out.append(char)
            at += 2 if char == quote else 1
    return "".join(out)


def _decode_postgresql(text: str) -> str:
    """Decode an E'...' string's text (octal and hex escapes are bytes of UTF-8)."""
    out = bytearray()
    at = 0
    end = len(text)
    while at < end:
        char = text[at]
        if char != "\\":
            out += char.encode("utf-8", "surrogatepass")
            at += 2 if char == "'" else 1
            continue
        escaped = text[at + 1]
        at += 2
        if escaped in _POSTGRESQL_ESCAPES:
            out += _POSTGRESQL_ESCAPES[escaped].encode()
        elif (octal := _OCTAL_RE.match(text, at - 1)) is not None:
            out.append(int(octal.group(), 8) & 0xFF)
            at = octal.end()
        elif escaped == "x" and (hexa := _HEX_RE.match(text, at)) is not None:
            out.append(int(hexa.group(), 16))
            at = hexa.end()
        elif escaped in _UNICODE_RE:
            code = _UNICODE_RE[escaped].match(text, at)
            if code is None or not 0 < int(code.group(), 16) <= 0x10FFFF:
                digits = 4 if escaped == "u" else 8
                raise TemplateError(
                    f"invalid Unicode escape \\{escaped} in a string literal: "
                    f"write \\{escaped} and {digits} hexadecimal digits"
                )
            out += chr(int(code.group(), 16)).encode("utf-8", "surrogatepass")
            at = code.end()
        else:
            out += escaped.encode("utf-8", "surrogatepass")
    try:
        decoded = out.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateError(
            "the escapes of a string literal do not make valid UTF-8 text"
        ) from None
    if "\0" in decoded:
        raise TemplateError("a string literal cannot hold a NUL character on PostgreSQL")
    return decoded


def _closing_quote(text: str, start: int, quote: str, *, escapes: bool) -> int:
    """Return the index of the quote closing the one at start, or -1.

    A doubled quote stands for one; where the literal has escapes, a backslash
    takes the character after it.
    """
    at = start + 1
    if not escapes:
        while (at := text.find(quote, at)) >= 0:
            if text.startswith(quote, at + 1):
                at += 2
            else:
                return at
        return -1
    end = len(text)
    while at < end:
        char = text[at]
        if char == "\\":
            at += 2
        elif char == quote:
            if text.startswith(quote, at + 1):
                at += 2
            else:
                return at
        else:
            at += 1
    return -1


def compile_query(text: str, dialect: QueryDialect | None = None) -> BoundQuery:
    """Turn a Postfix query into SQL whose expansions are binds; raise TemplateError if unsafe.

    The query is read as dialect reads it (string literals, their escapes and
    quoting); with no dialect, a backslash inside a literal is refused.
    """
    if not text.strip():
        raise TemplateError(
            f"the query is empty: write a SELECT that uses the key, e.g. {_EXAMPLE}"
        )
    bound = _QueryCompiler(text, dialect).run()
    # A UNION of parenthesised SELECTs, "(SELECT ...) UNION (SELECT ...)", starts with '('.
    stripped = text.lstrip().lstrip("(").lstrip()
    first = _WORD_RE.match(stripped)
    first_word = first.group() if first else stripped[:1]
    if first_word.upper() not in ("SELECT", "WITH") or not first_word.isascii():
        raise TemplateError(
            f"the query must be one SELECT (or WITH ... SELECT) statement, e.g. {_EXAMPLE}; "
            f"it starts with {first_word!r}"
        )
    if not bound.codes:
        raise TemplateError(
            "the query uses no expansion, so every key would get the same answer: "
            f"compare a column with '%s' (or %u, %d, %1 .. %9), e.g. {_EXAMPLE}"
        )
    _check_placeholders(bound)
    return bound


_PLACEHOLDER_RE = re.compile(r"%\(([^)]+?)\)s")
_TEXT_BIND_RE = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def _check_placeholders(bound: BoundQuery) -> None:
    """Refuse SQL whose parameters SQLAlchemy would misplace for a positional driver.

    SQLAlchemy writes each parameter as %(name)s and then finds them again with a
    pattern; a '%(' earlier in the text without a ')' before the parameter is taken
    for the start of one, and the statement comes out broken.
    """
    names = {parameter.name for parameter in bound.parameters}
    rendered = _TEXT_BIND_RE.sub(r"%(\1)s", bound.sql).replace("\\:", ":")
    for found in _PLACEHOLDER_RE.findall(rendered):
        if found not in names:
            raise TemplateError(
                "'%(' before an expansion, with no ')' between them, cannot be compiled: "
                "put a space between '%' and '(' (a % (b)), or a ')' before the expansion"
            )
