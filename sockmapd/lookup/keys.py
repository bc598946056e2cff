"""Per-request key handling: key parts, key transforms, template expansion and result_format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sockmapd.config.expansions import Expansion, Parameter, Template, Text

# Every cost below is linear in the key (or result value) length, times the few
# recipient_delimiter characters for strip_extension; the socketmap layer bounds the
# request size, so no key can make a lookup expensive.

_DIGITS = "123456789"
_KEY_CODES = "sudSUD" + _DIGITS
_SEARCH_KEY_CODES = _KEY_CODES + "b"

# Local parts Postfix never splits (split_addr.c): postmaster, MAILER-DAEMON and the
# default double_bounce_sender, compared whole and case-insensitively.
_NEVER_SPLIT = frozenset({"postmaster", "mailer-daemon", "double-bounce"})
_OWNER_PREFIX = "owner-"
_REQUEST_SUFFIX = "-request"
# A DNS name is at most 253 characters with labels of at most 63; longer input cannot
# convert, and the check keeps the codec's cost (punycode grows faster than linearly in a
# label's length) bounded for hostile keys.
_MAX_DOMAIN = 253
_MAX_LABEL = 63


@dataclass(frozen=True, slots=True)
class KeyParts:
    """A lookup key split at its last '@', as Postfix's %u and %d see it."""

    key: str
    # The part before the last '@', or the whole key when it has no '@'.
    local: str
    # The part after the last '@'; None when there is no '@' or nothing after it.
    domain: str | None

    @classmethod
    def of(cls, key: str) -> KeyParts:
        """Split key at its last '@' (a quoted local part such as "a@b"@example.com stays whole)."""
        local, at, domain = key.rpartition("@")
        if not at:
            return cls(key, key, None)
        return cls(key, local, domain or None)

    def value(self, code: str) -> str | None:
        """Return the expansion of code for this key, or None when Postfix suppresses the query."""
        if code in ("s", "S"):
            return self.key
        if code in ("u", "U"):
            # "@example.com" has an empty local part; an unqualified key is its own local part.
            return self.local or None
        if code in ("d", "D"):
            return self.domain
        if len(code) == 1 and code in _DIGITS:
            return self._label(int(code))
        raise ValueError(f"unknown expansion code {code!r}")

    def _label(self, count: int) -> str | None:
        if self.domain is None:
            return None
        # Postfix skips empty labels: "example.com." and "example..com" both have
        # com as %1 and example as %2. Linear in the domain's length.
        labels = [label for label in self.domain.split(".") if label]
        if len(labels) < count:
            return None
        return labels[-count]


def base_local(local: str, delimiters: str) -> str:
    """Return local without its address extension (same rules as strip_extension)."""
    # Postfix split_addr(): every character of recipient_delimiter is a delimiter and the
    # extension starts at the first one found. It does not split postmaster, mailer-daemon
    # or double-bounce (the whole local part, case-insensitively; "postmaster+x" does
    # split), nor, when '-' is a delimiter and owner_request_special is on (its default),
    # owner-* and *-request. A delimiter at the very start means no split, since the
    # result would be an empty local part. Cost: O(len(local) * len(delimiters)).
    if not delimiters or not local:
        return local
    lowered = local.lower()
    if lowered in _NEVER_SPLIT:
        return local
    if "-" in delimiters and (
        lowered.startswith(_OWNER_PREFIX)
        or (len(lowered) > len(_REQUEST_SUFFIX) and lowered.endswith(_REQUEST_SUFFIX))
    ):
        return local
    first = -1
    for delimiter in delimiters:
        found = local.find(delimiter, 0, first if first >= 0 else len(local))
        if found >= 0:
            first = found
    if first <= 0:
        return local
    return local[:first]


def _lowercase(key: str, delimiters: str) -> str:
    return key.lower()


def _lowercase_domain(key: str, delimiters: str) -> str:
    local, at, domain = key.rpartition("@")
    if not at:
        return key
    return f"{local}@{domain.lower()}"


def _strip_extension(key: str, delimiters: str) -> str:
    local, at, domain = key.rpartition("@")
    if not at:
        # An unqualified key is a bare local part: Postfix tries user+foo, then user.
        return base_local(key, delimiters)
    return f"{base_local(local, delimiters)}@{domain}"


def _idna_to_ascii(key: str, delimiters: str) -> str:
    local, at, domain = key.rpartition("@")
    if not at or not domain or domain.isascii() or len(domain) > _MAX_DOMAIN:
        return key
    if any(len(label) > _MAX_LABEL for label in domain.split(".")):
        return key
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        # Not a valid IDN: look the key up as it came, as Postfix would.
        return key
    return f"{local}@{ascii_domain}"


def _trim(key: str, delimiters: str) -> str:
    return key.strip()


_TRANSFORMS: dict[str, Callable[[str, str], str]] = {
    "lowercase": _lowercase,
    "lowercase_domain": _lowercase_domain,
    "strip_extension": _strip_extension,
    "idna_to_ascii": _idna_to_ascii,
    "trim": _trim,
}
TRANSFORM_NAMES = tuple(_TRANSFORMS)


