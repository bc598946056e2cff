"""Log formats, targets and key privacy (sockmapd.logs, LogConfig)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import logging.handlers
import os
import re
import socket
import typing
from collections.abc import Iterator
from pathlib import Path
from time import perf_counter
from typing import Any

import pytest
from pydantic import ValidationError

from sockmapd.config import LogConfig
from sockmapd.config.log import SyslogFacility
from sockmapd.logs import (
    LOGGER_NAME,
    configure_logging,
    key_writer,
    log_request,
)
from sockmapd.protocol import Reply

FOUND = Reply.ok("alice@example.com")
NOTFOUND = Reply.notfound()
HASH_RE = re.compile(r"h:[0-9a-f]{12}")


@pytest.fixture(autouse=True)
def _restore_logger() -> Iterator[None]:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handlers, level, propagate = saved
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def log_lines(tmp_path: Path, payloads: list[bytes], reply: Reply = FOUND, **log: Any) -> list[str]:
    """Return the lines written to a log file for one request per payload."""
    path = tmp_path / "sockmapd.log"
    configure_logging(LogConfig.model_validate({"file": str(path), **log}))
    for payload in payloads:
        log_request("127.0.0.1:4711", payload, reply.status, perf_counter())
    return path.read_text(encoding="utf-8").splitlines()


def salt_file(tmp_path: Path, salt: bytes = b"s" * 32) -> Path:
    path = tmp_path / "key-salt"
    path.write_bytes(salt)
    return path


# ---------------------------------------------------------------- text and JSON lines


def test_text_request_line_is_key_value(tmp_path: Path) -> None:
    [line] = log_lines(tmp_path, [b"recipient alice@example.com"])
    assert re.search(
        r" INFO sockmapd\.request: client=127\.0\.0\.1:4711 map=recipient "
        r"key=alice@example\.com result=OK ms=\d+\.\d\d$",
        line,
    ), line


def test_json_request_line_carries_the_fields(tmp_path: Path) -> None:
    [line] = log_lines(tmp_path, [b"recipient nobody@example.com"], NOTFOUND, format="json")
    entry = json.loads(line)
    assert set(entry) == {"ts", "level", "logger", "msg", "client", "map", "key", "result", "ms"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert entry["level"] == "info"
    assert entry["logger"] == "sockmapd.request"
    assert entry["client"] == "127.0.0.1:4711"
    assert entry["map"] == "recipient"
    assert entry["key"] == "nobody@example.com"
    assert entry["result"] == "NOTFOUND"
    assert isinstance(entry["ms"], float)


def test_json_other_records_and_tracebacks_are_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "sockmapd.log"
    configure_logging(LogConfig(file=path, format="json"))
    logger = logging.getLogger("sockmapd.server.daemon")
    logger.warning("reload failed:\n%s", "line one\nline two")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("unexpected")
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["level"] == "warning"
    assert first["msg"] == "reload failed:\nline one\nline two"
    assert second["level"] == "error"
    assert "RuntimeError: boom" in second["exc"]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("breaker", ["\n", "\r", "\x85", "\u2028", "\u2029", "\x0b", "\x1c"])
def test_no_key_can_break_a_line(tmp_path: Path, log_format: str, breaker: str) -> None:
    key = f"evil{breaker}key=forged"
    lines = log_lines(tmp_path, [b"recipient " + key.encode()], format=log_format)
    assert len(lines) == 1, lines
    if log_format == "json":
        assert json.loads(lines[0])["key"] == key


def test_text_quotes_a_key_that_is_not_one_word(tmp_path: Path) -> None:
    [line] = log_lines(tmp_path, [b'recipient john doe"@example.com'])
    assert 'key="john doe\\"@example.com" result=OK' in line


def test_undecodable_bytes_are_escaped_not_dropped(tmp_path: Path) -> None:
    [line] = log_lines(tmp_path, [b"recipient \xff@example.com"], format="json")
    assert json.loads(line)["key"] == "\\xff@example.com"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_keepalive_is_never_logged(tmp_path: Path, log_format: str) -> None:
    lines = log_lines(
        tmp_path, [b"recipient KEEPALIVE", b"recipient alice@example.com"], format=log_format
    )
    assert len(lines) == 1
    assert "KEEPALIVE" not in lines[0]
    assert "alice@example.com" in lines[0]


def test_nothing_is_logged_below_the_level(tmp_path: Path) -> None:
    assert log_lines(tmp_path, [b"recipient alice@example.com"], level="warning") == []


def test_payload_without_a_space_is_logged_as_the_key(tmp_path: Path) -> None:
    [line] = log_lines(tmp_path, [b"alice@example.com"], Reply.perm("x"), format="json")
    entry = json.loads(line)
    assert (entry["map"], entry["key"], entry["result"]) == ("", "alice@example.com", "PERM")


# ---------------------------------------------------------------- key privacy


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_keys_false_writes_no_key(tmp_path: Path, log_format: str) -> None:
    payloads = [b"recipient alice@example.com", b"bob@example.com", b"recipient carol\n@x"]
    text = "\n".join(log_lines(tmp_path, payloads, format=log_format, log_keys=False))
    for secret in ("alice", "bob", "carol"):
        assert secret not in text
    assert len(HASH_RE.findall(text)) == 3


def test_hash_is_hmac_sha256_of_the_key_with_the_salt_file(tmp_path: Path) -> None:
    salt = os.urandom(32)
    config = LogConfig(log_keys=False, key_salt_file=salt_file(tmp_path, salt))
    expected = hmac.new(salt, b"alice@example.com", hashlib.sha256).hexdigest()[:12]
    assert key_writer(config)(b"alice@example.com") == f"h:{expected}"


def test_hash_is_stable_within_the_process_and_tells_keys_apart() -> None:
    config = LogConfig(log_keys=False)
    first = key_writer(config)
    again = key_writer(LogConfig(log_keys=False))
    assert first(b"alice@example.com") == again(b"alice@example.com")
    assert first(b"alice@example.com") != first(b"bob@example.com")
    assert HASH_RE.fullmatch(first(b"alice@example.com"))


def test_process_salt_is_not_a_known_constant(tmp_path: Path) -> None:
    # Without a salt file, no salt known offline (empty, or a salt file's) is used.
    hashed = key_writer(LogConfig(log_keys=False))(b"alice@example.com")
    with_file = key_writer(LogConfig(log_keys=False, key_salt_file=salt_file(tmp_path)))
    assert hashed != with_file(b"alice@example.com")
    assert hashed != "h:" + hmac.new(b"", b"alice@example.com", hashlib.sha256).hexdigest()[:12]


def test_log_keys_true_writes_the_key_itself() -> None:
    assert key_writer(LogConfig())(b"alice@example.com") == "alice@example.com"


# ---------------------------------------------------------------- targets


def test_reconfiguring_reopens_a_renamed_file(tmp_path: Path) -> None:
    path = tmp_path / "sockmapd.log"
    config = LogConfig(file=path)
    configure_logging(config)
    log_request("c", b"recipient first@example.com", FOUND.status, perf_counter())
    path.rename(tmp_path / "sockmapd.log.1")
    configure_logging(config)
    log_request("c", b"recipient second@example.com", FOUND.status, perf_counter())
    assert "first@" in (tmp_path / "sockmapd.log.1").read_text()
    assert "second@" not in (tmp_path / "sockmapd.log.1").read_text()
    assert "second@" in path.read_text()


def test_syslog_datagram_has_facility_priority_and_ident(tmp_path: Path) -> None:
    address = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.settimeout(10)
        configure_logging(
            LogConfig(target="syslog", syslog_address=address, syslog_facility="local3")
        )
        log_request("c", b"recipient alice@example.com", FOUND.status, perf_counter())
        logging.getLogger("sockmapd.server").warning("careful")
        request, warning = receiver.recv(65536), receiver.recv(65536)
    # local3 is facility 19: <19 * 8 + severity>, info is 6 and warning 4.
    assert request.startswith(f"<158>sockmapd[{os.getpid()}]: INFO sockmapd.request: ".encode())
    assert b" key=alice@example.com result=OK " in request
    assert warning.startswith(f"<156>sockmapd[{os.getpid()}]: WARNING ".encode())


def test_syslog_json_message_is_one_object(tmp_path: Path) -> None:
    address = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.settimeout(10)
        configure_logging(LogConfig(target="syslog", syslog_address=address, format="json"))
        log_request("c", b"recipient alice@example.com", FOUND.status, perf_counter())
        datagram = receiver.recv(65536)
    prefix = f"<22>sockmapd[{os.getpid()}]: ".encode()  # mail (2) * 8 + info (6)
    assert datagram.startswith(prefix)
    assert json.loads(datagram[len(prefix) :].rstrip(b"\0"))["key"] == "alice@example.com"


def test_unreachable_target_raises_and_keeps_logging_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "sockmapd.log"
    configure_logging(LogConfig(file=path))
    with pytest.raises(FileNotFoundError):
        configure_logging(LogConfig(file=tmp_path / "missing" / "sockmapd.log"))
    with pytest.raises(OSError, match="cannot reach the syslog socket"):
        configure_logging(LogConfig(target="syslog", syslog_address=str(tmp_path / "none")))
    log_request("c", b"recipient alice@example.com", FOUND.status, perf_counter())
    assert "alice@example.com" in path.read_text()


# ---------------------------------------------------------------- configuration


def test_defaults() -> None:
    config = LogConfig()
    assert (config.level, config.format, config.target) == ("info", "text", "stderr")
    assert (config.syslog_facility, config.syslog_address) == ("mail", "/dev/log")
    assert config.log_keys is True
    assert config.key_salt_file is None
    assert config.key_salt() is None


def test_file_alone_means_the_file_target() -> None:
    assert LogConfig.model_validate({"file": "/var/log/sockmapd.log"}).target == "file"


def test_key_salt_is_read_at_load(tmp_path: Path) -> None:
    config = LogConfig(log_keys=False, key_salt_file=salt_file(tmp_path, b"x" * 20 + b"\n"))
    assert config.key_salt() == b"x" * 20 + b"\n"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"target": "file"}, "file", 'target = "file" needs the path'),
        ({"target": "syslog", "file": "/x.log"}, "file", 'only used with target = "file"'),
        ({"target": "stderr", "file": "/x.log"}, "file", 'only used with target = "file"'),
        ({"file": ""}, "file", "must not be empty"),
        ({"format": "xml"}, "format", "'text' or 'json'"),
        ({"target": "journal"}, "target", "'stderr', 'file' or 'syslog'"),
        ({"syslog_facility": "mial"}, "syslog_facility", "'mail'"),
        ({"syslog_address": "dev/log"}, "syslog_address", "absolute socket path nor HOST:PORT"),
        ({"syslog_address": "loghost"}, "syslog_address", "absolute socket path nor HOST:PORT"),
        ({"log_keys": "no"}, "log_keys", "valid boolean"),
        ({"key_salt_file": "/etc/hostname"}, "key_salt_file", "only used with log_keys = false"),
        ({"log_keys": False, "key_salt_file": "/nonexistent"}, "key_salt_file", "cannot read"),
    ],
)
def test_invalid_settings_are_reported_at_their_field(
    data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        LogConfig.model_validate(data)
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


@pytest.mark.parametrize(("salt", "holds"), [(b"short", "5 bytes"), (b"x", "1 byte")])
def test_short_key_salt_file_is_refused(tmp_path: Path, salt: bytes, holds: str) -> None:
    with pytest.raises(ValidationError, match=f" holds {holds}, fewer than 16"):
        LogConfig(log_keys=False, key_salt_file=salt_file(tmp_path, salt))


def test_every_facility_is_one_syslog_handler_knows() -> None:
    accepted = typing.get_args(SyslogFacility)
    assert "mail" in accepted
    assert set(accepted) <= set(logging.handlers.SysLogHandler.facility_names)


def test_network_syslog_address_is_accepted() -> None:
    assert LogConfig(syslog_address="[2001:db8::1]:514").syslog_address == "[2001:db8::1]:514"
