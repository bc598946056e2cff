"""The metrics listener's HTTP handling, over loopback sockets, with a stand-in health check."""

from __future__ import annotations

import json

import anyio
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from sockmapd.backends.health import HealthReport
from sockmapd.config import TcpAddress
from sockmapd.metrics import Metrics
from sockmapd.protocol import Status
from sockmapd.server import http
from sockmapd.server.http import (
    MAX_HEAD_BYTES,
    BadRequest,
    MetricsServer,
    health_body,
    parse_request_line,
    render_response,
)
from sockmapd.server.listeners import open_listeners

HEALTHY = HealthReport({"main": "ok", "other": "ok"})
DOWN = HealthReport({"main": "ok", "other": "cannot connect: refused"})


def test_request_line_gives_method_and_path_without_query() -> None:
    assert parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a") == (b"GET", "/metrics")
    assert parse_request_line(b"POST /healthz HTTP/1.0") == (b"POST", "/healthz")


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"GET",
        b"GET /metrics",
        b"GET /metrics SPDY/3",
        b"GET metrics HTTP/1.1",
        b"GET  / HTTP/1.1",
    ],
)
def test_bad_request_lines_are_400(head: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request_line(head)
    assert caught.value.status == 400


def test_response_closes_the_connection_and_has_a_length() -> None:
    response = render_response(405, b"no\n", "text/plain", allow="GET")
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 405 Method Not Allowed"
    assert b"Connection: close" in lines
    assert b"Content-Length: 3" in lines
    assert b"Allow: GET" in lines
    assert body == b"no\n"


def test_health_body_is_200_when_every_database_is_ok() -> None:
    status, body = health_body(HEALTHY)
    assert status == 200
    assert json.loads(body) == {"status": "ok", "databases": {"main": "ok", "other": "ok"}}


def test_health_body_is_503_naming_what_is_down() -> None:
    status, body = health_body(DOWN)
    assert status == 503
    assert json.loads(body) == {
        "status": "down",
        "databases": {"main": "ok", "other": "cannot connect: refused"},
    }


def serve_and_ask(
    requests: list[bytes], report: HealthReport = HEALTHY, *, chunk: int = 0
) -> list[bytes]:
    """Start a MetricsServer on loopback and return the raw response to each request."""
    metrics = Metrics()
    metrics.request(None, Status.PERM, 0.0)

    async def health() -> HealthReport:
        return report

    async def main() -> list[bytes]:
        listeners = await open_listeners([TcpAddress("127.0.0.1", 0)])
        port = listeners[0].listener.extra(anyio.abc.SocketAttribute.local_port)
        server = MetricsServer(metrics, health)
        answers = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, listeners)
            for request in requests:
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    if chunk:
                        for start in range(0, len(request), chunk):
                            await stream.send(request[start : start + chunk])
                    else:
                        await stream.send(request)
                    answer = b""
                    with anyio.fail_after(10):
                        while True:
                            try:
                                answer += await stream.receive()
                            except anyio.EndOfStream:
                                break
                    answers.append(answer)
            tasks.cancel_scope.cancel()
        return answers

    return anyio.run(main)


def split(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    assert int(headers[b"Content-Length"]) == len(body)
    assert headers[b"Connection"] == b"close"
    return status, headers, body


def test_metrics_is_the_exposition_of_the_registry() -> None:
    (response,) = serve_and_ask([b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"])
    status, headers, body = split(response)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"Content-Type"] == CONTENT_TYPE_LATEST.encode()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    perm = [s for s in families["sockmapd_requests"].samples if s.labels.get("result") == "PERM"]
    assert [s.value for s in perm] == [1.0]


def test_a_request_sent_one_byte_at_a_time_is_answered() -> None:
    (response,) = serve_and_ask([b"GET /healthz HTTP/1.1\r\n\r\n"], chunk=1)
    assert split(response)[0] == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize(
    ("report", "status"),
    [(HEALTHY, b"HTTP/1.1 200 OK"), (DOWN, b"HTTP/1.1 503 Service Unavailable")],
)
def test_healthz_answers_the_health_report(report: HealthReport, status: bytes) -> None:
    (response,) = serve_and_ask([b"GET /healthz HTTP/1.1\r\n\r\n"], report)
    got_status, headers, body = split(response)
    assert got_status == status
    assert headers[b"Content-Type"] == b"application/json"
    assert json.loads(body)["databases"] == report.databases


def test_other_paths_methods_and_garbage_get_their_errors() -> None:
    responses = serve_and_ask(
        [
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"DELETE /healthz HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ]
    )
    statuses = [split(r)[0] for r in responses]
    assert statuses == [
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 405 Method Not Allowed",
        b"HTTP/1.1 405 Method Not Allowed",
        b"HTTP/1.1 400 Bad Request",
    ]
    assert split(responses[2])[1][b"Allow"] == b"GET"


def test_a_request_head_over_the_limit_is_refused() -> None:
    # One byte over: the server has read all of it when it answers, so the close
    # is clean and the client reads the answer.
    head = b"GET /metrics HTTP/1.1\r\nX: "
    (response,) = serve_and_ask([head + b"a" * (MAX_HEAD_BYTES + 1 - len(head))])
    assert split(response)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_an_incomplete_request_is_answered_408_after_the_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.2)
    (response,) = serve_and_ask([b"GET /metrics HTTP/1.1\r\n"])
    assert split(response)[0] == b"HTTP/1.1 408 Request Timeout"
