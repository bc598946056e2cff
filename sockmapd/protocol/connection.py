"""One client connection as a sans-IO state machine: bytes in, decisions out.

The core owns everything about a connection that is not I/O: the netstring
decoder, the order of replies, the limits and the deadlines. The code that owns
the socket feeds it what arrives (:meth:`ConnectionCore.receive`), the answers
it found (:meth:`ConnectionCore.answer`), the client's end of input and the
current time, and acts on what the core says: bytes to write
(:meth:`ConnectionCore.data_to_send`), requests to answer, requests given up on
(:meth:`ConnectionCore.expire`), whether to read, when the next deadline is, and
when to close. No sockets, no sleeps, no event loop: every state is reached by a
unit test feeding bytes and times.

Replies leave in request order whatever order their answers come in: an answer
for a later request (from the cache, say) waits behind an earlier one still being
looked up.

Deadlines, all measured on the clock the caller passes in:

* idle: nothing to answer and no partial frame, ``idle_timeout`` after the
  connection last became idle: close.
* request: the oldest unanswered request, ``request_timeout`` after it became
  the oldest: it is answered TIMEOUT and the next request gets a fresh deadline.
  A partial frame, ``request_timeout`` after its first byte: close.
* send: the transport refused more data (the client does not read),
  ``request_timeout`` after that: close.

Cost against a hostile peer: the core holds at most the decoder's frame buffer
(bounded by ``max_request_bytes``), plus the requests of the chunks fed to it.
It asks the caller to stop reading once ``max_pending`` requests or
``max_buffered`` bytes of them are unanswered, so with bounded chunks the
memory a client can pin is bounded too.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from sockmapd.protocol.netstring import NetstringDecoder, ProtocolError
from sockmapd.protocol.socketmap import Reply, encode_reply

# Unanswered requests (and their bytes) beyond which the caller stops reading.
MAX_PENDING = 64
MAX_BUFFERED = 256 * 1024


class CloseReason(enum.Enum):
    """Why the core decided the connection is over."""

    EOF = "client closed its end"
    IDLE = "idle timeout"
    PARTIAL = "request timeout while reading a request"
    SEND = "request timeout while sending (client does not read)"
    PROTOCOL_ERROR = "protocol error"
    STOPPING = "server stopping"


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits and timeouts of one connection."""

    max_request_bytes: int
    idle_timeout: float
    request_timeout: float
    max_pending: int = MAX_PENDING
    max_buffered: int = MAX_BUFFERED


@dataclass(slots=True)
class Pending:
    """A request read and not yet answered: its place in line and its payload."""

    seq: int
    payload: bytes


