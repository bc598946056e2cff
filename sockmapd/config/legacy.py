"""The JSON configuration of the older Go sockmapd, converted to the current models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError

from sockmapd.config.errors import (
    ConfigError,
    Location,
    Problem,
    error_message,
    format_path,
    problems_from_validation_error,
)
from sockmapd.config.models import Config
from sockmapd.config.server import DEFAULT_PORT

# Source name used until the loader substitutes the file name.
LEGACY_SOURCE = "<legacy>"
# The Go daemon answered any IPv4 client.
LEGACY_ALLOW = "0.0.0.0/0"
# The Go daemon refused privileged ports for its listener.
_MIN_LEGACY_LISTEN_PORT = 1025


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _empty_as_absent(value: object) -> object:
    # The Go daemon decoded into plain string fields, where "" meant "not set".
    return None if value == "" else value


def _port_number(value: object) -> object:
    """Return a port given as a decimal string (as the Go daemon wrote it) or an int, as int."""
    if isinstance(value, bool):
        # pydantic turns only ValueError into a validation error; TypeError would escape.
        raise ValueError("must be a port number")  # noqa: TRY004
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"{value!r} is not a port number")
        return int(value)
    return value


def _database_port(value: object) -> object:
    port = _port_number(_empty_as_absent(value))
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not in the range 1 to 65535")
    return port


def _listen_port(value: object) -> object:
    port = _port_number(_empty_as_absent(value))
    if isinstance(port, int) and not _MIN_LEGACY_LISTEN_PORT <= port <= 65535:
        raise ValueError(f"port {port} is not in the range {_MIN_LEGACY_LISTEN_PORT} to 65535")
    return port


OptionalText = Annotated[StrictStr | None, BeforeValidator(_empty_as_absent)]


class _LegacyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegacyDatabase(_LegacyModel):
    """The one database server block shared by all legacy maps."""

    host: Annotated[list[StrictStr], BeforeValidator(_one_or_many), Field(min_length=1)]
    port: Annotated[int | None, BeforeValidator(_database_port)] = None
    username: StrictStr
    password: OptionalText = None


class LegacySysconfig(_LegacyModel):
    """Listener port, log file and the account to run as."""

    run_as_user: OptionalText = None
    run_as_group: OptionalText = None
    port: Annotated[int | None, BeforeValidator(_listen_port)] = None
    logfile: OptionalText = None


class LegacyPostmap(_LegacyModel):
    """One legacy map; ``database`` is a schema on the shared server."""

    service: StrictStr
    database: StrictStr
    table: StrictStr
    key: StrictStr
    value: OptionalText = None
    reason: OptionalText = None


class LegacyFile(_LegacyModel):
    """The whole legacy JSON document."""

    database: LegacyDatabase
    sysconfig: LegacySysconfig = LegacySysconfig()
    postmaps: list[LegacyPostmap] = []


def from_legacy(data: object, *, fallback_port: int | None, base_dir: Path | None = None) -> Config:
    """Return the Config equivalent to a decoded legacy JSON document, or raise ConfigError."""
    try:
        legacy = LegacyFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(LEGACY_SOURCE, problems_from_validation_error(exc, LegacyFile)) from None

    problems: list[Problem] = []
    map_index: dict[str, int] = {}
    database_index: dict[str, int] = {}
    for index, postmap in enumerate(legacy.postmaps):
        if postmap.service in map_index:
            problems.append(
                Problem(
                    format_path(("postmaps", index, "service")),
                    f"duplicate map name {postmap.service!r}",
                )
            )
        else:
            map_index[postmap.service] = index
        database_index.setdefault(postmap.database, index)

    raw = _as_config_data(legacy, map_index, database_index, fallback_port)
    try:
        config = Config.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors():
            loc = _legacy_location(error["loc"], map_index, database_index)
            problem = Problem(format_path(loc), error_message(error))
            # Every converted database repeats the shared server block; report its errors once.
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise ConfigError(LEGACY_SOURCE, problems)
    config._legacy = True
    return config


def _as_config_data(
    legacy: LegacyFile,
    map_index: dict[str, int],
    database_index: dict[str, int],
    fallback_port: int | None,
) -> dict[str, Any]:
    sysconfig = legacy.sysconfig
    port = sysconfig.port or fallback_port or DEFAULT_PORT
    # The Go daemon accepted every client and could run as root: a file reused
    # unchanged keeps working, and the server warns at start how to restrict it.
    server: dict[str, Any] = {
        "listen": [f"tcp://0.0.0.0:{port}"],
        "allow": [LEGACY_ALLOW],
        "allow_root": True,
    }
    if sysconfig.run_as_user is not None:
        server["run_as_user"] = sysconfig.run_as_user
    if sysconfig.run_as_group is not None:
        server["run_as_group"] = sysconfig.run_as_group
    log: dict[str, Any] = {}
    if sysconfig.logfile is not None:
        log["file"] = sysconfig.logfile

    shared = legacy.database
    databases: dict[str, Any] = {}
    for name in database_index:
        database: dict[str, Any] = {
            "driver": "mysql",
            "hosts": list(shared.host),
            "name": name,
            "user": shared.username,
        }
        if shared.port is not None:
            database["port"] = shared.port
        if shared.password is not None:
            database["password"] = shared.password
        databases[name] = database

    maps: dict[str, Any] = {}
    for service, index in map_index.items():
        postmap = legacy.postmaps[index]
        entry: dict[str, Any] = {
            "database": postmap.database,
            "table": postmap.table,
            "key": postmap.key,
        }
        if postmap.value is not None:
            entry["value"] = postmap.value
        if postmap.reason is not None:
            entry["reason"] = postmap.reason
        maps[service] = entry
    return {"server": server, "log": log, "databases": databases, "maps": maps}


_DATABASE_FIELDS = {"hosts": "host", "port": "port", "user": "username", "password": "password"}


def _legacy_location(
    loc: Location, map_index: dict[str, int], database_index: dict[str, int]
) -> Location:
    """Return where in the legacy document the value at loc (a Config location) came from."""
    match loc:
        case ("server", "listen", *_):
            return ("sysconfig", "port")
        case ("server", field, *rest):
            return ("sysconfig", field, *rest)
        case ("log", "file", *_):
            return ("sysconfig", "logfile")
        case ("databases", str(name), field, *rest) if name in database_index:
            if field in ("[key]", "name"):
                return ("postmaps", database_index[name], "database")
            if isinstance(field, str) and field in _DATABASE_FIELDS:
                return ("database", _DATABASE_FIELDS[field], *rest)
            return ("database",)
        case ("maps", str(service), *rest) if service in map_index:
            if rest == ["[key]"]:
                return ("postmaps", map_index[service], "service")
            return ("postmaps", map_index[service], *rest)
    return loc
