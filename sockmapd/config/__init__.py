"""Configuration: files (TOML, or the legacy Go daemon's JSON) turned into validated models."""

from sockmapd.config.addresses import TcpAddress, UnixAddress, parse_listen_address
from sockmapd.config.errors import ConfigError, Problem
from sockmapd.config.legacy import from_legacy
from sockmapd.config.loader import load_config, parse_config
from sockmapd.config.models import (
    Config,
    DatabaseConfig,
    LogConfig,
    MapConfig,
    ServerConfig,
)
from sockmapd.config.writer import to_toml

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "LogConfig",
    "MapConfig",
    "Problem",
    "ServerConfig",
    "TcpAddress",
    "UnixAddress",
    "from_legacy",
    "load_config",
    "parse_config",
    "parse_listen_address",
    "to_toml",
]
