"""The metrics listener's HTTP handling, over loopback sockets, with a stand-in health check."""

from __future__ import annotations

import gzip
import json
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
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
    health_document,
    parse_headers,
    parse_request_line,
    render_response,
)
from sockmapd.server.listeners import open_listeners

HEALTHY = HealthReport({"main": "ok", "other": "ok"}, {"main": True, "other": True})
DOWN = HealthReport(
    {"main": "ok", "other": "cannot connect: refused"}, {"main": True, "other": False}
)
TEXT_FORMAT = b"text/plain; version=0.0.4; charset=utf-8"
# What Prometheus 2.x sends.
PROMETHEUS_ACCEPT = (
    b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    b"version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


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


def test_headers_are_read_by_lower_case_name_and_repeats_joined() -> None:
    head = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: text/plain\r\n"
        b"Accept-Encoding:gzip\r\naccept:  application/openmetrics-text "
    )
    assert parse_headers(head) == {
        "host": "x",
        "accept": "text/plain, application/openmetrics-text",
        "accept-encoding": "gzip",
    }
    assert parse_headers(b"GET / HTTP/1.1") == {}


@pytest.mark.parametrize(
    "line", [b"no colon", b": no name", b"Bad Name: x", b" folded: x", b"N\xe4me: x"]
)
def test_malformed_header_lines_are_400(line: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_headers(b"GET / HTTP/1.1\r\n" + line)
    assert caught.value.status == 400


def test_response_closes_the_connection_and_has_a_length() -> None:
    response = render_response(405, b"no\n", "text/plain", headers=[("Allow", "GET, HEAD")])
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 405 Method Not Allowed"
    assert b"Connection: close" in lines
    assert b"Content-Length: 3" in lines
    assert b"Allow: GET, HEAD" in lines
    assert body == b"no\n"


def test_a_response_without_its_body_keeps_the_length() -> None:
    response = render_response(200, b"0123456789", "text/plain", send_body=False)
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Content-Length: 10" in head.split(b"\r\n")
    assert body == b""


def test_health_body_is_200_when_every_database_is_ok() -> None:
    status, body = health_body(*health_document(HEALTHY))
    assert status == 200
    assert json.loads(body) == {"status": "ok", "databases": {"main": "ok", "other": "ok"}}


def test_health_body_is_503_naming_what_is_down() -> None:
    status, body = health_body(*health_document(DOWN))
    assert status == 503
    assert json.loads(body) == {
        "status": "down",
        "databases": {"main": "ok", "other": "cannot connect: refused"},
    }


def serve_and_ask(
    requests: list[bytes],
    report: HealthReport = HEALTHY,
    *,
    chunk: int = 0,
    metrics: Metrics | None = None,
) -> list[bytes]:
    """Start a MetricsServer on loopback and return the raw response to each request."""
    if metrics is None:
        metrics = Metrics()
        metrics.request(None, Status.PERM, 0.0)

    async def scrape() -> CollectorRegistry:
        assert metrics is not None
        return metrics.registry

    async def health() -> tuple[bool, dict[str, Any]]:
        return health_document(report)

    async def main() -> list[bytes]:
        listeners = await open_listeners([TcpAddress("127.0.0.1", 0)])
        port = listeners[0].listener.extra(anyio.abc.SocketAttribute.local_port)
        server = MetricsServer(scrape, health)
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


def split(response: bytes, *, head_only: bool = False) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    if head_only:
        assert body == b""
    else:
        assert int(headers[b"Content-Length"]) == len(body)
    assert headers[b"Connection"] == b"close"
    return status, headers, body


def perm_count(families: dict[str, object]) -> list[float]:
    family = families["sockmapd_requests"]
    samples = family.samples  # type: ignore[attr-defined]
    return [
        s.value for s in samples if s.labels.get("result") == "PERM" and s.name.endswith("_total")
    ]


def test_metrics_is_the_text_exposition_of_the_registry_by_default() -> None:
    (response,) = serve_and_ask([b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"])
    status, headers, body = split(response)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"Content-Type"] == TEXT_FORMAT
    assert b"Content-Encoding" not in headers
    assert headers[b"Vary"] == b"Accept, Accept-Encoding"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert perm_count(families) == [1.0]


def test_metrics_is_openmetrics_when_the_scraper_asks_for_it() -> None:
    (response,) = serve_and_ask(
        [b"GET /metrics HTTP/1.1\r\nAccept: " + PROMETHEUS_ACCEPT + b"\r\n\r\n"]
    )
    status, headers, body = split(response)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"Content-Type"].startswith(b"application/openmetrics-text; version=1.0.0;")
    assert body.endswith(b"# EOF\n")
    # The OpenMetrics parser refuses anything that is not valid OpenMetrics.
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert perm_count(families) == [1.0]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (b"application/openmetrics-text", b"application/openmetrics-text; version=1.0.0;"),
        (b"text/plain;version=0.0.4", TEXT_FORMAT),
        (b"*/*", TEXT_FORMAT),
    ],
)
def test_the_format_follows_the_accept_header(accept: bytes, content_type: bytes) -> None:
    (response,) = serve_and_ask([b"GET /metrics HTTP/1.1\r\nAccept: " + accept + b"\r\n\r\n"])
    assert split(response)[1][b"Content-Type"].startswith(content_type)


def test_metrics_is_gzipped_when_the_scraper_accepts_it() -> None:
    plain, zipped, declined = serve_and_ask(
        [
            b"GET /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nAccept-Encoding: deflate, GZIP;q=0.8\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nAccept-Encoding: deflate, br\r\n\r\n",
        ]
    )
    _, headers, body = split(zipped)
    assert headers[b"Content-Encoding"] == b"gzip"
    families = {f.name: f for f in text_string_to_metric_families(gzip.decompress(body).decode())}
    assert perm_count(families) == [1.0]
    assert len(body) < len(split(plain)[2])
    assert b"Content-Encoding" not in split(declined)[1]


def test_head_answers_every_path_without_a_body() -> None:
    responses = serve_and_ask(
        [
            b"HEAD /metrics HTTP/1.1\r\n\r\n",
            b"HEAD /healthz HTTP/1.1\r\n\r\n",
            b"HEAD / HTTP/1.1\r\n\r\n",
        ],
        DOWN,
    )
    statuses = []
    for response in responses:
        status, headers, _ = split(response, head_only=True)
        assert int(headers[b"Content-Length"]) > 0
        statuses.append(status)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 200 OK"]


def test_the_index_page_links_both_paths() -> None:
    (response,) = serve_and_ask([b"GET / HTTP/1.1\r\n\r\n"])
    status, headers, body = split(response)
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"Content-Type"] == b"text/html; charset=utf-8"
    assert b'<a href="metrics">' in body
    assert b'<a href="healthz">' in body


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
            b"GET /index.html HTTP/1.1\r\n\r\n",
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
    assert split(responses[2])[1][b"Allow"] == b"GET, HEAD"


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
