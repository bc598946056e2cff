"""Unit tests for sockmapd.protocol.netstring."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockmapd.protocol.netstring import (
    FrameTooLargeError,
    LengthHeaderError,
    MissingTerminatorError,
    NetstringDecoder,
    ProtocolError,
    encode_netstring,
)

STREAM = b"31:recipient someone@somewhere.com,0:,7:a:b,c d,"
STREAM_FRAMES = [b"recipient someone@somewhere.com", b"", b"a:b,c d"]


def feed_in_chunks(decoder: NetstringDecoder, data: bytes, size: int) -> list[bytes]:
    frames: list[bytes] = []
    for i in range(0, len(data), size):
        frames.extend(decoder.feed(data[i : i + size]))
    return frames


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def reference_decode(
    stream: bytes, max_payload: int
) -> tuple[list[bytes], type[ProtocolError] | None, bool]:
    """Byte-by-byte model of the framing rules: (frames, error class, ends inside a frame)."""
    frames: list[bytes] = []
    i, n = 0, len(stream)
    while i < n:
        j = i
        while j < n and stream[j : j + 1].isdigit():
            digits = stream[i : j + 1]
            if len(digits) > 1 and digits.startswith(b"0"):
                return frames, LengthHeaderError, False
            if int(digits) > max_payload:
                return frames, FrameTooLargeError, False
            j += 1
        if j == n:
            return frames, None, True
        if stream[j : j + 1] != b":" or j == i:
            return frames, LengthHeaderError, False
        start = j + 1
        end = start + int(stream[i:j])
        if end >= n:
            return frames, None, True
        if stream[end : end + 1] != b",":
            return frames, MissingTerminatorError, False
        frames.append(stream[start:end])
        i = end + 1
    return frames, None, False


# --- valid frames -------------------------------------------------------------


def test_single_frame() -> None:
    assert NetstringDecoder().feed(b"5:hello,") == [b"hello"]


def test_empty_payload() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"0:,") == [b""]
    assert not decoder.has_partial


def test_payload_with_colons_and_commas() -> None:
    assert NetstringDecoder().feed(b"8:a:b,c:d,,") == [b"a:b,c:d,"]


def test_payload_with_digits_and_binary() -> None:
    payload = bytes(range(256))
    assert NetstringDecoder().feed(encode_netstring(payload)) == [payload]


def test_pipelined_frames_in_one_chunk() -> None:
    assert NetstringDecoder().feed(STREAM) == STREAM_FRAMES


@pytest.mark.parametrize("size", [1, 2, 3, 16, 4096])
def test_chunked_stream(size: int) -> None:
    decoder = NetstringDecoder()
    assert feed_in_chunks(decoder, STREAM, size) == STREAM_FRAMES
    assert not decoder.has_partial


def test_one_byte_feeding_returns_each_frame_on_its_last_byte() -> None:
    decoder = NetstringDecoder()
    results = [decoder.feed(STREAM[i : i + 1]) for i in range(len(STREAM))]
    completed = [i for i, frames in enumerate(results) if frames]
    assert completed == [34, 37, 47]
    assert [f for frames in results for f in frames] == STREAM_FRAMES


def test_feed_empty_bytes() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"") == []
    decoder.feed(b"2:a")
    assert decoder.feed(b"") == []
    assert decoder.feed(b"b,") == [b"ab"]


def test_real_request_frame() -> None:
    frame = b"31:recipient someone@somewhere.com,"
    assert NetstringDecoder().feed(frame) == [b"recipient someone@somewhere.com"]


def test_exactly_max_payload_accepted() -> None:
    payload = b"x" * 100_000
    assert NetstringDecoder().feed(encode_netstring(payload)) == [payload]


def test_exactly_max_payload_accepted_one_byte_at_a_time() -> None:
    payload = bytes(range(256)) * 390 + b"tail"
    decoder = NetstringDecoder(max_payload=len(payload))
    assert feed_in_chunks(decoder, encode_netstring(payload), 1) == [payload]


def test_small_max_payload() -> None:
    decoder = NetstringDecoder(max_payload=5)
    assert decoder.feed(b"5:hello,0:,") == [b"hello", b""]
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"6")


def test_zero_max_payload() -> None:
    decoder = NetstringDecoder(max_payload=0)
    assert decoder.feed(b"0:,0:,") == [b"", b""]
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"1")


def test_max_payload_property_and_default() -> None:
    assert NetstringDecoder().max_payload == 100_000
    assert NetstringDecoder(max_payload=42).max_payload == 42


def test_negative_max_payload_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        NetstringDecoder(max_payload=-1)


# --- header errors ------------------------------------------------------------


@pytest.mark.parametrize("data", [b"01:a,", b"00:,", b"00", b"007"])
def test_leading_zero_rejected(data: bytes) -> None:
    with pytest.raises(LengthHeaderError) as info:
        NetstringDecoder().feed(data)
    assert info.value.reason == "invalid netstring length header"


def test_leading_zero_rejected_when_split() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"0") == []
    with pytest.raises(LengthHeaderError):
        decoder.feed(b"1")


@pytest.mark.parametrize(
    "data", [b"a:", b"1a:", b"-1:", b"+1:", b" 1:", b"1 :", b"\xd9\xa1:", b"1.0:", b"\x00", b","]
)
def test_non_digit_in_header_rejected(data: bytes) -> None:
    with pytest.raises(LengthHeaderError):
        NetstringDecoder().feed(data)


def test_non_digit_rejected_without_waiting_for_colon() -> None:
    decoder = NetstringDecoder()
    decoder.feed(b"12")
    with pytest.raises(LengthHeaderError):
        decoder.feed(b"x")


def test_empty_length_rejected() -> None:
    with pytest.raises(LengthHeaderError, match="empty"):
        NetstringDecoder().feed(b":")


def test_empty_length_after_frame_rejected() -> None:
    with pytest.raises(LengthHeaderError):
        NetstringDecoder().feed(b"1:a,:,")


# --- too large ----------------------------------------------------------------


@pytest.mark.parametrize("data", [b"999999999", b"999999999:", b"100001", b"100001:"])
def test_too_large_rejected_from_header_alone(data: bytes) -> None:
    with pytest.raises(FrameTooLargeError) as info:
        NetstringDecoder(max_payload=100_000).feed(data)
    assert info.value.reason == "request too large"


def test_too_large_rejected_on_first_digit_that_proves_it() -> None:
    decoder = NetstringDecoder(max_payload=100_000)
    for digit in b"10000":
        assert decoder.feed(bytes([digit])) == []
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"1")


def test_too_large_rejected_before_payload_bytes() -> None:
    decoder = NetstringDecoder(max_payload=100_000)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"100001:" + b"x" * 100_002)


def test_too_many_digits_in_one_huge_chunk() -> None:
    with pytest.raises(FrameTooLargeError):
        NetstringDecoder().feed(b"9" * 1_000_000)


def test_max_payload_plus_one_rejected() -> None:
    with pytest.raises(FrameTooLargeError):
        NetstringDecoder(max_payload=100_000).feed(encode_netstring(b"x" * 100_001))


def test_too_large_takes_precedence_over_later_non_digit() -> None:
    # "999999" already exceeds the limit before the "x" arrives, whatever the chunking.
    with pytest.raises(FrameTooLargeError):
        NetstringDecoder().feed(b"999999x")


# --- terminator ---------------------------------------------------------------


@pytest.mark.parametrize("data", [b"3:abcd", b"3:abc;", b"0:x", b"1:a,2:bc3"])
def test_missing_terminator_rejected(data: bytes) -> None:
    with pytest.raises(MissingTerminatorError):
        NetstringDecoder().feed(data)


def test_missing_terminator_rejected_when_split() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"3:ab") == []
    assert decoder.feed(b"c") == []
    with pytest.raises(MissingTerminatorError):
        decoder.feed(b"\n")


def test_wrong_documented_example_is_rejected() -> None:
    # The payload has 31 bytes, so the declared 32 swallows the ',' and the byte after
    # it (here the start of the next request) must be the terminator.
    decoder = NetstringDecoder()
    assert decoder.feed(b"32:recipient someone@somewhere.com,") == []
    assert decoder.has_partial
    with pytest.raises(MissingTerminatorError):
        decoder.feed(b"31:recipient someone@somewhere.com,")


def test_wrong_documented_example_rejected_in_one_chunk() -> None:
    with pytest.raises(MissingTerminatorError):
        NetstringDecoder().feed(b"32:recipient someone@somewhere.com,32:")


# --- decoder state ------------------------------------------------------------


def test_error_classes_share_base() -> None:
    for cls in (LengthHeaderError, FrameTooLargeError, MissingTerminatorError):
        assert issubclass(cls, ProtocolError)
    assert MissingTerminatorError().reason == "missing netstring terminator"
    assert str(FrameTooLargeError("detail")) == "request too large: detail"


def test_decoder_dead_after_error() -> None:
    decoder = NetstringDecoder()
    with pytest.raises(LengthHeaderError) as first:
        decoder.feed(b"x")
    for later in (b"0:,", b"", b"5:hello,"):
        with pytest.raises(LengthHeaderError) as again:
            decoder.feed(later)
        assert again.value is first.value
        assert again.value.frames == []
    assert not decoder.has_partial


def test_frames_before_the_bad_frame_travel_with_the_error() -> None:
    decoder = NetstringDecoder()
    with pytest.raises(MissingTerminatorError) as caught:
        decoder.feed(b"1:a,2:bc,3:def;")
    assert caught.value.frames == [b"a", b"bc"]
    with pytest.raises(MissingTerminatorError) as again:
        decoder.feed(b"1:a,")
    assert again.value.frames == []


def test_has_partial() -> None:
    decoder = NetstringDecoder()
    assert not decoder.has_partial
    steps = [(b"1", True), (b"0", True), (b":", True), (b"abcdefghij", True), (b",", False)]
    for data, partial in steps:
        decoder.feed(data)
        assert decoder.has_partial is partial
    decoder.feed(b"0:")
    assert decoder.has_partial
    decoder.feed(b",")
    assert not decoder.has_partial
    decoder.feed(b"1:a,2")
    assert decoder.has_partial


def test_encode_netstring() -> None:
    assert encode_netstring(b"") == b"0:,"
    assert encode_netstring(b"hello") == b"5:hello,"
    assert encode_netstring("é".encode()) == b"2:\xc3\xa9,"


# --- properties ---------------------------------------------------------------

SMALL_MAX = 300
payload_lists = st.lists(st.binary(max_size=SMALL_MAX), max_size=8)


@st.composite
def stream_and_cuts(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> list[bytes]:
    stream = draw(streams)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=12))
    return split_at(stream, cuts)


def split_streams(payloads: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    return stream_and_cuts(st.just(b"".join(encode_netstring(p) for p in payloads)))


# Streams that are mostly valid frames with damage mixed in, so every error path is hit.
noisy_streams = st.lists(
    st.one_of(
        st.binary(max_size=SMALL_MAX + 5).map(encode_netstring),
        st.sampled_from([b":", b",", b"0", b"1", b"9", b"3:", b"01", b"999", b"300", b"301"]),
        st.binary(max_size=4),
    ),
    max_size=8,
).map(b"".join)


@given(payload_lists)
def test_round_trip(payloads: list[bytes]) -> None:
    stream = b"".join(encode_netstring(p) for p in payloads)
    decoder = NetstringDecoder(max_payload=SMALL_MAX)
    assert decoder.feed(stream) == payloads
    assert not decoder.has_partial


@given(st.lists(st.binary(max_size=2000), max_size=3))
@settings(max_examples=50)
def test_round_trip_default_max(payloads: list[bytes]) -> None:
    stream = b"".join(encode_netstring(p) for p in payloads)
    assert feed_in_chunks(NetstringDecoder(), stream, 7) == payloads


@given(payload_lists.flatmap(lambda ps: st.tuples(st.just(ps), split_streams(ps))))
def test_any_split_gives_same_frames(case: tuple[list[bytes], list[bytes]]) -> None:
    payloads, chunks = case
    decoder = NetstringDecoder(max_payload=SMALL_MAX)
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    assert frames == payloads
    assert not decoder.has_partial


@given(stream_and_cuts(noisy_streams))
def test_matches_reference_model_for_any_split(chunks: list[bytes]) -> None:
    stream = b"".join(chunks)
    expected, error, partial = reference_decode(stream, SMALL_MAX)
    decoder = NetstringDecoder(max_payload=SMALL_MAX)
    frames: list[bytes] = []
    raised: type[ProtocolError] | None = None
    for chunk in chunks:
        try:
            frames.extend(decoder.feed(chunk))
        except ProtocolError as exc:
            # Frames completed before the bad one in the failing chunk come with the error.
            frames.extend(exc.frames)
            raised = type(exc)
            break
    assert raised is error
    assert frames == expected
    if raised is None:
        assert decoder.has_partial is partial
    else:
        assert not decoder.has_partial


@given(noisy_streams)
def test_one_byte_feeding_returns_every_frame_before_error(stream: bytes) -> None:
    expected, error, partial = reference_decode(stream, SMALL_MAX)
    decoder = NetstringDecoder(max_payload=SMALL_MAX)
    frames: list[bytes] = []
    raised: type[ProtocolError] | None = None
    for i in range(len(stream)):
        try:
            frames.extend(decoder.feed(stream[i : i + 1]))
        except ProtocolError as exc:
            raised = type(exc)
            break
    assert raised is error
    assert frames == expected
    assert decoder.has_partial is partial


@given(stream_and_cuts(st.binary(max_size=400)), st.integers(0, 1000))
def test_arbitrary_bytes_only_raise_protocol_error(chunks: list[bytes], max_payload: int) -> None:
    decoder = NetstringDecoder(max_payload=max_payload)
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                assert isinstance(frame, bytes)
                assert len(frame) <= max_payload
    except ProtocolError:
        with pytest.raises(ProtocolError):
            decoder.feed(b"0:,")


def test_each_protocol_error_has_its_own_metrics_kind() -> None:
    kinds = [cls.kind for cls in (LengthHeaderError, FrameTooLargeError, MissingTerminatorError)]
    assert kinds == ["invalid_length", "request_too_large", "missing_terminator"]
    assert ProtocolError.kind not in kinds
