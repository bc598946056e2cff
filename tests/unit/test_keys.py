"""Key parts, key transforms, search-template expansion, query parameters and result_format."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sockmapd.config.expansions import (
    QUERY_CODES,
    RESULT_CODES,
    SEARCH_CODES,
    Expansion,
    Parameter,
    Template,
    Text,
    parse_template,
)
from sockmapd.lookup.keys import (
    TRANSFORM_NAMES,
    Expander,
    KeyParts,
    ResultFormatter,
    apply_transforms,
    base_local,
    query_params,
)

# KeyParts


@pytest.mark.parametrize(
    ("key", "local", "domain"),
    [
        ("user@example.com", "user", "example.com"),
        ("user", "user", None),
        ("@example.com", "", "example.com"),
        ("user@", "user", None),
        ('"a@b"@example.com', '"a@b"', "example.com"),
        ("user@[192.0.2.1]", "user", "[192.0.2.1]"),
        ("", "", None),
        ("a@b@c", "a@b", "c"),
        ("@", "", None),
    ],
)
def test_key_parts(key: str, local: str, domain: str | None) -> None:
    assert KeyParts.of(key) == KeyParts(key, local, domain)


@pytest.mark.parametrize(
    ("key", "s", "u", "d"),
    [
        ("user@example.com", "user@example.com", "user", "example.com"),
        # Unqualified: %u is the whole key and %d suppresses the query.
        ("user", "user", "user", None),
        # An empty local part suppresses %u.
        ("@example.com", "@example.com", None, "example.com"),
        # An '@' with nothing after it is unqualified for %d, but %u is still the local part.
        ("user@", "user@", "user", None),
        ('"a@b"@example.com', '"a@b"@example.com', '"a@b"', "example.com"),
        ("user@[192.0.2.1]", "user@[192.0.2.1]", "user", "[192.0.2.1]"),
        ("", "", None, None),
    ],
)
def test_key_part_values(key: str, s: str, u: str | None, d: str | None) -> None:
    parts = KeyParts.of(key)
    assert (parts.value("s"), parts.value("u"), parts.value("d")) == (s, u, d)
    # In a query, the upper-case codes expand exactly like the lower-case ones.
    assert (parts.value("S"), parts.value("U"), parts.value("D")) == (s, u, d)


@pytest.mark.parametrize(
    ("key", "labels"),
    [
        ("user@mail.example.com", ["com", "example", "mail", None]),
        ("user@example.com", ["com", "example", None]),
        ("user@localhost", ["localhost", None]),
        ("user", [None, None]),
        ("user@", [None]),
        ("@a.b.c.d.e.f.g.h.i", ["i", "h", "g", "f", "e", "d", "c", "b", "a"]),
        ("user@[192.0.2.1]", ["1]", "2", "0", "[192", None]),
        # Empty labels are skipped, as Postfix does (checked against postmap -q).
        ("user@example.com.", ["com", "example", None]),
        ("user@a..com", ["com", "a", None]),
        ("user@.com", ["com", None]),
    ],
)
def test_domain_labels_from_the_right(key: str, labels: list[str | None]) -> None:
    parts = KeyParts.of(key)
    assert [parts.value(str(n)) for n in range(1, len(labels) + 1)] == labels


def test_more_digits_than_labels_suppress() -> None:
    parts = KeyParts.of("user@example.com")
    assert [parts.value(digit) for digit in "3456789"] == [None] * 7


@pytest.mark.parametrize("code", ["x", "", "b", "10", "0", "%", "ss"])
def test_unknown_code(code: str) -> None:
    with pytest.raises(ValueError, match="unknown expansion code"):
        KeyParts.of("user@example.com").value(code)


@given(st.text())
def test_key_parts_split_at_the_last_at(key: str) -> None:
    parts = KeyParts.of(key)
    assert parts.key == key
    if "@" in key:
        assert f"{parts.local}@{parts.domain or ''}" == key
        assert "@" not in (parts.domain or "")
    else:
        assert (parts.local, parts.domain) == (key, None)
    for code in QUERY_CODES:
        value = parts.value(code)
        assert value is None or value in key


# base_local and strip_extension


@pytest.mark.parametrize(
    ("local", "delimiters", "expected"),
    [
        ("user+foo", "+", "user"),
        ("user+foo+bar", "+", "user"),
        ("user+", "+", "user"),
        ("user", "+", "user"),
        ("", "+", ""),
        # A delimiter first would leave an empty local part: no split.
        ("+foo", "+", "+foo"),
        ("-foo", "+-", "-foo"),
        # No delimiter configured: nothing is an extension.
        ("user+foo", "", "user+foo"),
        # Every character of the set delimits; the first one found wins.
        ("user-foo", "+-", "user"),
        ("user-foo+bar", "+-", "user"),
        ("user+foo-bar", "+-", "user"),
        ("user-foo", "+", "user-foo"),
        ("user.foo", "+-.", "user"),
        # postmaster, mailer-daemon and double-bounce are never split, compared whole.
        ("postmaster", "+-t", "postmaster"),
        ("PostMaster", "t", "PostMaster"),
        ("mailer-daemon", "-", "mailer-daemon"),
        ("MAILER-DAEMON", "+-", "MAILER-DAEMON"),
        ("double-bounce", "-", "double-bounce"),
        ("postmaster+x", "+", "postmaster"),
        # owner-* and *-request are kept whole only when '-' is a delimiter.
        ("owner-list+x", "+", "owner-list"),
        ("owner-list+x", "+-", "owner-list+x"),
        ("OWNER-list", "-", "OWNER-list"),
        ("list-request", "-", "list-request"),
        ("list+x-Request", "+-", "list+x-Request"),
        ("list-request+x", "+", "list-request"),
        ("-request", "-", "-request"),
        ("ab-request-x", "-", "ab"),
    ],
)
def test_base_local(local: str, delimiters: str, expected: str) -> None:
    assert base_local(local, delimiters) == expected


@pytest.mark.parametrize(
    ("key", "delimiters", "expected"),
    [
        ("user+foo@example.com", "+", "user@example.com"),
        ("user+foo", "+", "user"),
        ("+foo@x", "+", "+foo@x"),
        ("postmaster+x@example.com", "+", "postmaster@example.com"),
        ("postmaster@example.com", "+", "postmaster@example.com"),
        ("owner-list+x@example.com", "+-", "owner-list+x@example.com"),
        ("owner-list+x@example.com", "+", "owner-list@example.com"),
        ("user-foo+bar@example.com", "+-", "user@example.com"),
        ("user@ex+ample.com", "+", "user@ex+ample.com"),
        ("a+b@c+d", "+", "a@c+d"),
        ("@example.com", "+", "@example.com"),
    ],
)
def test_strip_extension(key: str, delimiters: str, expected: str) -> None:
    assert apply_transforms(key, ["strip_extension"], delimiters) == expected


@given(st.text(), st.sampled_from(["+", "+-", "-", "", "+-._"]))
def test_base_local_is_an_idempotent_prefix(local: str, delimiters: str) -> None:
    base = base_local(local, delimiters)
    assert local.startswith(base)
    assert base_local(base, delimiters) == base
    if base != local:
        assert base
        assert local[len(base)] in delimiters
        assert not any(char in delimiters for char in base)


# other transforms


@pytest.mark.parametrize(
    ("key", "transforms", "expected"),
    [
        ("User@Example.COM", ["lowercase"], "user@example.com"),
        ("User@Example.COM", ["lowercase_domain"], "User@example.com"),
        ("A@B@Example.COM", ["lowercase_domain"], "A@B@example.com"),
        ("Example.COM", ["lowercase_domain"], "Example.COM"),
        ("jürgen@bücher.example", ["idna_to_ascii"], "jürgen@xn--bcher-kva.example"),
        ("Jürgen@BÜCHER.example", ["idna_to_ascii"], "Jürgen@xn--bcher-kva.example"),
        ("user@example.com", ["idna_to_ascii"], "user@example.com"),
        ("user@xn--bcher-kva.example", ["idna_to_ascii"], "user@xn--bcher-kva.example"),
        # Not convertible: the key is looked up as it came.
        ("user@bücher..example", ["idna_to_ascii"], "user@bücher..example"),
        ("user@" + "ü" * 64 + ".example", ["idna_to_ascii"], "user@" + "ü" * 64 + ".example"),
        ("user@" + "ü." * 127, ["idna_to_ascii"], "user@" + "ü." * 127),
        ("bücher.example", ["idna_to_ascii"], "bücher.example"),
        ("jürgen@", ["idna_to_ascii"], "jürgen@"),
        ("  user@example.com \t\n", ["trim"], "user@example.com"),
        ("\u00a0user\u2003", ["trim"], "user"),
        ("user@example.com", [], "user@example.com"),
        (
            " User+Foo@Bücher.Example ",
            ["trim", "lowercase", "strip_extension", "idna_to_ascii"],
            "user@xn--bcher-kva.example",
        ),
        # Transforms run in the order given.
        (" User+Foo@X ", ["strip_extension", "trim"], "User@X"),
        (" User+Foo@X ", ["lowercase_domain", "trim"], "User+Foo@x"),
    ],
)
def test_transforms(key: str, transforms: list[str], expected: str) -> None:
    assert apply_transforms(key, transforms, "+") == expected


@pytest.mark.parametrize("name", ["LOWERCASE", "lower", "", "strip-extension"])
def test_unknown_transform(name: str) -> None:
    with pytest.raises(ValueError, match="unknown key transform") as info:
        apply_transforms("user@example.com", ["trim", name], "+")
    assert repr(name) in str(info.value)


def test_transform_names() -> None:
    assert set(TRANSFORM_NAMES) == {
        "lowercase",
        "lowercase_domain",
        "strip_extension",
        "idna_to_ascii",
        "trim",
    }


@given(
    st.text(),
    st.lists(st.sampled_from(TRANSFORM_NAMES), max_size=6),
    st.sampled_from(["+", "+-", ""]),
)
@example("a@" + "\u00ad" * 100, ["idna_to_ascii"], "+")
@example("a@\udcff.example", ["idna_to_ascii"], "+")
def test_transforms_never_raise(key: str, transforms: list[str], delimiters: str) -> None:
    result = apply_transforms(key, transforms, delimiters)
    assert isinstance(result, str)
    assert result.count("@") <= key.count("@")


@given(st.text(), st.text())
def test_lowercase_domain_keeps_the_local_part(local: str, domain: str) -> None:
    domain = domain.replace("@", "")
    assert apply_transforms(f"{local}@{domain}", ["lowercase_domain"], "+") == (
        f"{local}@{domain.lower()}"
    )


# Expander (search templates)


def expander(template: str, delimiters: str = "+") -> Expander:
    return Expander(parse_template(template, SEARCH_CODES), delimiters)


@pytest.mark.parametrize(
    ("template", "key", "expected"),
    [
        ("%s", "user+foo@example.com", "user+foo@example.com"),
        ("%b@%d", "user+foo@example.com", "user@example.com"),
        ("%u", "user+foo@example.com", "user+foo"),
        ("%b", "user+foo@example.com", "user"),
        ("@%d", "user+foo@example.com", "@example.com"),
        ("%b", "user+foo", "user"),
        ("%b", "postmaster+x@example.com", "postmaster"),
        ("%b", "+foo@example.com", "+foo"),
        ("%d", "user", None),
        ("@%d", "user", None),
        ("%b", "@example.com", None),
        ("%u", "@example.com", None),
        ("%b@%d", "@example.com", None),
        ("%u@%2.%1", "user@mail.example.com", "user@example.com"),
        ("%u@%3.%2.%1", "user@example.com", None),
        ("100%%%s", "user", "100%user"),
        ("fixed", "user", "fixed"),
        ("", "user", ""),
    ],
)
def test_expander(template: str, key: str, expected: str | None) -> None:
    assert expander(template).expand(KeyParts.of(key)) == expected


def test_expander_uses_its_delimiters() -> None:
    parts = KeyParts.of("user-foo+bar@example.com")
    assert expander("%b@%d", "+").expand(parts) == "user-foo@example.com"
    assert expander("%b@%d", "+-").expand(parts) == "user@example.com"
    assert expander("%b@%d", "").expand(parts) == "user-foo+bar@example.com"


def test_expander_default_delimiter_is_plus() -> None:
    template = parse_template("%b", SEARCH_CODES)
    assert Expander(template).expand(KeyParts.of("user+foo-bar")) == "user"


def test_expander_rejects_unknown_codes() -> None:
    with pytest.raises(ValueError, match="unknown expansion %x"):
        Expander((Expansion("x"),))


@given(st.text())
def test_expander_plain_key_is_the_key(key: str) -> None:
    assert expander("%s").expand(KeyParts.of(key)) == key


# query_params


@pytest.mark.parametrize(
    ("codes", "key", "expected"),
    [
        (("s",), "user@example.com", {"x_s": "user@example.com"}),
        (("u", "d"), "user@example.com", {"x_u": "user", "x_d": "example.com"}),
        (("s",), "user", {"x_s": "user"}),
        (("u",), "user", {"x_u": "user"}),
        (("d",), "user", None),
        (("s", "d"), "user", None),
        (("u",), "@example.com", None),
        (("d",), "user@", None),
        (("1", "2"), "user@example.com", {"x_1": "com", "x_2": "example"}),
        (("3",), "user@example.com", None),
        (("s",), "", None),
        ((), "user", {}),
    ],
)
def test_query_params(codes: tuple[str, ...], key: str, expected: dict[str, str] | None) -> None:
    parameters = tuple(Parameter(f"x_{code}", (Expansion(code),)) for code in codes)
    assert query_params(parameters, KeyParts.of(key)) == expected


@pytest.mark.parametrize(
    ("template", "key", "expected"),
    [
        ((Text("@"), Expansion("d")), "user@example.com", "@example.com"),
        ((Expansion("u"), Text("@")), "user@example.com", "user@"),
        ((Text("%"), Expansion("s")), "a_b%c@example.com", "%a_b%c@example.com"),
        ((Expansion("u"), Text("@"), Expansion("d")), "user+x@example.com", "user+x@example.com"),
        ((Text("it's "), Expansion("s"), Text("\n")), "o'k", "it's o'k\n"),
        ((Text("@"), Expansion("d")), "user", None),
        ((Expansion("u"), Text("@")), "@example.com", None),
        ((Text("x."), Expansion("2")), "user@mail.example.com", "x.example"),
    ],
)
def test_query_params_fill_literals(template: Template, key: str, expected: str | None) -> None:
    """A literal holding expansions is one value: its text with the key's parts filled in."""
    parameters = (Parameter("x_l1", template),)
    found = query_params(parameters, KeyParts.of(key))
    assert found == (None if expected is None else {"x_l1": expected})


