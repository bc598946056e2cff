"""The sans-IO connection core, driven through every state without a socket."""

from __future__ import annotations

import random

import pytest

from sockmapd.protocol import encode_netstring
from sockmapd.protocol.connection import CloseReason, ConnectionCore, Limits, Pending
from sockmapd.protocol.netstring import NetstringDecoder

IDLE = 60.0
REQUEST = 5.0


def make(now: float = 0.0, **kwargs: int) -> ConnectionCore:
    limits = Limits(max_request_bytes=100, idle_timeout=IDLE, request_timeout=REQUEST, **kwargs)
    return ConnectionCore(limits, now)


def frame(text: str) -> bytes:
    return encode_netstring(text.encode())


def reply(text: str) -> bytes:
    return encode_netstring(text.encode())


def sent(core: ConnectionCore) -> list[bytes]:
    """Decode what the core gives to write into reply payloads."""
    return NetstringDecoder(10_000).feed(core.data_to_send())


def payloads(pending: list[Pending]) -> list[bytes]:
    return [p.payload for p in pending]


# -- framing -------------------------------------------------------------------


def test_one_request_one_reply() -> None:
    core = make()
    new = core.receive(frame("map a"), 1.0)
    assert payloads(new) == [b"map a"]
    assert core.unanswered == 1
    assert core.data_to_send() == b""
    assert core.answer(new[0].seq, reply("OK x"), 2.0)
    assert sent(core) == [b"OK x"]
    assert core.unanswered == 0
    assert core.close_reason is None


def test_pipelined_frames_in_one_chunk() -> None:
    core = make()
    new = core.receive(frame("m a") + frame("m b") + frame("m c"), 0.0)
    assert payloads(new) == [b"m a", b"m b", b"m c"]
    assert [p.seq for p in new] == [0, 1, 2]


def test_frame_split_across_chunks() -> None:
    core = make()
    data = frame("map key") + frame("map two")
    assert core.receive(data[:4], 0.0) == []
    new = core.receive(data[4:12], 0.0)
    assert payloads(new) == [b"map key"]
    assert payloads(core.receive(data[12:], 0.0)) == [b"map two"]


def test_one_byte_feeds() -> None:
    core = make()
    data = frame("m a") + frame("m bb")
    got: list[bytes] = []
    for i in range(len(data)):
        got += payloads(core.receive(data[i : i + 1], float(i)))
    assert got == [b"m a", b"m bb"]


def test_oversize_frame_answers_perm_and_closes() -> None:
    core = make()
    assert core.receive(b"101:", 0.0) == []
    assert sent(core) == [b"PERM request too large"]
    assert core.close_reason is CloseReason.PROTOCOL_ERROR
    error = core.protocol_error
    assert error is not None
    assert error.kind == "request_too_large"


def test_garbage_after_good_frames_answers_them_then_perm() -> None:
    core = make()
    new = core.receive(frame("m a") + frame("m b") + b"xx", 0.0)
    assert payloads(new) == [b"m a", b"m b"]
    assert not core.want_read
    assert core.protocol_error is None  # not answered yet
    core.answer(new[1].seq, reply("OK b"), 1.0)
    assert core.data_to_send() == b""  # waits for the first
    core.answer(new[0].seq, reply("OK a"), 1.0)
    assert sent(core) == [b"OK a", b"OK b", b"PERM invalid netstring length header"]
    assert core.close_reason is CloseReason.PROTOCOL_ERROR
    assert core.receive(frame("m c"), 2.0) == []


def test_bytes_after_a_frame_error_are_ignored() -> None:
    core = make()
    new = core.receive(frame("m a") + b"3:abc!", 0.0)
    assert core.receive(frame("m b"), 0.5) == []
    core.answer(new[0].seq, reply("NOTFOUND "), 1.0)
    assert sent(core) == [b"NOTFOUND ", b"PERM missing netstring terminator"]


# -- order ---------------------------------------------------------------------