class ConnectionCore:
    """The state of one client connection, driven by its caller."""

    __slots__ = (
        "_answers",
        "_blocked_since",
        "_buffered",
        "_close",
        "_decoder",
        "_eof",
        "_error",
        "_error_answered",
        "_head_since",
        "_idle_since",
        "_idle_timeout",
        "_max_buffered",
        "_max_pending",
        "_next_seq",
        "_partial_since",
        "_request_timeout",
        "_stopping",
        "_taking",
        "_unanswered",
        "calm",
        "min_lead",
        "outbox",
    )

    def __init__(self, limits: Limits, now: float) -> None:
        # Read on every request: kept here rather than looked up on limits each time.
        self._request_timeout = limits.request_timeout
        self._idle_timeout = limits.idle_timeout
        # No deadline that receive() or answer() sets is nearer than this after the
        # call: what a caller relies on while the core is calm (see outlook).
        self.min_lead = min(limits.request_timeout, limits.idle_timeout)
        self._max_pending = limits.max_pending
        self._max_buffered = limits.max_buffered
        self._decoder = NetstringDecoder(limits.max_request_bytes)
        # Requests in order, oldest first, until their reply is released.
        self._unanswered: deque[Pending] = deque()
        # Encoded replies that came before their turn, by sequence number.
        self._answers: dict[int, bytes] = {}
        self._buffered = 0
        self._next_seq = 0
        # Replies ready to be written, in order: true when there is something to
        # write; the caller takes them with data_to_send().
        self.outbox: list[bytes] = []
        self._idle_since = now
        self._head_since = now
        self._partial_since: float | None = None
        self._blocked_since: float | None = None
        self._error: ProtocolError | None = None
        self._error_answered = False
        self._eof = False
        self._stopping = False
        self._close: CloseReason | None = None
        # False once the client's end, a frame error, a stop or a close was seen:
        # bytes from the client are no longer taken.
        self._taking = True
        # True while the last outlook() still holds but for deadlines no earlier than
        # it allows (see outlook); set by outlook, cleared by whatever could change it.
        self.calm = False

    # -- what the caller reads -------------------------------------------------

    @property
    def close_reason(self) -> CloseReason | None:
        """Why to close, once the connection is over (write data_to_send first); else None."""
        return self._close

    @property
    def protocol_error(self) -> ProtocolError | None:
        """The frame error answered PERM, once it has been (for logs and metrics)."""
        return self._error if self._error_answered else None

    @property
    def unanswered(self) -> int:
        """How many requests wait for their reply."""
        return len(self._unanswered)

    @property
    def want_read(self) -> bool:
        """False while the caller should not read: too much unanswered, a stalled send, or over."""
        return self.outlook()[1]

    @property
    def deadline(self) -> float | None:
        """When the next deadline passes (call expire() then), or None once closed."""
        return self.outlook()[2]

    def outlook(self) -> tuple[CloseReason | None, bool, float | None]:
        """Return close_reason, want_read and deadline at once: what the caller acts on.

        It also sets ``calm``, which stays true until something could change what
        was returned other than by a later deadline: the connection is not
        closing, reading stays on, and every deadline set since is at least
        ``min_lead`` after the call that set it. A caller whose timer is due no
        later than ``min_lead`` after each call it makes (receive, answer) need
        not ask again while ``calm`` is true; after eof, stop, write_blocked,
        write_resumed and expire it always asks.
        """
        close = self._close
        if close is not None:
            self.calm = False
            return close, False, None
        unanswered = self._unanswered
        blocked = self._blocked_since
        want_read = (
            self._taking
            and blocked is None
            and len(unanswered) < self._max_pending
            and self._buffered < self._max_buffered
        )
        self.calm = want_read
        timeout = self._request_timeout
        partial = self._partial_since
        # The earliest of the deadlines that run: the oldest request's, a partial
        # frame's, the client's not reading, or being idle when none of the first two.
        if unanswered:
            when = self._head_since + timeout
            if partial is not None and partial + timeout < when:
                when = partial + timeout
        elif partial is not None:
            when = partial + timeout
        else:
            when = self._idle_since + self._idle_timeout
        if blocked is not None and blocked + timeout < when:
            when = blocked + timeout
        return None, want_read, when

    def data_to_send(self) -> bytes:
        """Return, and forget, the replies ready to be written in order (b"" if none)."""
        out = self.outbox
        if not out:
            return b""
        self.outbox = []
        return out[0] if len(out) == 1 else b"".join(out)

    # -- what the caller tells -------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Pending]:
        """Take bytes from the client; return the requests they complete, to be answered.

        After a frame error the requests before it are still returned; once they
        are answered the core answers PERM and closes. Bytes that arrive after
        the client's end, a frame error, a stop or a close are ignored.
        """
        if not self._taking:
            return []
        decoder = self._decoder
        try:
            frames = decoder.feed(data)
        except ProtocolError as exc:
            frames = exc.frames
            self._error = exc
            self._taking = False
            self.calm = False
        if decoder.has_partial:
            if self._partial_since is None:
                self._partial_since = now
        elif self._partial_since is not None:
            self._partial_since = None
        if not frames:
            if not self._taking:
                self._settle()  # a frame error with nothing before it to answer
            return []
        unanswered = self._unanswered
        if not unanswered:
            self._head_since = now
        seq = self._next_seq
        if len(frames) == 1:
            # One request per chunk: how a client that waits for each reply sends.
            payload = frames[0]
            pending = Pending(seq, payload)
            self._next_seq = seq + 1
            self._buffered += len(payload)
            unanswered.append(pending)
            new = [pending]
        else:
            new = []
            for payload in frames:
                pending = Pending(seq, payload)
                seq += 1
                self._buffered += len(payload)
                unanswered.append(pending)
                new.append(pending)
            self._next_seq = seq
        if len(unanswered) >= self._max_pending or self._buffered >= self._max_buffered:
            self.calm = False  # reading must stop
        return new

    def answer(self, seq: int, data: bytes, now: float) -> bool:
        """Give the encoded reply for request seq; False if it was already answered (timed out)."""
        unanswered = self._unanswered
        if self._close is not None or not unanswered or seq >= self._next_seq:
            return False
        head = unanswered[0]
        if seq == head.seq:
            # Its turn has come: out at once, and whatever waited behind it.
            unanswered.popleft()
            self._buffered -= len(head.payload)
            self.outbox.append(data)
            if self._answers:
                self._release(now)
            self._head_since = now
            if not unanswered:
                self._idle_since = now
                if not self._taking:
                    # The client's end, a frame error or a stop waited for this.
                    self._settle()
            return True
        if seq < head.seq or seq in self._answers:
            return False
        self._answers[seq] = data
        return True

    def eof(self, now: float) -> None:
        """The client closed its end: answer what was asked, then close."""
        self._eof = True
        self._taking = False
        self.calm = False
        self._partial_since = None
        self._settle()

    def stop(self, now: float) -> None:
        """The server is stopping: answer what was asked, take nothing more, then close."""
        self._stopping = True
        self._taking = False
        self.calm = False
        self._partial_since = None
        self._settle()

    def write_blocked(self, now: float) -> None:
        """The transport takes no more for now (the client does not read)."""
        self.calm = False
        if self._blocked_since is None:
            self._blocked_since = now

    def write_resumed(self, now: float) -> None:
        """The transport takes data again."""
        self.calm = False
        self._blocked_since = None

    def expire(self, now: float) -> list[Pending]:
        """Act on the deadlines passed by now; return the requests answered TIMEOUT.

        The caller stops looking up the requests returned (their replies are
        written already) and logs them.
        """
        self.calm = False
        if self._close is not None:
            return []
        timeout = self._request_timeout
        if self._blocked_since is not None and now >= self._blocked_since + timeout:
            self._finish(CloseReason.SEND)
            return []
        expired: list[Pending] = []
        unanswered = self._unanswered
        while unanswered and now >= self._head_since + timeout:
            head = unanswered[0]
            if head.seq in self._answers:  # pragma: no cover - released at once
                break
            expired.append(head)
            self._answers[head.seq] = encode_reply(
                Reply.timeout(f"lookup did not finish within {timeout:g}s")
            )
            self._release(now)
        if expired:
            self._settle()
            return expired
        if self._partial_since is not None and now >= self._partial_since + timeout:
            self._finish(CloseReason.PARTIAL)
        elif (
            not unanswered
            and self._partial_since is None
            and now >= self._idle_since + self._idle_timeout
        ):
            self._finish(CloseReason.IDLE)
        return expired

    # -- inside ----------------------------------------------------------------

    def _release(self, now: float) -> None:
        """Move the replies whose turn has come to the output."""
        unanswered = self._unanswered
        answers = self._answers
        released = False
        while unanswered and unanswered[0].seq in answers:
            head = unanswered.popleft()
            self._buffered -= len(head.payload)
            self.outbox.append(answers.pop(head.seq))
            released = True
        if released:
            # The next request in line gets its full time from now.
            self._head_since = now
            if not unanswered:
                self._idle_since = now

    def _settle(self) -> None:
        """Close, or answer the frame error, once nothing is left to answer."""
        if self._close is not None or self._unanswered:
            return
        if self._error is not None:
            if not self._error_answered:
                self._error_answered = True
                self.outbox.append(encode_reply(Reply.perm(self._error.reason)))
            self._finish(CloseReason.PROTOCOL_ERROR)
        elif self._eof:
            self._finish(CloseReason.EOF)
        elif self._stopping:
            self._finish(CloseReason.STOPPING)

    def _finish(self, reason: CloseReason) -> None:
        self._close = reason
        self._taking = False
        self.calm = False
        self._answers.clear()
        self._unanswered.clear()
        self._buffered = 0