def test_query_params_suppressed_by_any_parameter() -> None:
    parameters = (
        Parameter("x_s", (Expansion("s"),)),
        Parameter("x_l1", (Text("@"), Expansion("d"))),
    )
    assert query_params(parameters, KeyParts.of("user")) is None
    assert query_params(parameters, KeyParts.of("u@d")) == {"x_s": "u@d", "x_l1": "@d"}


# ResultFormatter


def formatter(template: str) -> ResultFormatter:
    return ResultFormatter(parse_template(template, RESULT_CODES))


KEY = KeyParts.of("user@example.com")


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("%s", "alice@example.org", "alice@example.org"),
        ("%s", "", None),
        ("smtp:[%s]", "mx.example.com", "smtp:[mx.example.com]"),
        ("smtp:[%s]", "", None),
        # An empty value is skipped whatever the format.
        ("OK", "", None),
        ("OK", "anything", "OK"),
        ("100%%", "x", "100%"),
        ("%u", "alice@example.org", "alice"),
        ("%u", "alice", "alice"),
        ("%u", "@example.org", None),
        ("%u", "a@b@example.org", "a@b"),
        ("%d", "alice@example.org", "example.org"),
        ("%d", "alice", None),
        ("%d", "alice@", None),
        ("%d", "@example.org", "example.org"),
        ("%u+ext@%d", "alice@example.org", "alice+ext@example.org"),
        ("%u/%s", "alice", "alice/alice"),
        # Upper-case and digit expansions come from the input key, not the value.
        ("%s@%D", "bob", "bob@example.com"),
        ("%S", "bob", "user@example.com"),
        ("%U:%u", "bob@example.org", "user:bob"),
        ("%s.%2.%1", "mx", "mx.example.com"),
    ],
)
def test_result_format(template: str, value: str, expected: str | None) -> None:
    assert formatter(template).format(value, KEY) == expected


