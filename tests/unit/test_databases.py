"""Databases: one engine and one lookup pool each, carried over a reload when unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.pool import NullPool

from sockmapd.backends import create_databases
from sockmapd.config import parse_config

CONFIG = """
[databases.mail]
url = "sqlite+aiosqlite:///{db}"
query_timeout = {query_timeout}

[databases.other]
driver = "postgresql"
hosts = ["127.0.0.1:1"]
name = "mail"
user = "sockmapd"
password_file = "{password_file}"
tls = true
tls_verify = false
"""


def configs(tmp_path: Path, query_timeout: float = 5.0) -> str:
    return CONFIG.format(
        db=tmp_path / "mail.sqlite3",
        query_timeout=query_timeout,
        password_file=tmp_path / "password",
    )


def test_engines_keep_no_connection_and_the_pool_recycles_as_configured(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("secret\n")
    text = configs(tmp_path).replace(
        "query_timeout = 5.0", "query_timeout = 5.0\npool_recycle = 60.0"
    )
    databases = create_databases(parse_config(text).databases)
    for database in databases.values():
        assert isinstance(database.engine.pool, NullPool)
    assert databases["mail"].config.pool_recycle == 60.0
    assert databases["other"].config.pool_recycle == 1800.0
    asyncio.run(databases.dispose())


def test_a_reload_keeps_unchanged_databases_and_replaces_changed_ones(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("secret\n")
    first = create_databases(parse_config(configs(tmp_path)).databases)
    same = create_databases(parse_config(configs(tmp_path)).databases, first)
    assert same["mail"] is first["mail"]
    assert same["other"] is first["other"]
    assert first.replaced_by(same) == []

    changed = create_databases(parse_config(configs(tmp_path, 2.0)).databases, same)
    assert changed["mail"] is not same["mail"]
    assert changed["other"] is same["other"]
    assert same.replaced_by(changed) == [same["mail"]]
    asyncio.run(first.dispose())
    asyncio.run(changed.dispose())


def test_a_changed_file_behind_the_same_name_is_a_change(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("secret\n")
    first = create_databases(parse_config(configs(tmp_path)).databases)
    password.write_text("renewed\n")
    second = create_databases(parse_config(configs(tmp_path)).databases, first)
    assert second["other"] is not first["other"]
    assert second["mail"] is first["mail"]
    asyncio.run(first.dispose())
    asyncio.run(second.dispose())


def test_databases_are_keyed_by_name(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("secret\n")
    databases = create_databases(parse_config(configs(tmp_path)).databases)
    assert sorted(databases) == ["mail", "other"]
    assert "nope" not in databases
    asyncio.run(databases.dispose())
