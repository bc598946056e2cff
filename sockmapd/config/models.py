"""The root configuration model: the sections, each validated by its own module, as one."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from sockmapd.config.base import Model
from sockmapd.config.databases import DatabaseConfig
from sockmapd.config.log import LogConfig
from sockmapd.config.map_tests import MapTest, validate_tests
from sockmapd.config.maps import MapConfig, database_dialects, defined_databases
from sockmapd.config.server import MetricsConfig, ServerConfig

_DATABASE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_MAP_NAME = 100


def _check_database_name(name: str) -> str:
    if not _DATABASE_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: use 1 to 64 letters, digits, '_' or '-'")
    return name


def _check_map_name(name: str) -> str:
    if not name:
        raise ValueError("map name must not be empty")
    if len(name) > MAX_MAP_NAME:
        raise ValueError(f"map name is longer than {MAX_MAP_NAME} characters")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise ValueError(f"map name {name!r} must not contain whitespace or control characters")
    if ":" in name:
        # Postfix splits socketmap:...:NAME at the last ':', so it could never ask for this map.
        raise ValueError(f"map name {name!r} must not contain ':'")
    return name


DatabaseName = Annotated[str, AfterValidator(_check_database_name)]
MapName = Annotated[str, AfterValidator(_check_map_name)]


class Config(Model):
    """The whole daemon configuration."""

    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    databases: dict[DatabaseName, DatabaseConfig] = {}  # noqa: RUF012
    maps: dict[MapName, MapConfig] = {}  # noqa: RUF012
    tests: list[MapTest] = []  # noqa: RUF012

    # Set only by from_legacy, so that the server can warn about the legacy defaults;
    # to_toml leaves it out, as a converted file is no longer legacy.
    _legacy: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _track_defined_databases(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        databases = data.databases if isinstance(data, Config) else None
        if isinstance(data, dict):
            databases = data.get("databases", {})
        names = frozenset(str(n) for n in databases) if isinstance(databases, dict) else None
        token = defined_databases.set(names)
        try:
            return handler(data)
        finally:
            defined_databases.reset(token)

    @field_validator("maps", mode="wrap")
    @classmethod
    def _maps_know_their_dialects(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        databases: dict[str, DatabaseConfig] = info.data.get("databases") or {}
        token = database_dialects.set({name: db.dialect for name, db in databases.items()})
        try:
            return handler(value)
        finally:
            database_dialects.reset(token)

    @field_validator("tests", mode="wrap")
    @classmethod
    def _tests_know_the_maps(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        # Without valid maps (already reported) a test's map cannot be checked.
        maps: dict[str, MapConfig] | None = info.data.get("maps")
        return validate_tests(value, handler, None if maps is None else list(maps))

    @field_validator("metrics")
    @classmethod
    def _metrics_listen_apart(cls, value: MetricsConfig, info: ValidationInfo) -> MetricsConfig:
        server: ServerConfig | None = info.data.get("server")
        if value.listen is not None and server is not None and value.listen in server.listen:
            raise ValueError(
                f"listen {value.listen!r} is also in server.listen: "
                "the metrics listener needs an address of its own"
            )
        return value

    def __eq__(self, other: object) -> bool:
        # Legacy or not changes only a warning at start: a legacy file and its
        # conversion are the same configuration.
        if not isinstance(other, Config):
            return NotImplemented
        if other._legacy == self._legacy:
            return super().__eq__(other)
        same_origin = other.model_copy()
        same_origin._legacy = self._legacy
        return super().__eq__(same_origin)

    @property
    def is_legacy(self) -> bool:
        """Return True for a configuration read from the Go daemon's JSON."""
        return self._legacy