def test_cached_answers_wait_behind_a_database_lookup() -> None:
    core = make()
    first, cached, last = core.receive(frame("m db") + frame("m hit") + frame("m db2"), 0.0)
    # The cache answers the second at once; it waits for the first.
    assert core.answer(cached.seq, reply("OK hit"), 0.0)
    assert core.data_to_send() == b""
    assert core.answer(first.seq, reply("OK db"), 1.0)
    assert sent(core) == [b"OK db", b"OK hit"]
    assert core.answer(last.seq, reply("OK db2"), 2.0)
    assert sent(core) == [b"OK db2"]


def test_answers_out_of_order_leave_in_order() -> None:
    core = make()
    new = core.receive(b"".join(frame(f"m {i}") for i in range(5)), 0.0)
    for p in reversed(new):
        core.answer(p.seq, reply(f"OK {p.seq}"), 1.0)
    assert sent(core) == [f"OK {i}".encode() for i in range(5)]


def test_an_answer_is_taken_once() -> None:
    core = make()
    (p,) = core.receive(frame("m a"), 0.0)
    assert core.answer(p.seq, reply("OK a"), 0.0)
    assert not core.answer(p.seq, reply("OK again"), 0.0)
    assert not core.answer(99, reply("OK unknown"), 0.0)
    assert sent(core) == [b"OK a"]


# -- limits --------------------------------------------------------------------


def test_reading_stops_at_the_pending_limit() -> None:
    core = make(max_pending=2)
    new = core.receive(frame("m a"), 0.0)
    assert core.want_read
    new += core.receive(frame("m b"), 0.0)
    assert not core.want_read
    core.answer(new[0].seq, reply("OK a"), 0.0)
    assert core.want_read


def test_reading_stops_at_the_buffered_limit() -> None:
    core = make(max_buffered=10)
    new = core.receive(frame("m " + "x" * 9), 0.0)
    assert not core.want_read
    core.answer(new[0].seq, reply("OK"), 0.0)
    assert core.want_read


def test_reading_stops_while_the_client_does_not_read() -> None:
    core = make()
    core.write_blocked(1.0)
    assert not core.want_read
    core.write_resumed(2.0)
    assert core.want_read


# -- deadlines -----------------------------------------------------------------


def test_idle_timeout_closes_without_a_reply() -> None:
    core = make(now=10.0)
    assert core.deadline == 10.0 + IDLE
    assert core.expire(10.0 + IDLE - 0.1) == []
    assert core.close_reason is None
    core.expire(10.0 + IDLE)
    assert core.close_reason is CloseReason.IDLE
    assert core.data_to_send() == b""
    assert core.deadline is None


def test_idle_counts_from_the_last_reply() -> None:
    core = make()
    (p,) = core.receive(frame("m a"), 1.0)
    assert core.deadline == 1.0 + REQUEST
    core.answer(p.seq, reply("OK a"), 3.0)
    assert core.deadline == 3.0 + IDLE


def test_partial_frame_times_out_from_its_first_byte() -> None:
    core = make()
    core.receive(b"5:ab", 2.0)
    assert core.deadline == 2.0 + REQUEST
    core.receive(b"c", 4.0)  # trickling does not move the deadline
    assert core.deadline == 2.0 + REQUEST
    core.expire(2.0 + REQUEST)
    assert core.close_reason is CloseReason.PARTIAL
    assert core.data_to_send() == b""


def test_request_timeout_answers_timeout_and_goes_on() -> None:
    core = make()
    first, second = core.receive(frame("m slow") + frame("m next"), 0.0)
    assert core.deadline == REQUEST
    expired = core.expire(REQUEST)
    assert expired == [first]
    assert sent(core) == [b"TIMEOUT lookup did not finish within 5s"]
    assert core.close_reason is None
    # The late answer is dropped; the next request has its own full time.
    assert not core.answer(first.seq, reply("OK late"), REQUEST + 1)
    assert core.deadline == REQUEST + REQUEST
    assert core.answer(second.seq, reply("OK next"), REQUEST + 1)
    assert sent(core) == [b"OK next"]


def test_timeout_releases_cached_answers_behind_it() -> None:
    core = make()
    slow, hit = core.receive(frame("m slow") + frame("m hit"), 0.0)
    core.answer(hit.seq, reply("OK hit"), 0.0)
    assert core.expire(REQUEST) == [slow]
    assert sent(core) == [b"TIMEOUT lookup did not finish within 5s", b"OK hit"]
    assert core.deadline == REQUEST + IDLE


