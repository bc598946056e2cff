"""The metrics listener: a minimal HTTP/1.1 server for /metrics, /healthz and an index at /.

It answers GET and HEAD, one request per connection, and closes it. /metrics is
in the format the scraper's Accept header asks for (OpenMetrics or the
Prometheus text format) and gzipped when its Accept-Encoding allows.

Cost against a hostile client: at most MAX_CLIENTS connections are served at once
(the rest wait in the kernel's backlog); each buffers at most MAX_HEAD_BYTES of
request, headers included, and is closed READ_TIMEOUT after it connected if its
request is not complete, and WRITE_TIMEOUT after the reply began if the client
does not read it. /metrics costs one rendering of the registry (and one gzip of it)
and never waits for a database. The socketmap listeners share nothing with it but
the event loop.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskGroup
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from sockmapd import __version__
from sockmapd.backends.health import HealthReport
from sockmapd.server.listeners import BoundListener, accept_in_slot, describe_peer

log = logging.getLogger(__name__)

MAX_CLIENTS = 16
MAX_HEAD_BYTES = 8192
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
RECEIVE_SIZE = 4096
# On a 62 KB page: level 6 takes 0.2 ms for 3.7 KB, gzip's default 9 takes 0.8 ms for
# 1.5% less; rendering the page takes about 5 ms either way.
GZIP_LEVEL = 6
METHODS = (b"GET", b"HEAD")
ALLOW = "GET, HEAD"
PATHS = ("/", "/metrics", "/healthz")
# Relative links, so that the page also works behind a proxy that adds a path prefix.
INDEX = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>sockmapd</title></head>
<body>
<h1>sockmapd {__version__}</h1>
<ul>
<li><a href="metrics">metrics</a>: Prometheus metrics</li>
<li><a href="healthz">healthz</a>: whether every database answers (JSON)</li>
</ul>
</body>
</html>
""".encode()

_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """The request head cannot be answered; status is the HTTP status to reply with."""

    def __init__(self, status: int) -> None:
        super().__init__(_REASONS[status])
        self.status = status


def parse_request_line(head: bytes) -> tuple[bytes, str]:
    """Return the method and the path (query string dropped) of a request head."""
    line, _, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise BadRequest(400)
    method, target, _version = parts
    if not target.startswith(b"/"):
        raise BadRequest(400)
    path = target.partition(b"?")[0]
    try:
        return method, path.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400) from None


def parse_headers(head: bytes) -> dict[str, str]:
    """Return the header fields of a request head by lower-case name; repeats are joined by ", "."""
    fields: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        # A field name is a token: no white space, so no line folding either.
        if not colon or not name or b" " in name or b"\t" in name:
            raise BadRequest(400)
        try:
            key = name.decode("ascii").lower()
            text = value.strip().decode("latin-1")
        except UnicodeDecodeError:
            raise BadRequest(400) from None
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


def render_response(
    status: int,
    body: bytes,
    content_type: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    send_body: bool = True,
) -> bytes:
    """Return a whole HTTP/1.1 response that closes the connection.

    Without send_body (a HEAD request) the head still gives the body's length.
    """
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body if send_body else b"")


# What /metrics renders: a registry, or the merged figures of the workers.
Scrape = Callable[[], Awaitable[Collector]]
# Whether all is well, and the JSON document of /healthz.
Health = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def health_document(report: HealthReport) -> tuple[bool, dict[str, Any]]:
    """Return whether every database answered, and the /healthz document of one process."""
    healthy = report.healthy
    return healthy, {"status": "ok" if healthy else "down", "databases": report.databases}


def health_body(healthy: bool, document: dict[str, Any]) -> tuple[int, bytes]:
    """Return the status and JSON body of /healthz: 200 if healthy, else 503."""
    body = json.dumps(document, sort_keys=True)
    return (200 if healthy else 503), body.encode() + b"\n"


class MetricsServer:
    """Serves /metrics from scrape(), /healthz from health(), and an index at /."""

    def __init__(self, scrape: Scrape, health: Health) -> None:
        self._scrape = scrape
        self._health = health
        self._slots = anyio.CapacityLimiter(MAX_CLIENTS)

    async def serve(self, listeners: list[BoundListener]) -> None:
        """Accept and answer until cancelled; the listeners are closed on the way out."""
        try:
            async with anyio.create_task_group() as tasks:
                for bound in listeners:
                    tasks.start_soon(self._accept_loop, bound, tasks)
                log.info("metrics and health on %s", ", ".join(str(b.address) for b in listeners))
        finally:
            with anyio.CancelScope(shield=True):
                for bound in listeners:
                    await bound.aclose()

    async def _accept_loop(self, bound: BoundListener, tasks: TaskGroup) -> None:
        while True:
            slot = object()
            stream = await accept_in_slot(bound, self._slots, slot)
            if stream is None:
                return
            tasks.start_soon(self._run, stream, describe_peer(stream), slot)

    async def _run(self, stream: ByteStream, peer: str, slot: object) -> None:
        try:
            await self.handle(stream)
        except Exception:
            log.exception("metrics client %s: unexpected error", peer)
        finally:
            self._slots.release_on_behalf_of(slot)
            with anyio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except Exception as exc:
                    log.debug("metrics client %s: close failed: %s", peer, exc)

    async def handle(self, stream: ByteStream) -> None:
        """Read one request from stream and send its response; never reads a body."""
        response: bytes | None = None
        with anyio.move_on_after(READ_TIMEOUT):
            try:
                head = await _read_head(stream)
            except BadRequest as exc:
                response = _plain(exc.status)
            else:
                if head is None:
                    return
                response = await self._respond(head)
        if response is None:
            response = _plain(408)
        with anyio.move_on_after(WRITE_TIMEOUT):
            try:
                await stream.send(response)
            except _CLOSED:
                return

    async def _respond(self, head: bytes) -> bytes:
        try:
            method, path = parse_request_line(head)
            fields = parse_headers(head)
        except BadRequest as exc:
            return _plain(exc.status)
        if path not in PATHS:
            return _plain(404)
        if method not in METHODS:
            return _plain(405, headers=(("Allow", ALLOW),))
        send_body = method == b"GET"
        if path == "/metrics":
            return self._exposition(await self._scrape(), fields, send_body)
        if path == "/":
            return render_response(200, INDEX, "text/html; charset=utf-8", send_body=send_body)
        status, body = health_body(*await self._health())
        return render_response(status, body, "application/json", send_body=send_body)

    def _exposition(self, registry: Collector, fields: dict[str, str], send_body: bool) -> bytes:
        encoder, content_type = choose_encoder(fields.get("accept", ""))
        body = encoder(registry)
        headers = [("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(fields.get("accept-encoding", "")):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        return render_response(200, body, content_type, headers=headers, send_body=send_body)


async def _read_head(stream: ByteStream) -> bytes | None:
    """Return the request head up to its blank line, None if the client left first.

    Raises BadRequest(431) past MAX_HEAD_BYTES: memory stays bounded whatever is sent.
    """
    head = bytearray()
    while True:
        try:
            chunk = await stream.receive(RECEIVE_SIZE)
        except _CLOSED:
            return None
        # Only the new bytes and the 3 before them can complete the terminator.
        start = max(0, len(head) - 3)
        head += chunk
        end = head.find(b"\r\n\r\n", start)
        if end >= 0:
            return bytes(head[:end])
        if len(head) > MAX_HEAD_BYTES:
            raise BadRequest(431)


def _plain(status: int, *, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    return render_response(
        status, f"{_REASONS[status]}\n".encode(), "text/plain; charset=utf-8", headers=headers
    )
