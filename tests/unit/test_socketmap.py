"""Unit tests for sockmapd.protocol.socketmap."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockmapd.protocol.netstring import NetstringDecoder, encode_netstring
from sockmapd.protocol.socketmap import (
    NOTFOUND_REPLY,
    MalformedRequest,
    Reply,
    ReplyError,
    ReplyTooLargeError,
    Request,
    Status,
    decode_frame,
    encode_reply,
    frame_payload_size,
    frame_status,
    parse_reply,
    parse_request,
)

# --- requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "map_name", "key"),
    [
        (b"recipient someone@somewhere.com", "recipient", "someone@somewhere.com"),
        (b"virtual john doe@example.com", "virtual", "john doe@example.com"),
        (b'aliases "john doe"@example.com', "aliases", '"john doe"@example.com'),
        (b"m a,b:c", "m", "a,b:c"),
        (b"m 12:abc,", "m", "12:abc,"),
        (b"m user@[192.0.2.1]", "m", "user@[192.0.2.1]"),
        (b"m *", "m", "*"),
        (b"m x'OR'1'='1", "m", "x'OR'1'='1"),
        (b"m '; DROP TABLE users; --", "m", "'; DROP TABLE users; --"),
        ("m jürgen@bücher.example".encode(), "m", "jürgen@bücher.example"),
        ("карта ключ".encode(), "карта", "ключ"),
        (b"m ", "m", ""),
        (b"m  leading", "m", " leading"),
        (b"m trailing ", "m", "trailing "),
        (b"m a\tb\r\n", "m", "a\tb\r\n"),
        # A NUL in the map name is no frame error: no map has that name.
        (b"m\x00ap key", "m\x00ap", "key"),
    ],
)
def test_parse_request(payload: bytes, map_name: str, key: str) -> None:
    assert parse_request(payload) == Request(map_name, key)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "missing space between map name and key"),
        (b"recipient", "missing space between map name and key"),
        (b"recipient\tkey", "missing space between map name and key"),
        (b" key", "empty map name"),
        (b"  key", "empty map name"),
        (b"\xff\xfe key", "map name is not valid UTF-8"),
        (b"m \xc3", "key is not valid UTF-8"),
        (b"m \xed\xa0\x80", "key is not valid UTF-8"),
        (b"m \xc0\xaf", "key is not valid UTF-8"),
        (b"m a\x00b", "key contains a NUL byte"),
        (b"m \x00", "key contains a NUL byte"),
        (b"\xff\xfe \x00", "map name is not valid UTF-8"),
        (b"m\x00 \xff", "key is not valid UTF-8"),
    ],
)
def test_parse_request_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedRequest) as info:
        parse_request(payload)
    assert info.value.reason == reason


def test_request_is_frozen() -> None:
    request = Request("m", "k")
    with pytest.raises(AttributeError):
        request.key = "other"  # type: ignore[misc]


@given(st.binary(max_size=200))
def test_parse_request_only_raises_malformed_request(payload: bytes) -> None:
    reason = ""
    try:
        request = parse_request(payload)
    except MalformedRequest as exc:
        reason = exc.reason
    if reason:
        return
    assert request.map_name
    assert " " not in request.map_name
    assert "\x00" not in request.key
    assert (request.map_name + " " + request.key).encode() == payload


@given(st.text(min_size=1).filter(lambda s: " " not in s), st.text())
def test_parse_request_round_trip(map_name: str, key: str) -> None:
    payload = (map_name + " " + key).encode()
    if "\x00" in key:
        with pytest.raises(MalformedRequest):
            parse_request(payload)
    else:
        assert parse_request(payload) == Request(map_name, key)


# --- replies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "payload", "frame"),
    [
        (Reply.ok("x"), b"OK x", b"4:OK x,"),
        (Reply.ok("a, b ,c"), b"OK a, b ,c", b"10:OK a, b ,c,"),
        (Reply.ok("é"), b"OK \xc3\xa9", b"5:OK \xc3\xa9,"),
        (Reply.notfound(), b"NOTFOUND ", b"9:NOTFOUND ,"),
        (NOTFOUND_REPLY, b"NOTFOUND ", b"9:NOTFOUND ,"),
        (Reply.temp("db down"), b"TEMP db down", b"12:TEMP db down,"),
        (
            Reply.timeout("query timed out"),
            b"TIMEOUT query timed out",
            b"23:TIMEOUT query timed out,",
        ),
        (Reply.perm("unknown map"), b"PERM unknown map", b"16:PERM unknown map,"),
        (Reply.temp(""), b"TEMP ", b"5:TEMP ,"),
    ],
)
def test_reply_payload_and_frame(reply: Reply, payload: bytes, frame: bytes) -> None:
    assert reply.payload() == payload
    assert encode_reply(reply) == frame


def test_reply_constructors_set_status() -> None:
    assert Reply.ok("d") == Reply(Status.OK, "d")
    assert Reply.notfound() == Reply(Status.NOTFOUND, "")
    assert Reply.temp("r") == Reply(Status.TEMP, "r")
    assert Reply.timeout("r") == Reply(Status.TIMEOUT, "r")
    assert Reply.perm("r") == Reply(Status.PERM, "r")
    assert Reply.notfound() == NOTFOUND_REPLY


def test_status_values_are_wire_words() -> None:
    assert [s.value for s in Status] == ["OK", "NOTFOUND", "TEMP", "TIMEOUT", "PERM"]


def test_ok_with_empty_data_rejected() -> None:
    with pytest.raises(ValueError, match="data"):
        Reply.ok("")
    with pytest.raises(ValueError, match="data"):
        Reply(Status.OK, "")


def test_notfound_with_text_rejected() -> None:
    with pytest.raises(ValueError, match="NOTFOUND"):
        Reply(Status.NOTFOUND, "x")


def test_replies_are_values() -> None:
    # Immutable by contract (Final attributes, checked by mypy): equal by value.
    assert Reply.ok("v") == Reply(Status.OK, "v")
    assert hash(Reply.ok("v")) == hash(Reply(Status.OK, "v"))
    assert Reply.ok("v") != Reply.temp("v")
    assert Reply.ok("v") != (Status.OK, "v")
    assert len({NOTFOUND_REPLY, Reply.notfound()}) == 1
    assert repr(Reply.ok("v")) == "Reply(status=<Status.OK: 'OK'>, text='v')"


def test_ok_data_sent_as_is() -> None:
    assert Reply.ok("a\r\nb\x00").payload() == b"OK a\r\nb\x00"


@pytest.mark.parametrize("factory", [Reply.temp, Reply.timeout, Reply.perm])
def test_control_characters_in_reasons_become_spaces(factory: Callable[[str], Reply]) -> None:
    reply = factory("a\r\nb\x00c\x7fd\x1b[31m\tz\x85y\u2028x")
    word = reply.status.value.encode()
    assert reply.payload() == word + b" a  b c d [31m z y x"


@given(st.text())
def test_reason_payload_never_has_control_bytes(reason: str) -> None:
    payload = Reply.perm(reason).payload()
    assert not any(b < 0x20 or b == 0x7F for b in payload)
    assert payload.startswith(b"PERM ")


def test_reason_with_surrogate_still_encodes() -> None:
    assert Reply.temp("bad\udcffbyte").payload() == b"TEMP bad?byte"


def test_reply_size_limit() -> None:
    fits = Reply.ok("x" * 99_997)
    assert len(fits.payload()) == 100_000
    assert encode_reply(fits).startswith(b"100000:OK x")
    with pytest.raises(ReplyTooLargeError) as info:
        encode_reply(Reply.ok("x" * 99_998))
    assert info.value.size == 100_001


def test_reply_size_limit_counts_bytes_not_characters() -> None:
    reply = Reply.ok("é" * 4)
    assert encode_reply(reply, max_payload=11) == b"11:OK " + "é".encode() * 4 + b","
    with pytest.raises(ReplyTooLargeError) as info:
        encode_reply(reply, max_payload=10)
    assert info.value.size == 11


def test_encoded_reply_decodes_as_one_frame() -> None:
    reply = Reply.ok("smtp:[mx.example]:25, x")
    assert NetstringDecoder().feed(encode_reply(reply)) == [reply.payload()]


# --- parsing replies (client side) --------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        (b"OK x", Reply.ok("x")),
        (b"OK a b c", Reply.ok("a b c")),
        (b"OK  x", Reply.ok(" x")),
        (b"NOTFOUND ", NOTFOUND_REPLY),
        (b"NOTFOUND", NOTFOUND_REPLY),
        (b"NOTFOUND ignored text", NOTFOUND_REPLY),
        (b"TEMP db down", Reply.temp("db down")),
        (b"TEMP", Reply.temp("")),
        (b"TIMEOUT slow", Reply.timeout("slow")),
        (b"PERM bad \xff", Reply.perm("bad \ufffd")),
        (b"OK \xc3\xa9", Reply.ok("é")),
    ],
)
def test_parse_reply(payload: bytes, reply: Reply) -> None:
    assert parse_reply(payload) == reply


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b" ",
        b"OK",
        b"OK ",
        b"ok x",
        b"Ok x",
        b"FOUND x",
        b"NOTFOUNDX",
        b" OK x",
        b"OK\tx",
        b"\xff",
    ],
)
def test_parse_reply_rejects(payload: bytes) -> None:
    with pytest.raises(ReplyError) as info:
        parse_reply(payload)
    assert info.value.reason


reasons = st.text()
replies = st.one_of(
    st.text(min_size=1).map(Reply.ok),
    st.just(NOTFOUND_REPLY),
    st.builds(Reply.temp, reasons),
    st.builds(Reply.timeout, reasons),
    st.builds(Reply.perm, reasons),
)


@given(replies)
def test_parse_reply_round_trip(reply: Reply) -> None:
    parsed = parse_reply(reply.payload())
    assert parsed.status is reply.status
    assert parsed.payload() == reply.payload()
    sanitized = any(c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029" for c in reply.text)
    if reply.status is Status.OK or not sanitized:
        assert parsed == reply


@given(st.binary(max_size=100))
def test_parse_reply_only_raises_reply_error(payload: bytes) -> None:
    try:
        reply = parse_reply(payload)
    except ReplyError:
        pass
    else:
        assert payload.startswith(reply.status.value.encode())


@pytest.mark.parametrize(
    "reply",
    [
        Reply.ok("x"),
        Reply.ok("TIMEOUT and more: 1,2"),
        Reply.notfound(),
        Reply.temp("db down"),
        Reply.timeout("slow"),
        Reply.perm("bad"),
        Reply.ok("ü" * 300),
    ],
)
def test_frame_helpers_read_back_what_encode_reply_wrote(reply: Reply) -> None:
    frame = encode_reply(reply)
    assert frame_status(frame) is reply.status
    assert frame_payload_size(frame) == len(reply.payload())
    assert decode_frame(frame) == reply


@pytest.mark.parametrize(
    "reply",
    [
        Reply.ok("example.com/user1/"),
        Reply.ok("ünïcode,ok"),
        NOTFOUND_REPLY,
        Reply.temp("database down\r\nfake: line"),
        Reply.timeout("slow"),
        Reply.perm("bad request"),
    ],
)
def test_a_replys_frame_is_its_payload_as_a_netstring(reply: Reply) -> None:
    assert reply.frame() == encode_netstring(reply.payload())
    assert reply.frame() == encode_reply(reply, 10**9)