def apply_transforms(key: str, transforms: Sequence[str], delimiters: str) -> str:
    """Apply the named key transforms in order; raise ValueError for an unknown name."""
    # Only the part after the last '@' is a domain: lowercase_domain and idna_to_ascii
    # leave a key without '@' unchanged.
    for name in transforms:
        transform = _TRANSFORMS.get(name)
        if transform is None:
            raise ValueError(
                f"unknown key transform {name!r}: expected one of {', '.join(TRANSFORM_NAMES)}"
            )
        key = transform(key, delimiters)
    return key


class Expander:
    """Expand one parsed template against keys; built once per template."""

    __slots__ = ("_delimiters", "_only", "_pieces")

    def __init__(self, template: Template, delimiters: str = "+") -> None:
        for piece in template:
            if isinstance(piece, Expansion) and piece.code not in _SEARCH_KEY_CODES:
                raise ValueError(f"unknown expansion %{piece.code} for a key template")
        self._delimiters = delimiters
        # A piece is (text, None) for literal text or ("", code) for an expansion.
        self._pieces = tuple(
            (piece.text, None) if isinstance(piece, Text) else ("", piece.code)
            for piece in template
        )
        # The common templates are a single expansion: no join, no list.
        self._only = (
            template[0].code if len(template) == 1 and isinstance(template[0], Expansion) else None
        )

    def _value(self, code: str, parts: KeyParts) -> str | None:
        if code == "b":
            return base_local(parts.local, self._delimiters) or None
        return parts.value(code)

    def expand(self, parts: KeyParts) -> str | None:
        """Return the expanded text, or None when any expansion is suppressed."""
        if self._only is not None:
            return parts.key if self._only == "s" else self._value(self._only, parts)
        out: list[str] = []
        for text, code in self._pieces:
            if code is None:
                out.append(text)
                continue
            value = self._value(code, parts)
            if value is None:
                return None
            out.append(value)
        return "".join(out)


def query_params(parameters: tuple[Parameter, ...], parts: KeyParts) -> dict[str, str] | None:
    """Return the bind values {"x_s": ...} of a query, or None when the query is suppressed."""
    # Postfix ignores an empty key ("empty query string -- ignored") whatever the template.
    if not parts.key:
        return None
    params: dict[str, str] = {}
    for parameter in parameters:
        value = parameter.fill(parts.value)
        if value is None:
            # An expansion the key cannot fill (%d of an unqualified key, ...):
            # Postfix suppresses the whole query.
            return None
        params[parameter.name] = value
    return params


# Kinds of a result_format piece.
_TEXT, _VALUE, _VALUE_LOCAL, _VALUE_DOMAIN, _KEY = range(5)
_RESULT_KINDS = {"s": _VALUE, "u": _VALUE_LOCAL, "d": _VALUE_DOMAIN}


class ResultFormatter:
    """Apply result_format to each result value (Postfix semantics)."""

    __slots__ = ("_key_codes", "_pieces", "_plain", "_split", "_value_domain", "_value_local")

    def __init__(self, template: Template) -> None:
        pieces: list[tuple[int, str]] = []
        for piece in template:
            if isinstance(piece, Text):
                pieces.append((_TEXT, piece.text))
            elif piece.code in _RESULT_KINDS:
                pieces.append((_RESULT_KINDS[piece.code], ""))
            elif piece.code in _KEY_CODES:
                pieces.append((_KEY, piece.code))
            else:
                raise ValueError(f"unknown expansion %{piece.code} for result_format")
        self._pieces = tuple(pieces)
        kinds = {kind for kind, _ in pieces}
        self._plain = template == (Expansion("s"),)
        self._value_local = _VALUE_LOCAL in kinds
        self._value_domain = _VALUE_DOMAIN in kinds
        self._split = self._value_local or self._value_domain
        self._key_codes = tuple(dict.fromkeys(code for kind, code in pieces if kind == _KEY))

    def usable_for(self, parts: KeyParts) -> bool:
        """Return False when the key lacks a part %S/%U/%D/%1-%9 need (the query is suppressed)."""
        return all(parts.value(code) is not None for code in self._key_codes)

    def format(self, value: str, parts: KeyParts) -> str | None:
        """Return the formatted value, or None when this value is skipped."""
        # Postfix skips an empty result value whatever the format ("empty lookup result").
        if not value:
            return None
        if self._plain:
            return value
        local = domain = ""
        if self._split:
            local, at, domain = value.rpartition("@")
            if not at:
                local, domain = value, ""
            if self._value_domain and not domain:
                return None
            if self._value_local and at and not local:
                return None
        out: list[str] = []
        for kind, text in self._pieces:
            if kind == _TEXT:
                out.append(text)
            elif kind == _VALUE:
                out.append(value)
            elif kind == _VALUE_LOCAL:
                out.append(local)
            elif kind == _VALUE_DOMAIN:
                out.append(domain)
            else:
                expanded = parts.value(text)
                if expanded is None:
                    return None
                out.append(expanded)
        return "".join(out)
