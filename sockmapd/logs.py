"""Configure where and how sockmapd logs, and write the one line per request.

A request is logged as a record carrying its fields (:class:`RequestFields`), not
as finished text: the formatter of the configured handler writes it as key=value
text or as a JSON object, and writes the key itself or its salted hash. So the
choice of format and key privacy is made once, when logging is configured.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import logging.handlers
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter

from sockmapd.config import LogConfig
from sockmapd.config.addresses import parse_host_port
from sockmapd.protocol import Status

LOGGER_NAME = "sockmapd"
REQUEST_LOGGER_NAME = "sockmapd.request"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# syslog stamps the time and the ident (sockmapd[pid]) itself.
SYSLOG_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
REQUEST_MESSAGE = "request"
# Health probes send this key all day long; answering them is enough.
UNLOGGED_KEY = b"KEEPALIVE"
KEY_HASH_PREFIX = "h:"
# 48 bits: enough to tell keys apart in a day's log, too few to be a lookup table.
KEY_HASH_HEX_DIGITS = 12

# Answered requests are logged here at info level. The request path asks
# request_log.isEnabledFor(logging.INFO) itself: one call per request, not two.
request_log = logging.getLogger(REQUEST_LOGGER_NAME)

# Besides "\n" and "\r", which json.dumps escapes, Python's str.splitlines() and
# some log tools break lines at these: escape them too, so no key can forge a line.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


@dataclass(frozen=True, slots=True)
class RequestFields:
    """One answered request as logged: who asked, what, the result and how long it took."""

    client: str
    map: str
    key: bytes
    result: str
    ms: float


def log_request(peer: str, payload: bytes, status: Status, started: float) -> None:
    """Log one answered request at info level; KEEPALIVE probes are never logged."""
    # The request path is hot: with info off this test is all it costs.
    if not request_log.isEnabledFor(logging.INFO):
        return
    map_name, space, key = payload.partition(b" ")
    if key == UNLOGGED_KEY:
        return
    if not space:
        # No map name could be told apart: the whole payload is logged as the key,
        # so that log_keys = false hides it too.
        map_name, key = b"", payload
    fields = RequestFields(
        peer,
        map_name.decode("utf-8", errors="backslashreplace"),
        key,
        status.value,
        (perf_counter() - started) * 1000.0,
    )
    request_log.info(REQUEST_MESSAGE, extra={"request": fields})


class KeyWriter:
    """Writes a lookup key as itself, or as a salted hash when keys must not be logged."""

    __slots__ = ("_salt",)

    def __init__(self, salt: bytes | None) -> None:
        self._salt = salt

    def __call__(self, key: bytes) -> str:
        """Return the key as text, or 'h:' and the first hex digits of HMAC-SHA256(salt, key)."""
        if self._salt is None:
            return key.decode("utf-8", errors="backslashreplace")
        digest = hmac.new(self._salt, key, hashlib.sha256).hexdigest()
        return KEY_HASH_PREFIX + digest[:KEY_HASH_HEX_DIGITS]


@functools.cache
def process_salt() -> bytes:
    """Return a random salt made once per process: hashes match within a run, not across."""
    return secrets.token_bytes(32)


def key_writer(config: LogConfig) -> KeyWriter:
    """Return how keys are written under config: plain, or hashed with its salt."""
    if config.log_keys:
        return KeyWriter(None)
    salt = config.key_salt()
    return KeyWriter(process_salt() if salt is None else salt)


def quote(text: str) -> str:
    """Return text as is if it is one printable word, else JSON-quoted: no forged log lines."""
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return json_text(text)


def json_text(value: object) -> str:
    """Return value as JSON on one line, whatever line breaks its strings hold."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS)


class TextFormatter(logging.Formatter):
    """Formats records as text; a request as client=... map=... key=... result=... ms=..."""

    def __init__(self, fmt: str, keys: KeyWriter) -> None:
        super().__init__(fmt)
        self._keys = keys

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Return the line, the request fields in place of the message of a request."""
        fields = getattr(record, "request", None)
        if isinstance(fields, RequestFields):
            record.message = (
                f"client={quote(fields.client)} map={quote(fields.map)} "
                f"key={quote(self._keys(fields.key))} result={fields.result} ms={fields.ms:.2f}"
            )
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object: ts, level, logger, msg, and a request's fields."""

    def __init__(self, keys: KeyWriter) -> None:
        super().__init__()
        self._keys = keys

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "request", None)
        if isinstance(fields, RequestFields):
            entry["client"] = fields.client
            entry["map"] = fields.map
            entry["key"] = self._keys(fields.key)
            entry["result"] = fields.result
            entry["ms"] = round(fields.ms, 2)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json_text(entry)


def _open_handler(config: LogConfig) -> logging.Handler:
    """Return the handler for config's target; raise OSError if it cannot be opened."""
    if config.target == "file":
        assert config.file is not None  # the model requires it for this target
        # WatchedFileHandler reopens the file when logrotate has moved it away.
        return logging.handlers.WatchedFileHandler(config.file, encoding="utf-8")
    if config.target == "syslog":
        address: str | tuple[str, int] = config.syslog_address
        if config.syslog_address.startswith("/"):
            _check_syslog_socket(config.syslog_address)
        else:
            host, port = parse_host_port(config.syslog_address)
            assert port is not None  # the model requires it for a network address
            address = (host, port)
        facility = logging.handlers.SysLogHandler.facility_names[config.syslog_facility]
        handler = logging.handlers.SysLogHandler(address, facility)
        handler.ident = f"sockmapd[{os.getpid()}]: "
        return handler
    return logging.StreamHandler(sys.stderr)


def reopen_log_file() -> bool:
    """Reopen the log file under its name if it was moved away (SIGUSR1, logrotate).

    Return False if the logs go elsewhere than to a file. The configuration is
    not read again.
    """
    files = [
        handler
        for handler in logging.getLogger(LOGGER_NAME).handlers
        if isinstance(handler, logging.handlers.WatchedFileHandler)
    ]
    for handler in files:
        handler.reopenIfNeeded()
    return bool(files)


def restamp_after_fork() -> None:
    """Put this process's pid in the syslog ident; a forked worker inherits its parent's."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(handler, logging.handlers.SysLogHandler):
            handler.ident = f"sockmapd[{os.getpid()}]: "


def _check_syslog_socket(path: str) -> None:
    """Raise OSError unless a syslog daemon answers at path (datagram or stream)."""
    # SysLogHandler ignores a socket it cannot reach and drops every line until
    # it can: a wrong syslog_address must fail the start or the reload instead.
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
            except OSError as exc:
                error = exc
            else:
                return
    raise OSError(error.errno, f"cannot reach the syslog socket {path}: {error.strerror}")


def configure_logging(config: LogConfig) -> None:
    """Send the sockmapd loggers to the configured target, format and level.

    Called again on reload (SIGHUP): the previous handler is closed and
    the new one opened, so a log file moved away is reopened under its name.
    Raises OSError, and leaves logging as it was, if the target cannot be opened.
    """
    handler = _open_handler(config)
    keys = key_writer(config)
    if config.format == "json":
        handler.setFormatter(JsonFormatter(keys))
    elif config.target == "syslog":
        handler.setFormatter(TextFormatter(SYSLOG_TEXT_FORMAT, keys))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT, keys))
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(config.level.upper())
    logger.propagate = False