def test_timeout_during_frame_error_handling_answers_timeout_then_perm() -> None:
    core = make()
    first, second = core.receive(frame("m a") + frame("m slow") + b",", 0.0)
    core.answer(first.seq, reply("OK a"), 1.0)
    assert sent(core) == [b"OK a"]
    assert core.close_reason is None
    assert core.deadline == 1.0 + REQUEST
    assert core.expire(1.0 + REQUEST) == [second]
    assert sent(core) == [
        b"TIMEOUT lookup did not finish within 5s",
        b"PERM invalid netstring length header",
    ]
    assert core.close_reason is CloseReason.PROTOCOL_ERROR
    assert core.expire(100.0) == []


def test_send_timeout_closes_a_client_that_does_not_read() -> None:
    core = make()
    (p,) = core.receive(frame("m a"), 0.0)
    core.answer(p.seq, reply("OK a"), 0.0)
    core.data_to_send()
    core.write_blocked(1.0)
    assert core.deadline == 1.0 + REQUEST
    core.expire(1.0 + REQUEST)
    assert core.close_reason is CloseReason.SEND


def test_send_deadline_is_dropped_when_writing_resumes() -> None:
    core = make()
    core.write_blocked(1.0)
    core.write_resumed(2.0)
    assert core.deadline == IDLE
    core.expire(1.0 + REQUEST)
    assert core.close_reason is None


# -- end of input and stop -------------------------------------------------------


def test_eof_when_idle_closes() -> None:
    core = make()
    core.eof(1.0)
    assert core.close_reason is CloseReason.EOF


def test_eof_with_pending_lookups_answers_them_first() -> None:
    core = make()
    a, b = core.receive(frame("m a") + frame("m b"), 0.0)
    core.eof(0.5)
    assert core.close_reason is None
    assert not core.want_read
    assert core.receive(frame("m c"), 0.6) == []
    core.answer(a.seq, reply("OK a"), 1.0)
    assert core.close_reason is None
    core.answer(b.seq, reply("OK b"), 1.0)
    assert sent(core) == [b"OK a", b"OK b"]
    assert core.close_reason is CloseReason.EOF


def test_eof_with_a_pending_lookup_that_times_out() -> None:
    core = make()
    (a,) = core.receive(frame("m a"), 0.0)
    core.eof(0.5)
    assert core.expire(REQUEST) == [a]
    assert sent(core) == [b"TIMEOUT lookup did not finish within 5s"]
    assert core.close_reason is CloseReason.EOF


def test_eof_drops_a_partial_frame() -> None:
    core = make()
    core.receive(b"9:m a", 0.0)
    core.eof(1.0)
    assert core.close_reason is CloseReason.EOF
    assert core.data_to_send() == b""


def test_stop_closes_an_idle_connection_at_once() -> None:
    core = make()
    core.stop(1.0)
    assert core.close_reason is CloseReason.STOPPING


def test_stop_answers_pending_requests_first() -> None:
    core = make()
    (a,) = core.receive(frame("m a"), 0.0)
    core.stop(0.5)
    assert core.close_reason is None
    assert core.receive(frame("m b"), 0.6) == []
    core.answer(a.seq, reply("OK a"), 1.0)
    assert sent(core) == [b"OK a"]
    assert core.close_reason is CloseReason.STOPPING


def test_send_timeout_wins_over_pending_requests() -> None:
    core = make()
    core.receive(frame("m a"), 0.0)
    core.write_blocked(0.0)
    core.expire(REQUEST)
    assert core.close_reason is CloseReason.SEND
    assert core.unanswered == 0
    assert core.deadline is None


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_any_chunking_gives_the_same_replies(size: int) -> None:
    data = frame("m a") + frame("m b") + frame("m c") + b"x"
    core = make()
    new: list[Pending] = []
    for i in range(0, len(data), size):
        new += core.receive(data[i : i + size], 0.0)
    for p in new:
        core.answer(p.seq, reply(f"OK {p.seq}"), 0.0)
    assert sent(core) == [b"OK 0", b"OK 1", b"OK 2", b"PERM invalid netstring length header"]


