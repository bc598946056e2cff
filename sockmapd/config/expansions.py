"""Postfix %-expansion templates (query, result_format of mysql_table(5)) parsed at load."""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class BoundQuery:
    """A query template turned into SQL for sqlalchemy.text() whose expansions are bound."""

    # Every expansion is a bind such as :x_s; every other ':' is written '\:' so that
    # text() creates no other bind; %% became % (SQLAlchemy doubles it where the driver needs).
    sql: str
    # Distinct lower-case codes of the binds ("s", "u", "d", "1".."9"), in first-use order.
    codes: tuple[str, ...]


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
_LONGER_LITERAL = (
    "an expansion inside a longer string literal cannot be bound: write CONCAT(%u, "
    "'@example.com') on MySQL or %u || '@example.com' on PostgreSQL and SQLite"
)
_BACKSLASH = (
    "a backslash is not allowed in a query: MySQL reads it as an escape inside string "
    "literals and PostgreSQL and SQLite do not; write the character itself, "
    "or CHAR(92) on MySQL and SQLite, CHR(92) on PostgreSQL"
)
_ADJACENT = (
    "an expansion must stand apart from names, numbers and other expansions to be bound: "
    "put a space or an operator next to it, and join values with "
    "CONCAT(%u, '@', %d) on MySQL or %u || '@' || %d on PostgreSQL and SQLite"
)


class _QueryCompiler:
    """One pass over a query template; builds the SQL and collects the bound codes."""

    __slots__ = ("_codes", "_out", "_previous_word", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._out: list[str] = []
        self._codes: list[str] = []
        self._previous_word = ""

    def run(self) -> BoundQuery:
        # Each step consumes at least one character, and str.find, anchored regex matches
        # and parse_template of a quoted token look at each character a bounded number of
        # times: the cost is linear in the query length. Queries come from the
        # administrator's config, never from clients.
        text = self._text
        end = len(text)
        at = 0
        while at < end:
            char = text[at]
            if char == "'":
                at = self._string(at)
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
                raise TemplateError(_BACKSLASH)
            elif char == "$" and _DOLLAR_RE.match(text, at):
                raise TemplateError(
                    "PostgreSQL dollar quoting ($$, $tag$) and positional parameters ($1) are "
                    "not allowed: write strings in single quotes (doubling a ' inside) and "
                    "use %s, %u, %d for the key"
                )
            elif (word := _WORD_RE.match(text, at)) is not None:
                at = word.end()
                self._word(word.group(), at)
            else:
                self._out.append(char)
                at += 1
        return BoundQuery("".join(self._out), tuple(self._codes))

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

    def _string(self, start: int) -> int:
        end = _closing_quote(self._text, start, "'")
        if end < 0:
            raise TemplateError(
                f"unterminated string literal at offset {start}: close it with ' "
                "and write '' for a quote inside it"
            )
        raw = self._text[start + 1 : end]
        if "\\" in raw:
            raise TemplateError(_BACKSLASH)
        template = parse_template(raw, QUERY_CODES)
        if len(template) == 1 and isinstance(template[0], Expansion):
            # '%s' is the form Postfix needs; the bind carries its own quoting.
            if self._blocks_bind():
                previous = self._out[-1]
                if not previous.startswith(_BIND_MARK) and _WORD_RE.match(previous[-1]):
                    raise TemplateError(
                        "a string literal with a prefix (E'', N'', X'', B'', _charset'') "
                        "cannot be bound: write the expansion as a plain '%s'"
                    )
                raise TemplateError(_ADJACENT)
            self._bind(template[0].code, end + 1)
        elif any(isinstance(piece, Expansion) for piece in template):
            raise TemplateError(f"{_LONGER_LITERAL} (found '{raw}')")
        else:
            literal = "".join(piece.text for piece in template if isinstance(piece, Text))
            self._out.append("'" + literal.replace(":", "\\:") + "'")
        return end + 1

    def _identifier(self, start: int, quote: str) -> int:
        end = _closing_quote(self._text, start, quote)
        if end < 0:
            raise TemplateError(
                f"unterminated quoted identifier at offset {start}: close it with {quote} "
                f"and write {quote}{quote} for a {quote} inside it"
            )
        raw = self._text[start + 1 : end]
        if "\\" in raw:
            # MySQL reads "..." as a string by default, where a backslash escapes the quote.
            raise TemplateError(_BACKSLASH)
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
            self._bind(code, at + 2)
        else:
            raise TemplateError(
                f"unknown expansion %{code} in the query: a query may use {_describe(QUERY_CODES)}"
            )
        return at + 2

    def _blocks_bind(self) -> bool:
        return bool(self._out) and _BIND_BLOCKER_RE.fullmatch(self._out[-1][-1:]) is not None

    def _bind(self, code: str, after: int) -> None:
        if after < len(self._text) and _WORD_RE.match(self._text[after]):
            # ':x_sabc' would be a different bind name.
            raise TemplateError(_ADJACENT)
        code = code.lower()
        if code not in self._codes:
            self._codes.append(code)
        self._out.append(_BIND_MARK + code)


def _closing_quote(text: str, start: int, quote: str) -> int:
    """Return the index of the quote closing the one at start (doubled quotes escape), or -1."""
    at = start + 1
    while (at := text.find(quote, at)) >= 0:
        if text.startswith(quote, at + 1):
            at += 2
        else:
            return at
    return -1


def compile_query(text: str) -> BoundQuery:
    """Turn a Postfix query into SQL whose expansions are binds; raise TemplateError if unsafe."""
    if not text.strip():
        raise TemplateError(
            f"the query is empty: write a SELECT that uses the key, e.g. {_EXAMPLE}"
        )
    bound = _QueryCompiler(text).run()
    stripped = text.lstrip()
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
    return bound
