"""Configuration: files (TOML, or the legacy Go daemon's JSON) turned into validated models."""

from sockmapd.config.addresses import TcpAddress, UnixAddress, parse_listen_address
from sockmapd.config.errors import ConfigError, Problem, SecretError
from sockmapd.config.legacy import from_legacy
from sockmapd.config.loader import load_config, parse_config
from sockmapd.config.models import (
    Config,
    DatabaseConfig,
    Endpoint,
    LogConfig,
    MapConfig,
    ServerConfig,
)
from sockmapd.config.writer import to_toml

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "Endpoint",
    "LogConfig",
    "MapConfig",
    "Problem",
    "SecretError",
    "ServerConfig",
    "TcpAddress",
    "UnixAddress",
    "from_legacy",
    "load_config",
    "parse_config",
    "parse_listen_address",
    "to_toml",
]
