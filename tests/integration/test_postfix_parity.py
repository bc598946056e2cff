"""Postfix's own SQL tables and the same files imported into sockmapd answer alike."""

# For each backend the .cf files in postfix_cf/ (Postfix's documented syntax, plus the
# connection lines of that backend) are imported with `sockmapd config import-postfix`,
# and `postmap -q` asks every key of each table twice: directly (mysql:, pgsql:, sqlite:)
# and through sockmapd (socketmap:). Output and exit status must be identical, and so
# must be whether postmap reported a lookup error; the error text itself may differ.
#
# Postfix 3.7's pgsql client always sets client_encoding LATIN1, so a UTF-8 key reaches
# PostgreSQL as mojibake and is never found, and a non-ASCII value comes back as Latin-1
# bytes. On PostgreSQL the values are therefore ASCII and the UTF-8 keys are ones that
# are not in any table (Postfix cannot find the others).

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.integration.conftest import postmap_binary
from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database
from tests.integration.postmap import (
    Outcome,
    connection_lines,
    lookups,
    one,
    postfix_types,
    show,
)

pytestmark = pytest.mark.postfix

CF_DIR = Path(__file__).parent / "postfix_cf"
MAPS = [
    "aliases",
    "parts",
    "transport",
    "rformat",
    "domains",
    "limited",
    "legacy",
    "columns",
    "labels",
    "literals",
    "joined",
    "like",
    "syntax",
]
# Maps whose queries use one database's own literal syntax (backslash escapes).
BACKEND_MAPS = {"mariadb": ["escapes_mysql"], "postgresql": ["escapes_pgsql"], "sqlite": []}
POSTFIX_TYPE = {"mariadb": "mysql", "postgresql": "pgsql", "sqlite": "sqlite"}

# address, goto, active
ALIASES: list[tuple[str, str | None, int]] = [
    ("alice@example.com", "alice@mail.example", 1),
    ("bob@example.com", "bob@mail.example", 1),
    ("alice", "alice@local.example", 1),
    ("@example.com", "catchall@mail.example", 1),
    # Postfix never looks an empty key up ("empty query string -- ignored").
    ("", "empty-key@mail.example", 1),
    ("inactive@example.com", "gone@mail.example", 0),
    ("team@example.com", "c@example.net", 1),
    ("team@example.com", "a@example.net", 1),
    ("team@example.com", "b@example.net", 1),
    *(("big@example.com", f"big{i}@example.net", 1) for i in range(4)),
    ("partly@example.com", None, 1),
    ("partly@example.com", "", 1),
    ("partly@example.com", "kept@example.net", 1),
    ("nulls@example.com", None, 1),
    ("nulls@example.com", "", 1),
    ("o'brien@example.com", "obrien@mail.example", 1),
    ("back\\slash@example.com", "backslash@mail.example", 1),
    ("100%@example.com", "percent@mail.example", 1),
    ("a_c@example.com", "underscore@mail.example", 1),
    ('"john doe"@example.com', "john@mail.example", 1),
    ("alice@other.example", "other@mail.example", 1),
    ("alice@listed.example", "listed@mail.example", 1),
    ("alice@sub.example.com", "sub@mail.example", 1),
    ("user@xn--bcher-kva.example", "punycode@mail.example", 1),
    ("noat@example.com", "plainvalue", 1),
    ("emptylocal@example.com", "@mail.example", 1),
    ("emptydomain@example.com", "someone@", 1),
    ("a@b@example.com", "twoats@mail.example", 1),
    ("jürgen@bücher.example", "juergen@mail.example", 1),
    ("straße@example.com", "strasse@mail.example", 1),
    ("emoji😀@example.com", "emoji@mail.example", 1),
]

# localpart, domain, goto: the empty local part must never be queried with %u.
USERS: list[tuple[str, str, str]] = [
    ("alice", "example.com", "alice-by-parts@mail.example"),
    ("alice", "other.example", "alice-other-by-parts@mail.example"),
    ("o'brien", "example.com", "obrien-by-parts@mail.example"),
    ("jürgen", "bücher.example", "juergen-by-parts@mail.example"),
    ("", "example.com", "empty-local@mail.example"),
    ("a@b", "example.com", "twoats-by-parts@mail.example"),
]