@pytest.mark.parametrize(
    ("template", "key", "usable"),
    [
        ("%s", "user", True),
        ("%u@%d", "user", True),
        ("%D", "user@example.com", True),
        ("%D", "user", False),
        ("%D", "user@", False),
        ("%U", "user", True),
        ("%U", "@example.com", False),
        ("%S", "", True),
        ("%2", "user@example.com", True),
        ("%3", "user@example.com", False),
        ("%1", "user", False),
        ("%1.%3", "user@a.b", False),
    ],
)
def test_result_format_usable_for(template: str, key: str, usable: bool) -> None:
    assert formatter(template).usable_for(KeyParts.of(key)) is usable


def test_result_format_from_an_unusable_key_skips() -> None:
    assert formatter("%s@%D").format("bob", KeyParts.of("user")) is None
    assert formatter("%s@%3").format("bob", KeyParts.of("user@example.com")) is None


def test_result_format_rejects_unknown_codes() -> None:
    with pytest.raises(ValueError, match="unknown expansion %b"):
        ResultFormatter((Text("x"), Expansion("b")))


@given(st.text(), st.text())
def test_plain_result_format_is_the_value(value: str, key: str) -> None:
    expected = value or None
    assert formatter("%s").format(value, KeyParts.of(key)) == expected


@given(st.text())
@example("a@b@c")
def test_local_and_domain_of_a_value_rebuild_it(value: str) -> None:
    formatted = formatter("%u@%d").format(value, KEY)
    local, at, domain = value.rpartition("@")
    if at and local and domain:
        assert formatted == value
    else:
        assert formatted is None


def test_query_and_result_codes() -> None:
    assert set(QUERY_CODES) == set(RESULT_CODES) == set("sudSUD123456789")
    assert set(SEARCH_CODES) == set("sudb123456789")
