"""Writing a Config as TOML: the settings that differ from their defaults, or all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from sockmapd.config.base import Model
from sockmapd.config.databases import DatabaseConfig
from sockmapd.config.models import Config

SECRET_MASK = "********"  # noqa: S105
_MASK_NOTE = f'# Passwords are masked as "{SECRET_MASK}"; run with --show-secrets to write them.\n'
# Stands in for the password while SQLAlchemy renders a URL: it percent-encodes
# "*", which would make the mask unreadable.
_URL_PLACEHOLDER = "SOCKMAPDMASKEDPASSWORD"


def to_toml(config: Config, *, reveal_secrets: bool = False, include_defaults: bool = False) -> str:
    """Return the config as TOML that loads to an equal Config.

    Only the settings that differ from their defaults are written, as ``postconf -n``
    prints Postfix's; with include_defaults, every setting that has a value. Passwords
    are masked unless reveal_secrets.
    """
    head: dict[str, Any] = {}
    for section in ("server", "log", "metrics"):
        table = _settings(getattr(config, section), include_defaults)
        if table:
            head[section] = table
    parts = [tomli_w.dumps(head)] if head else []
    if config.databases:
        masked = False
        databases: dict[str, Any] = {}
        for name, database in config.databases.items():
            databases[name], hidden = _database(database, reveal_secrets, include_defaults)
            masked = masked or hidden
        parts.append((_MASK_NOTE if masked else "") + tomli_w.dumps({"databases": databases}))
    if config.maps:
        maps = {name: _settings(entry, include_defaults) for name, entry in config.maps.items()}
        parts.append(tomli_w.dumps({"maps": maps}))
    # tomli_w writes short tables inline; a test reads better as a [[tests]] table.
    parts += ["[[tests]]\n" + tomli_w.dumps(_settings(t, True)) for t in config.tests]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)


def _settings(model: Model, include_defaults: bool) -> dict[str, Any]:
    """Return the fields of model that have a value and, unless include_defaults, not the default.

    An unset option (None) has no TOML form: it is left out, as in the file it came from.
    """
    table: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if not include_defaults and value == field.get_default(call_default_factory=True):
            continue
        table[name] = str(value) if isinstance(value, Path) else value
    return table


def _database(
    database: DatabaseConfig, reveal_secrets: bool, include_defaults: bool
) -> tuple[dict[str, Any], bool]:
    """Return the TOML table of one database and whether a password in it was masked."""
    table = _settings(database, include_defaults)
    if not database.tls:
        # tls_verify is refused without tls = true, even at its default.
        table.pop("tls_verify", None)
    masked = False
    if database.url is not None and not reveal_secrets:
        parsed = make_url(database.url)
        if parsed.password is not None:
            rendered = parsed.set(password=_URL_PLACEHOLDER).render_as_string(hide_password=False)
            table["url"] = rendered.replace(_URL_PLACEHOLDER, SECRET_MASK, 1)
            masked = True
    password: SecretStr | None = table.get("password")
    if password is not None:
        # A password_file or password_env names no secret: those are written as they are.
        table["password"] = password.get_secret_value() if reveal_secrets else SECRET_MASK
        masked = masked or not reveal_secrets
    return table, masked