# domain, nexthop
TRANSPORT: list[tuple[str, str]] = [
    ("example.com", "mx1.example.com"),
    ("example.org", "mx.example.org"),
    ("example.org", "mx2.example.org"),
    ("alice@example.com", "alice-host.example.com"),
]

# sld, tld, v
LABELS: list[tuple[str, str, str]] = [
    ("example", "com", "example-com"),
    ("example", "org", "example-org"),
    ("", "com", "empty-label"),
]

KEYS = [
    "alice@example.com",
    "bob@example.com",
    "nobody@example.com",
    "Alice@Example.COM",
    "BOB@EXAMPLE.COM",
    "alice@EXAMPLE.com",
    "alice",
    "ALICE",
    "nobody",
    "@example.com",
    "@EXAMPLE.COM",
    "alice@",
    "example.com",
    "example.org",
    "EXAMPLE.ORG",
    "team@example.com",
    "big@example.com",
    "partly@example.com",
    "nulls@example.com",
    "inactive@example.com",
    "o'brien@example.com",
    "O'Brien@example.com",
    "back\\slash@example.com",
    "100%@example.com",
    "1000@example.com",
    "a_c@example.com",
    "abc@example.com",
    '"john doe"@example.com',
    "x' OR '1'='1",
    "'; DROP TABLE pp_alias; --",
    "%",
    "_",
    "alice@other.example",
    "alice@listed.example",
    "alice@sub.example.com",
    "alice@example.com.",
    "alice@example..com",
    "alice@.com",
    "",
    "@",
    "alice@example.com ",
    "alice+tag@example.com",
    "user@xn--bcher-kva.example",
    "noat@example.com",
    "emptylocal@example.com",
    "emptydomain@example.com",
    "a@b@example.com",
    " alice@example.com",
    "comma,user@example.com",
    "x" * 300 + "@example.com",
]
# UTF-8 keys that are in the tables: not on PostgreSQL (see the top of this file).
UTF8_FOUND_KEYS = [
    "jürgen@bücher.example",
    "straße@example.com",
    "STRAßE@example.com",
    "emoji😀@example.com",
]
UTF8_MISSING_KEYS = [
    "nobody@bücher.example",
    "ünknown@example.com",
    "nobody😀@example.com",
]


@dataclass(frozen=True)
class Parity:
    """One backend's imported config, running sockmapd and Postfix tables."""

    backend: str
    postmap: list[str]
    cf_files: dict[str, Path]
    postfix_type: str
    daemon: Daemon
    keys: list[str]
    imported: dict[str, Any]


def _table(db: Database, table: str, columns: Sequence[str]) -> None:
    """(Re)create a table that compares text byte for byte on every backend."""
    options = " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin" if db.name == "mariadb" else ""
    db.execute(
        [f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} ({', '.join(columns)}){options}"]
    )


def _setup(db: Database) -> None:
    _table(db, "pp_alias", ["address TEXT", "goto TEXT", "active INTEGER"])
    db.insert("pp_alias", ["address", "goto", "active"], ALIASES)
    _table(db, "pp_users", ["localpart TEXT", "domain TEXT", "goto TEXT"])
    db.insert("pp_users", ["localpart", "domain", "goto"], USERS)
    _table(db, "pp_transport", ["domain TEXT", "nexthop TEXT"])
    db.insert("pp_transport", ["domain", "nexthop"], TRANSPORT)
    _table(db, "pp_labels", ["sld TEXT", "tld TEXT", "v TEXT"])
    db.insert("pp_labels", ["sld", "tld", "v"], LABELS)


def _write_cf_files(db: Database, directory: Path) -> dict[str, Path]:
    connection = connection_lines(db)
    files: dict[str, Path] = {}
    for name in _maps(db.name):
        body = (CF_DIR / f"{name}.cf").read_text()
        body = body.replace("@DOMAIN_FILE@", str(CF_DIR / "domains.txt"))
        path = directory / f"{name}.cf"
        path.write_text(connection + body)
        files[name] = path
    return files


