"""Configuration: files (TOML, the legacy Go daemon's JSON, Postfix SQL tables) as models."""

from sockmapd.config.addresses import TcpAddress, UnixAddress, parse_listen_address
from sockmapd.config.databases import DatabaseConfig, Endpoint
from sockmapd.config.errors import ConfigError, Problem, SecretError
from sockmapd.config.legacy import from_legacy
from sockmapd.config.loader import load_config, parse_config, parse_tests
from sockmapd.config.log import LogConfig
from sockmapd.config.map_tests import MapTest
from sockmapd.config.maps import KeyTransform, MapConfig
from sockmapd.config.models import Config
from sockmapd.config.postfix_import import (
    DroppedParameter,
    PostfixImport,
    PostfixImportError,
    PostfixSource,
    import_postfix,
)
from sockmapd.config.server import MetricsConfig, ServerConfig
from sockmapd.config.writer import to_toml

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DroppedParameter",
    "Endpoint",
    "KeyTransform",
    "LogConfig",
    "MapConfig",
    "MapTest",
    "MetricsConfig",
    "PostfixImport",
    "PostfixImportError",
    "PostfixSource",
    "Problem",
    "SecretError",
    "ServerConfig",
    "TcpAddress",
    "UnixAddress",
    "from_legacy",
    "import_postfix",
    "load_config",
    "parse_config",
    "parse_listen_address",
    "parse_tests",
    "to_toml",
]
