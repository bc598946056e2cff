"""Netstring framing (`<len>:<payload>,`) as a sans-IO decoder and an encoder.

The decoder is fed raw bytes from a socket and returns whole payloads. It does no
I/O, so every edge case of the framing can be tested without a socket.

Cost against a hostile peer:

* Memory: the decoder buffers only the frame being read: at most
  ``len(str(max_payload))`` header digits, then at most ``max_payload + 1`` bytes
  (payload and terminator). Bytes of later frames in the same chunk are sliced out
  of the chunk, never copied into the buffer. A header that declares too much is
  rejected before any payload byte is buffered.
* Time: O(n) over the whole stream whatever the chunking. Payload bytes are moved
  with slicing and ``bytearray`` appends (amortised O(1) per byte, so a large frame
  sent one byte per ``recv`` stays linear). The only per-byte work in Python is on
  the header, which is bounded by ``len(str(max_payload)) + 1`` bytes per call.
"""

from __future__ import annotations

_COLON = 0x3A
_COMMA = 0x2C
_ZERO = 0x30
_DIGITS = b"0123456789"


class ProtocolError(Exception):
    """A frame error: the byte stream cannot be resynchronised; the connection must be closed."""

    reason: str = "netstring protocol error"
    # A short name for metrics: one per subclass, never built from peer data.
    kind: str = "protocol_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail
        # Payloads completed before the bad frame in the same feed() call; they are
        # valid requests and still deserve their replies before the connection closes.
        self.frames: list[bytes] = []


class LengthHeaderError(ProtocolError):
    """The length header is empty, has a non-digit byte or a leading zero."""

    reason = "invalid netstring length header"
    kind = "invalid_length"


class FrameTooLargeError(ProtocolError):
    """The length header declares more than the decoder's max_payload."""

    reason = "request too large"
    kind = "request_too_large"


class MissingTerminatorError(ProtocolError):
    """The byte after the payload is not the ',' terminator."""

    reason = "missing netstring terminator"
    kind = "missing_terminator"


class NetstringDecoder:
    """Incremental netstring decoder: feed it bytes, get back complete payloads."""

    __slots__ = ("_buf", "_error", "_length", "_max_digits", "_max_payload", "has_partial")

    def __init__(self, max_payload: int = 100_000) -> None:
        if max_payload < 0:
            raise ValueError("max_payload must not be negative")
        self._max_payload = max_payload
        # A longer header cannot be valid: without leading zeros it exceeds max_payload.
        self._max_digits = len(str(max_payload))
        # Header digits while _length < 0, otherwise payload bytes (plus terminator).
        self._buf = bytearray()
        self._length = -1
        self._error: ProtocolError | None = None
        # True while bytes of an incomplete frame are buffered (read it, do not set it):
        # kept up to date by feed(), read once per chunk by the connection core.
        self.has_partial = False

    @property
    def max_payload(self) -> int:
        """Largest payload, in bytes, that the decoder accepts."""
        return self._max_payload

    def feed(self, data: bytes) -> list[bytes]:
        """Buffer data and return every payload completed by it, in order (possibly empty list).

        Raises ProtocolError on a framing error; payloads completed earlier in the
        same chunk travel in its ``frames``. Once it raised, every later call raises
        the same error again, with no frames: the decoder is dead.
        """
        if self._error is not None:
            self._error.frames = []
            raise self._error.with_traceback(None)
        if not self.has_partial:
            # Fast path: the chunk is exactly one whole, valid frame, as when a client
            # sends one request at a time (Postfix does). Anything else is read below.
            colon = data.find(b":", 0, self._max_digits + 1)
            if colon > 0 and data[-1] == _COMMA:
                length = len(data) - colon - 2
                # The header must be exactly the payload's length written in decimal:
                # digits only, no leading zero, no sign, no other length.
                if length <= self._max_payload and data[:colon] == b"%d" % length:
                    return [data[colon + 1 : -1]]
        frames: list[bytes] = []
        try:
            self._feed(data, frames)
        except ProtocolError as exc:
            exc.frames = frames
            self._error = exc
            self._buf = bytearray()
            self.has_partial = False
            raise
        self.has_partial = self._length >= 0 or bool(self._buf)
        return frames

    def _feed(self, data: bytes, frames: list[bytes]) -> None:
        buf = self._buf
        pos = 0
        end = len(data)
        while pos < end:
            length = self._length
            if length < 0:
                if not buf:
                    # Fast path: a whole, valid header in this chunk. Anything else
                    # (split, bad or too large) is read and judged byte by byte below.
                    colon = data.find(b":", pos, pos + self._max_digits + 1)
                    if colon > pos:
                        digits = data[pos:colon]
                        if digits.isdigit() and (colon == pos + 1 or data[pos] != _ZERO):
                            length = int(digits)
                            if length <= self._max_payload:
                                self._length = length
                                pos = colon + 1
                                continue
                pos = self._read_header(data, pos)
            elif not buf and end - pos > length:
                # Fast path: the whole frame is in this chunk; one copy, no buffering.
                if data[pos + length] != _COMMA:
                    raise MissingTerminatorError(f"byte after {length}-byte payload is not ','")
                frames.append(data[pos : pos + length])
                pos += length + 1
                self._length = -1
            else:
                take = min(length + 1 - len(buf), end - pos)
                buf += memoryview(data)[pos : pos + take]
                pos += take
                if len(buf) > length:
                    if buf[-1] != _COMMA:
                        raise MissingTerminatorError(f"byte after {length}-byte payload is not ','")
                    del buf[-1]
                    frames.append(bytes(buf))
                    buf.clear()
                    self._length = -1

    def _read_header(self, data: bytes, pos: int) -> int:
        """Consume length-header bytes from data[pos:] and return the new position."""
        buf = self._buf
        # Look at no more than one byte past the longest acceptable header, so the
        # work here is bounded by max_digits per call whatever the peer sends.
        window = data[pos : pos + self._max_digits + 1 - len(buf)]
        header = bytes(buf) + window if buf else window
        ndigits = len(header) - len(header.lstrip(_DIGITS))
        digits = header[:ndigits]
        # Checked in stream order, so the error does not depend on how bytes were chunked.
        if ndigits > 1 and digits[0] == _ZERO:
            raise LengthHeaderError("leading zero")
        if ndigits > self._max_digits or (ndigits and int(digits) > self._max_payload):
            raise FrameTooLargeError(f"declared length exceeds {self._max_payload} bytes")
        if ndigits == len(header):
            # No terminator yet; header is at most max_digits long (checked above).
            buf += window
            return pos + len(window)
        if header[ndigits] != _COLON:
            raise LengthHeaderError("non-digit byte")
        if ndigits == 0:
            raise LengthHeaderError("empty length")
        self._length = int(digits)
        consumed = ndigits + 1 - len(buf)
        buf.clear()
        return pos + consumed


def encode_netstring(payload: bytes) -> bytes:
    """Return payload framed as b'<len>:<payload>,'."""
    return b"%d:%b," % (len(payload), payload)
