"""Socketmap requests and replies: the payloads carried inside netstrings.

Pure functions and values, no I/O. A request is ``<mapname> <key>``; a reply is
``<STATUS> <text>``. Framing lives in :mod:`sockmapd.protocol.netstring`.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

from sockmapd.protocol.netstring import encode_netstring

_SPACE = 0x20


class Status(enum.Enum):
    """Reply status; the value is the word sent on the wire."""

    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"
    TIMEOUT = "TIMEOUT"
    PERM = "PERM"


_STATUS_BY_WORD: dict[bytes, Status] = {s.value.encode("ascii"): s for s in Status}
_PREFIX: dict[Status, bytes] = {s: s.value.encode("ascii") + b" " for s in Status}

# C0 controls, DEL, C1 controls and the Unicode line separators become spaces in
# reasons, so a reason built from peer or database text cannot forge log lines.
_CONTROL_TO_SPACE = dict.fromkeys((*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029), " ")


class MalformedRequest(Exception):
    """A well-framed payload that is not a socketmap request: answer PERM, keep the connection."""

    kind = "malformed_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Request(NamedTuple):
    """A lookup of key in the map called map_name (a tuple: made once per request)."""

    map_name: str
    key: str


_new_request = tuple.__new__


def parse_request(payload: bytes) -> Request:
    """Split a request payload at the first space into map name and key."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    map_name, space, key = text.partition(" ")
    if map_name and space and 0 not in payload:
        # The common request, whole: one decode and one split (an ASCII space
        # never splits a UTF-8 sequence). The rest is told apart below.
        return _new_request(Request, (map_name, key))
    return _parse_with_reasons(payload)


def _parse_with_reasons(payload: bytes) -> Request:
    """parse_request for the requests its first look does not take: say what is wrong."""
    space = payload.find(_SPACE)
    if space < 0:
        raise MalformedRequest("missing space between map name and key")
    if space == 0:
        raise MalformedRequest("empty map name")
    try:
        map_name = payload[:space].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("map name is not valid UTF-8") from None
    raw_key = payload[space + 1 :]
    if 0 in raw_key:
        raise MalformedRequest("key contains a NUL byte")
    try:
        key = raw_key.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("key is not valid UTF-8") from None
    # tuple.__new__ directly: a NamedTuple's own __new__ is one more Python call.
    return _new_request(Request, (map_name, key))


class Reply:
    """One socketmap answer: data for OK, a reason for TEMP/TIMEOUT/PERM, "" for NOTFOUND.

    Immutable by contract (the attributes are Final): a plain class rather than a
    frozen dataclass, whose every construction pays for object.__setattr__, since
    most requests make one.
    """

    __slots__ = ("status", "text")

    def __init__(self, status: Status, text: str) -> None:
        if status is Status.OK and not text:
            raise ValueError("an OK reply must carry data")
        if status is Status.NOTFOUND and text:
            raise ValueError("a NOTFOUND reply carries no text")
        self.status: Final = status
        self.text: Final = text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reply):
            return NotImplemented
        return self.status is other.status and self.text == other.text

    def __hash__(self) -> int:
        return hash((self.status, self.text))

    def __repr__(self) -> str:
        return f"Reply(status={self.status!r}, text={self.text!r})"

    @classmethod
    def ok(cls, data: str) -> Reply:
        """Return a found reply; raise ValueError if data is empty."""
        return cls(Status.OK, data)

    @classmethod
    def notfound(cls) -> Reply:
        """Return a not-found reply."""
        return cls(Status.NOTFOUND, "")

    @classmethod
    def temp(cls, reason: str) -> Reply:
        """Return a temporary-failure reply."""
        return cls(Status.TEMP, reason)

    @classmethod
    def timeout(cls, reason: str) -> Reply:
        """Return a timeout reply (temporary failure)."""
        return cls(Status.TIMEOUT, reason)

    @classmethod
    def perm(cls, reason: str) -> Reply:
        """Return a permanent-failure reply."""
        return cls(Status.PERM, reason)

    def payload(self) -> bytes:
        """Return the payload: b'OK data', b'NOTFOUND ' (trailing space), b'TEMP reason', ..."""
        if self.status is Status.OK:
            # Data goes out exactly as looked up; an unencodable string is a bug upstream.
            return b"OK " + self.text.encode("utf-8")
        if self.status is Status.NOTFOUND:
            return b"NOTFOUND "
        reason = self.text.translate(_CONTROL_TO_SPACE)
        return _PREFIX[self.status] + reason.encode("utf-8", "replace")

    def frame(self) -> bytes:
        """Return the payload framed as a netstring, whatever its size (see encode_reply)."""
        if self.status is Status.OK:
            # The most common answer of a lookup, framed in one step.
            data = self.text.encode("utf-8")
            return b"%d:OK %b," % (len(data) + 3, data)
        return encode_netstring(self.payload())


NOTFOUND_REPLY = Reply.notfound()


class ReplyTooLargeError(Exception):
    """The reply payload is larger than the client accepts."""

    def __init__(self, size: int, max_payload: int) -> None:
        super().__init__(f"reply payload of {size} bytes exceeds {max_payload} bytes")
        self.size = size
        self.max_payload = max_payload


def encode_reply(reply: Reply, max_payload: int = 100_000) -> bytes:
    """Return the reply framed as a netstring; raise ReplyTooLargeError if it is too large."""
    payload = reply.payload()
    if len(payload) > max_payload:
        raise ReplyTooLargeError(len(payload), max_payload)
    return encode_netstring(payload)


# The frame of NOTFOUND_REPLY, the most common answer of all.
NOTFOUND_FRAME = encode_reply(NOTFOUND_REPLY)
_FRAME_STATUS = {
    ord("O"): Status.OK,
    ord("N"): Status.NOTFOUND,
    ord("P"): Status.PERM,
}


def frame_status(frame: bytes) -> Status:
    """Return the status of a reply frame made by encode_reply."""
    at = frame.index(b":") + 1
    status = _FRAME_STATUS.get(frame[at])
    if status is not None:
        return status
    return Status.TIMEOUT if frame[at + 1] == ord("I") else Status.TEMP


def frame_payload_size(frame: bytes) -> int:
    """Return the payload size of a reply frame made by encode_reply."""
    return len(frame) - frame.index(b":") - 2


def decode_frame(frame: bytes) -> Reply:
    """Return the reply a frame made by encode_reply carries."""
    return parse_reply(frame[frame.index(b":") + 1 : -1])


class ReplyError(Exception):
    """A reply payload received by a client is not a valid socketmap reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_reply(payload: bytes) -> Reply:
    """Parse a reply payload received by a client (used by `sockmapd query`)."""
    word, _, raw_text = payload.partition(b" ")
    status = _STATUS_BY_WORD.get(word)
    if status is None:
        shown = word[:32].decode("ascii", "backslashreplace")
        raise ReplyError(f"unknown reply status {shown!r}")
    if status is Status.NOTFOUND:
        # Postfix ignores anything after NOTFOUND, and so do we.
        return NOTFOUND_REPLY
    text = raw_text.decode("utf-8", "replace")
    if status is Status.OK and not text:
        raise ReplyError("OK reply without data")
    return Reply(status, text)
