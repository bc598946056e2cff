"""Running test cases: on the daemon's own lookup code, or against a running server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import anyio

from sockmapd.backends import Databases
from sockmapd.client import ClientError, query
from sockmapd.config import Config, TcpAddress, UnixAddress
from sockmapd.lookup.query import failures
from sockmapd.lookup.router import build_router
from sockmapd.maptest.cases import Case
from sockmapd.protocol import (
    FrameTooLargeError,
    Reply,
    Request,
    Status,
    decode_frame,
    frame_payload_size,
)
from sockmapd.server.connection import INTERNAL_ERROR, REPLY_TOO_LARGE_FRAME

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one case got: the reply as the MTA sees it, or why there is none."""

    case: Case
    got: str | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Return True if the reply is what the case expects."""
        return self.got is not None and self.case.test.matches(self.got)


def reply_text(reply: Reply) -> str:
    """Return a reply as written in a test: "OK value", "NOTFOUND", "TEMP reason"."""
    if reply.status is Status.NOTFOUND:
        return "NOTFOUND"
    return f"{reply.status.value} {reply.text}"


async def run_direct(config: Config, databases: Databases, cases: Sequence[Case]) -> list[Outcome]:
    """Return the outcome of each case, looked up as the server would, without a server.

    The maps are built by the daemon's own code on databases (those of config) and
    queried through their pools, so a case sees what the server would answer, limits
    included: TIMEOUT after server.request_timeout, TEMP for a reply over
    server.max_reply_bytes. The caller disposes of databases.
    """
    router = build_router(config, databases)
    outcomes = []
    try:
        for case in cases:
            reply = await _answer(config, router.answer, Request(case.test.map, case.test.key))
            outcomes.append(Outcome(case, reply_text(reply)))
    finally:
        # Repeated database failures are summed up in the log: write the sums now.
        failures.flush()
    return outcomes


async def _answer(
    config: Config, answer: Callable[[Request], Awaitable[Reply]], request: Request
) -> Reply:
    size = len(request.map_name.encode()) + 1 + len(request.key.encode())
    if size > config.server.max_request_bytes:
        # The server reads no further than the length header of such a request.
        return Reply.perm(FrameTooLargeError.reason)
    timeout = config.server.request_timeout
    try:
        with anyio.fail_after(timeout):
            reply = await answer(request)
    except TimeoutError:
        return Reply.timeout(f"lookup did not finish within {timeout:g}s")
    except Exception:
        log.exception("map %s: lookup failed unexpectedly", request.map_name)
        return INTERNAL_ERROR
    # What the MTA reads: the frame the server sends (a reason's control characters are
    # spaces), replaced as the server replaces it when it exceeds max_reply_bytes.
    frame = reply.frame()
    if frame_payload_size(frame) > config.server.max_reply_bytes:
        frame = REPLY_TOO_LARGE_FRAME
    return decode_frame(frame)


def run_server(
    address: TcpAddress | UnixAddress, cases: Sequence[Case], *, timeout: float
) -> list[Outcome]:
    """Return the outcome of each case, asked of the server at address over one connection.

    If the connection fails, the cases not answered yet get the error instead of a reply.
    """
    outcomes: list[Outcome] = []
    replies: Iterator[Reply] = query(
        address, ((case.test.map, case.test.key) for case in cases), timeout=timeout
    )
    try:
        for case, reply in zip(cases, replies, strict=False):
            outcomes.append(Outcome(case, reply_text(reply)))
    except ClientError as exc:
        outcomes += [Outcome(case, None, str(exc)) for case in cases[len(outcomes) :]]
    return outcomes
