"""Writing a Config as canonical TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy.engine import make_url

from sockmapd.config.databases import DatabaseConfig
from sockmapd.config.log import LogConfig
from sockmapd.config.maps import MapConfig
from sockmapd.config.models import Config
from sockmapd.config.server import ServerConfig

SECRET_MASK = "********"  # noqa: S105
_MASK_NOTE = f'# Passwords are masked as "{SECRET_MASK}"; run with --show-secrets to write them.\n'
# Stands in for the password while SQLAlchemy renders a URL: it percent-encodes
# "*", which would make the mask unreadable.
_URL_PLACEHOLDER = "SOCKMAPDMASKEDPASSWORD"
# Connection settings written only when they differ from their defaults: most
# databases use none of them, and TLS options are valid only with tls = true.
_CONNECTION_FIELDS = (
    "tls",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_verify",
    "connect_timeout",
    "query_timeout",
    "pool_size",
    "max_overflow",
    "pool_recycle",
    "retry_interval",
    "host_order",
    "target_session_attrs",
    "pgbouncer",
)


def to_toml(config: Config, *, reveal_secrets: bool = False) -> str:
    """Return the config as canonical TOML; passwords are masked unless reveal_secrets."""
    head: dict[str, Any] = {"server": _server(config.server), "log": _log(config.log)}
    if config.metrics.listen is not None:
        head["metrics"] = {"listen": config.metrics.listen}
    parts = [tomli_w.dumps(head)]
    if config.databases:
        masked = False
        databases: dict[str, Any] = {}
        for name, database in config.databases.items():
            databases[name], hidden = _database(database, reveal_secrets)
            masked = masked or hidden
        parts.append((_MASK_NOTE if masked else "") + tomli_w.dumps({"databases": databases}))
    if config.maps:
        maps = {name: _map(entry) for name, entry in config.maps.items()}
        parts.append(tomli_w.dumps({"maps": maps}))
    # tomli_w writes short tables inline; a test reads better as a [[tests]] table.
    parts += ["[[tests]]\n" + tomli_w.dumps(_without_none(t.model_dump())) for t in config.tests]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _server(server: ServerConfig) -> dict[str, Any]:
    # Every setting is written, defaults included, so an admin sees what is in effect.
    return _without_none(server.model_dump())


def _log(log: LogConfig) -> dict[str, Any]:
    # The level is always written; the other options only when they differ from
    # their defaults, and target only when file does not already imply it.
    table: dict[str, Any] = {"level": log.level}
    fields = LogConfig.model_fields
    for name in (
        "format",
        "target",
        "file",
        "syslog_facility",
        "syslog_address",
        "log_keys",
        "key_salt_file",
    ):
        value = getattr(log, name)
        if name == "target" and value == ("file" if log.file is not None else "stderr"):
            continue
        if value is not None and value != fields[name].default:
            table[name] = str(value) if isinstance(value, Path) else value
    return table


def _database(database: DatabaseConfig, reveal_secrets: bool) -> tuple[dict[str, Any], bool]:
    """Return the TOML table of one database and whether a password in it was masked."""
    masked = False
    url = database.url
    if url is not None and not reveal_secrets:
        parsed = make_url(url)
        if parsed.password is not None:
            rendered = parsed.set(password=_URL_PLACEHOLDER).render_as_string(hide_password=False)
            url = rendered.replace(_URL_PLACEHOLDER, SECRET_MASK, 1)
            masked = True
    password = None
    if database.password is not None:
        password = database.password.get_secret_value() if reveal_secrets else SECRET_MASK
        masked = masked or not reveal_secrets
    table = _without_none(
        {
            "url": url,
            "driver": database.driver,
            "hosts": list(database.hosts) or None,
            "port": database.port,
            "name": database.name,
            "user": database.user,
            "password": password,
            # A file name or a variable name is no secret: written as it is.
            "password_file": _path(database.password_file),
            "password_env": database.password_env,
            "init_sql": _path(database.init_sql),
        }
    )
    fields = DatabaseConfig.model_fields
    for name in _CONNECTION_FIELDS:
        value = getattr(database, name)
        if value != fields[name].default:
            table[name] = str(value) if isinstance(value, Path) else value
    return table, masked


def _map(entry: MapConfig) -> dict[str, Any]:
    # Options at their defaults are left out, as most maps use none of them.
    fields = MapConfig.model_fields
    return {
        name: value
        for name, value in entry.model_dump().items()
        if value is not None and value != fields[name].default
    }