# -- calm: what lets the caller skip outlook() ------------------------------------


def test_a_partial_frame_behind_pending_requests_keeps_its_own_deadline() -> None:
    core = make()
    core.receive(frame("m a") + frame("m b") + b"5:ab", 0.0)
    assert core.deadline == REQUEST
    core.answer(0, reply("OK a"), 3.0)  # the next request runs from 3.0
    assert core.deadline == REQUEST  # the partial frame's, begun at 0.0
    core.expire(REQUEST)
    assert core.close_reason is CloseReason.PARTIAL


def test_outlook_makes_the_core_calm_and_what_changes_it_does_not() -> None:
    core = make(max_pending=2)
    assert not core.calm
    assert core.outlook() == (None, True, IDLE)
    assert core.calm
    core.receive(frame("m a"), 1.0)
    assert core.calm  # one of two
    core.receive(frame("m b"), 1.0)
    assert not core.calm  # reading must stop
    assert core.outlook()[1] is False
    assert not core.calm
    core.answer(0, reply("OK a"), 2.0)
    assert not core.calm  # reading may start again: the caller must ask
    assert core.outlook()[1] is True
    assert core.calm
    for event in (
        lambda: core.write_blocked(3.0),
        lambda: core.write_resumed(3.0),
        lambda: core.eof(3.0),
    ):
        core.outlook()
        event()
        assert not core.calm


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("idle", "request_timeout"), [(60.0, 5.0), (2.0, 5.0), (5.0, 5.0)])
def test_a_caller_that_skips_outlook_while_calm_keeps_every_deadline(
    seed: int, idle: float, request_timeout: float
) -> None:
    """Drive the core as the server's protocol does, with a timer that outlook() re-arms
    only when the core is not calm or the timer is due later than the nearest deadline
    a request or an answer can set; the timer must never be due after the real deadline.
    """
    rnd = random.Random(seed)
    soonest = min(idle, request_timeout)
    limits = Limits(
        max_request_bytes=40,
        idle_timeout=idle,
        request_timeout=request_timeout,
        max_pending=3,
        max_buffered=30,
    )
    now = 0.0
    core = ConnectionCore(limits, now)
    assert core.min_lead == soonest
    timer: float | None = None
    pending: list[Pending] = []
    rest = b""  # the rest of a frame sent in two parts

    def full() -> None:
        nonlocal timer
        _, _, deadline = core.outlook()
        if deadline is None:
            timer = None
        elif timer is None or deadline < timer:
            timer = deadline

    def after(fast: bool) -> None:
        core.data_to_send()
        if not (fast and core.calm and timer is not None and timer <= now + soonest):
            full()

    full()
    for _ in range(400):
        if core.close_reason is not None:
            break
        now += rnd.choice([0.0, 0.1, 0.5, 1.0, 3.0, 7.0])
        # The timer fires first if its time has come.
        while timer is not None and timer <= now:
            fired, timer = timer, None
            expired = core.expire(fired)
            pending = [p for p in pending if p not in expired]
            full()
        if core.close_reason is not None:
            break
        event = rnd.random()
        if event < 0.45:
            if rest:
                chunk, rest = rest, b""
            elif rnd.random() < 0.01:
                chunk = b"x"  # a frame error: the core closes after the answers
            else:
                chunk = rnd.choice([frame("m a"), frame("m bb") * 2, frame("m c") * 3])
                if rnd.random() < 0.3:
                    cut = rnd.randrange(1, len(chunk))
                    chunk, rest = chunk[:cut], chunk[cut:]
            pending += core.receive(chunk, now)
            after(fast=True)
        elif event < 0.85 and pending:
            chosen = pending.pop(rnd.randrange(len(pending)))
            core.answer(chosen.seq, reply("OK x"), now)
            after(fast=True)
        elif event < 0.93:
            core.write_blocked(now)
            after(fast=False)
        else:
            core.write_resumed(now)
            after(fast=False)
        if core.close_reason is None:
            calm = core.calm
            reason, want_read, deadline = core.outlook()
            if calm:
                assert reason is None
                assert want_read
            assert deadline is not None
            assert timer is not None
            assert timer <= deadline