def _maps(backend: str) -> list[str]:
    return MAPS + BACKEND_MAPS[backend]


def _import(postfix_type: str, files: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    names = [arg for name in files for arg in ("--name", name)]
    sources = [f"{postfix_type}:{path}" for path in files.values()]
    command = [sys.executable, "-m", "sockmapd", "config", "import-postfix", "--show-secrets"]
    return subprocess.run(
        [*command, *names, *sources],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _keys(backend: str) -> list[str]:
    utf8 = UTF8_MISSING_KEYS if backend == "postgresql" else UTF8_FOUND_KEYS + UTF8_MISSING_KEYS
    return KEYS + utf8


def _serve(imported: dict[str, Any], directory: Path) -> Daemon:
    """Start sockmapd on an imported config."""
    port = free_port()
    config = dict(imported)
    server = dict(config.get("server", {}))
    server["listen"] = [f"tcp://127.0.0.1:{port}"]
    server["allow_root"] = True
    config["server"] = server
    path = directory / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    return Daemon(path, port)


@pytest.fixture(scope="module")
def parity(backend: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parity]:
    """The backend's tables, its Postfix .cf files and sockmapd running their import."""
    directory = tmp_path_factory.mktemp(f"parity-{backend.name}")
    postfix_dir = directory / "postfix"
    postfix_dir.mkdir()
    (postfix_dir / "main.cf").write_text("")
    postmap = [postmap_binary(), "-c", str(postfix_dir)]
    postfix_type = POSTFIX_TYPE[backend.name]
    if postfix_type not in postfix_types(postmap):
        pytest.fail(f"Postfix lacks the {postfix_type} map type (postconf -m)")
    _setup(backend)
    files = _write_cf_files(backend, directory)
    result = _import(postfix_type, files)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    imported = tomllib.loads(result.stdout)
    daemon = _serve(imported, directory)
    try:
        yield Parity(
            backend.name, postmap, files, postfix_type, daemon, _keys(backend.name), imported
        )
    finally:
        daemon.stop()


def _direct(parity: Parity, map_name: str) -> str:
    return f"{parity.postfix_type}:{parity.cf_files[map_name]}"


def _through_sockmapd(parity: Parity, map_name: str) -> str:
    return f"socketmap:inet:127.0.0.1:{parity.daemon.port}:{map_name}"


def test_postfix_and_sockmapd_answer_alike(parity: Parity) -> None:
    differences: list[str] = []
    asked = 0
    maps = _maps(parity.backend)
    for map_name in maps:
        postfix = lookups(parity.postmap, _direct(parity, map_name), parity.keys)
        sockmapd = lookups(parity.postmap, _through_sockmapd(parity, map_name), parity.keys)
        for key in parity.keys:
            asked += 1
            if postfix[key] != sockmapd[key]:
                differences.append(
                    f"{map_name} {key!r}:\n    postfix:  {show(postfix[key])}\n"
                    f"    sockmapd: {show(sockmapd[key])}"
                )
    print(
        f"\nparity {parity.backend}: {len(parity.keys)} keys, {len(maps)} maps, "
        f"{asked} lookups, {len(differences)} differences"
    )
    assert not differences, "\n".join(differences)


def test_the_keys_reach_every_kind_of_postfix_answer(parity: Parity) -> None:
    # The comparison above is only as good as its keys: check that they exercise every
    # kind of answer on the Postfix side.
    aliases = lookups(parity.postmap, _direct(parity, "aliases"), parity.keys)
    assert aliases["team@example.com"] == Outcome(
        0, "a@example.net,b@example.net,c@example.net\n", False
    )
    assert aliases["Alice@Example.COM"] == Outcome(0, "alice@mail.example\n", False)
    assert aliases["nobody@example.com"] == Outcome(1, "", False)
    limited = one(parity.postmap, _direct(parity, "limited"), "big@example.com")
    assert limited.failed, limited
    transport = one(parity.postmap, _direct(parity, "transport"), "example.org")
    assert transport.stdout == "smtp:[mx.example.org],smtp:[mx2.example.org]\n"
    # Literals holding expansions: the catch-all '@%d', '%u@%d' and LIKE '%%%s'.
    literals = lookups(parity.postmap, _direct(parity, "literals"), parity.keys)
    assert literals["nobody@example.com"] == Outcome(0, "catchall@mail.example\n", False)
    assert literals["alice@example.com"] == Outcome(
        0, "alice@mail.example,catchall@mail.example\n", False
    )
    joined = one(parity.postmap, _direct(parity, "joined"), "bob@example.com")
    assert joined == Outcome(0, "bob@mail.example\n", False)
    like = one(parity.postmap, _direct(parity, "like"), "lice@example.com")
    assert like == Outcome(0, "alice@mail.example\n", False)
    for name in BACKEND_MAPS[parity.backend]:
        escapes = one(parity.postmap, _direct(parity, name), "alice@example.com")
        assert escapes == Outcome(0, "alice@mail\\example\n", False), name


def test_import_lowercases_keys_and_carries_the_options(parity: Parity) -> None:
    maps = parity.imported["maps"]
    assert isinstance(maps, dict)
    assert sorted(maps) == sorted(_maps(parity.backend))
    for name, spec in maps.items():
        assert spec["key_transform"] == ["lowercase"], name
    assert maps["transport"]["result_format"] == "smtp:[%s]"
    assert maps["limited"]["expansion_limit"] == 3
    domains = ["example.com", "bücher.example", f"file:{CF_DIR / 'domains.txt'}"]
    assert maps["domains"]["domain"] == domains
    assert "pp_alias" in maps["legacy"]["query"]


def test_import_lists_dropped_parameters_and_exits_1(tmp_path: Path) -> None:
    cf = tmp_path / "dropped.cf"
    cf.write_text(
        f"dbpath = {tmp_path / 'x.sqlite3'}\n"
        "query = SELECT goto FROM pp_alias WHERE address = '%s'\n"
        "no_such_parameter = yes\n"
    )
    result = _import("sqlite", {"dropped": cf})
    assert result.returncode == 1, result.stderr
    assert "no_such_parameter" in result.stderr
    assert "[maps.dropped]" in result.stdout


def test_lines_postfix_skips_are_skipped_alike(
    parity: Parity, backend: Database, tmp_path: Path
) -> None:
    # Postfix skips, with a warning, a first logical line that starts with whitespace,
    # and reads a byte-order mark as part of the first name (an unknown parameter). The
    # import drops both, says so, and the imported maps answer as Postfix's tables do.
    query = "query = SELECT goto FROM pp_alias WHERE address = '%s' ORDER BY goto\n"
    connection = connection_lines(backend)
    files = {
        "indented": tmp_path / "indented.cf",
        "bom": tmp_path / "bom.cf",
    }
    files["indented"].write_text(
        "  result_format = skipped-%s\n\tquery = SELECT 'skipped'\n" + connection + query
    )
    files["bom"].write_text("\ufeffresult_format = skipped-%s\n" + connection + query)
    result = _import(parity.postfix_type, files)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"{files['indented']}: line 1: starts with whitespace but continues no parameter "
        "before it; Postfix skips it with a warning (logical line must not start with "
        "whitespace)",
        f"{files['bom']}: result_format: the file starts with a byte-order mark, which "
        "Postfix reads as part of this name, so Postfix ignores this line too: save the "
        "file without it",
    ]
    daemon = _serve(tomllib.loads(result.stdout), tmp_path)
    try:
        keys = ["alice@example.com", "team@example.com", "nobody@example.com"]
        for name, path in files.items():
            postfix = lookups(parity.postmap, f"{parity.postfix_type}:{path}", keys)
            table = f"socketmap:inet:127.0.0.1:{daemon.port}:{name}"
            assert lookups(parity.postmap, table, keys) == postfix, name
            assert postfix["alice@example.com"] == Outcome(0, "alice@mail.example\n", False)
    finally:
        daemon.stop()
