"""The log section: level, line format, destination and whether lookup keys are written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sockmapd.config.addresses import parse_host_port
from sockmapd.config.base import Model, reject_empty_path, resolve_path
from sockmapd.config.files import read_bounded
from sockmapd.text import counted

LogFormat = Literal["text", "json"]
LogTarget = Literal["stderr", "file", "syslog"]
# The standard facility names, all known to logging.handlers.SysLogHandler;
# spelled out so that the configuration reference lists them.
SyslogFacility = Literal[
    "auth",
    "authpriv",
    "cron",
    "daemon",
    "ftp",
    "kern",
    "lpr",
    "mail",
    "news",
    "syslog",
    "user",
    "uucp",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
# A key salt is a secret of a few dozen bytes; the cap keeps a wrong path from filling memory.
MIN_KEY_SALT_BYTES = 16
MAX_KEY_SALT_BYTES = 65536


def _check_syslog_address(text: str) -> str:
    if text.startswith("/"):
        if "\0" in text:
            raise ValueError("the socket path contains a NUL byte")
        return text
    problem = ValueError(
        f"{text!r} is neither an absolute socket path nor HOST:PORT (UDP), "
        'e.g. "/dev/log" or "192.0.2.10:514"'
    )
    try:
        _, port = parse_host_port(text)
    except ValueError:
        raise problem from None
    if port is None:
        raise problem
    return text


def _read_key_salt(path: Path) -> bytes:
    """Return the bytes of a key salt file; raise ValueError if it cannot serve as one."""
    salt = read_bounded(path, MAX_KEY_SALT_BYTES, str(path))
    if len(salt) < MIN_KEY_SALT_BYTES:
        raise ValueError(
            f"{path} holds {counted(len(salt), 'byte')}, fewer than {MIN_KEY_SALT_BYTES}: "
            "fill it with e.g. head -c 32 /dev/urandom"
        )
    return salt


SyslogAddress = Annotated[str, AfterValidator(_check_syslog_address)]


class LogConfig(Model):
    """Log level, line format, destination and whether lookup keys are written."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: LogFormat = "text"
    # Given file alone (as every config before target existed did) means target "file".
    target: LogTarget = "stderr"
    file: Path | None = Field(default=None, validate_default=True)
    syslog_facility: SyslogFacility = "mail"
    syslog_address: SyslogAddress = "/dev/log"
    log_keys: StrictBool = True
    key_salt_file: Path | None = Field(default=None, validate_default=True)

    _key_salt: bytes | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _file_implies_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and "target" not in data and data.get("file") is not None:
            return {**data, "target": "file"}
        return data

    _non_empty_file = field_validator("file", "key_salt_file", mode="before")(reject_empty_path)

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        target = info.data.get("target")
        if value is None:
            if target == "file":
                raise ValueError(
                    'required key is missing: target = "file" needs the path of the log '
                    'file, e.g. file = "/var/log/sockmapd/sockmapd.log"'
                )
            return None
        if target is not None and target != "file":
            raise ValueError(f'only used with target = "file", not with target = "{target}"')
        return resolve_path(value, info)

    @field_validator("key_salt_file")
    @classmethod
    def _resolve_salt_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if info.data.get("log_keys", False):
            raise ValueError(
                "only used with log_keys = false: the salt is for the hashes written "
                "in place of keys"
            )
        path = resolve_path(value, info)
        _read_key_salt(path)
        return path

    @model_validator(mode="after")
    def _load_key_salt(self) -> LogConfig:
        if self.key_salt_file is not None:
            # Read again, as the validated path: the validator above reported any error.
            self._key_salt = _read_key_salt(self.key_salt_file)
        return self

    def key_salt(self) -> bytes | None:
        """Return the bytes of key_salt_file as read at load, or None without one."""
        return self._key_salt
