"""Real-world Postfix SQL maps (corpus/) answer alike through Postfix and through sockmapd."""

# Each source in corpus/ (see corpus/README.md) holds the Postfix table files a mail
# distribution or admin panel publishes (mysql/*.cf, pgsql/*.cf: the query as published,
# without connection settings), a schema per database written for these tests, the rows
# (data.toml) and the keys (keys.toml). For each database kind, every source gets its own
# database; all the table files are imported with `sockmapd config import-postfix`, one
# sockmapd serves the result, and every key of every map is asked twice with postmap -q:
# from the table file itself (mysql:, pgsql:) and through sockmapd (socketmap:). Output and
# exit status must be identical, and so must be whether postmap reported a lookup error.
#
# Postfix 3.7's pgsql client talks LATIN1 to the server, so on PostgreSQL the UTF-8 keys
# that the data holds (mysql_keys in keys.toml) are not asked, and the values are ASCII.

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.integration.conftest import postmap_binary
from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database, Server, unique_name
from tests.integration.postmap import connection_lines, lookups, postfix_types, show

pytestmark = pytest.mark.postfix

CORPUS = Path(__file__).parent / "corpus"
KINDS = {"mariadb": "mysql", "postgresql": "pgsql"}
MIN_KEYS = 15
# The connection parameters the test writes itself; a corpus file must not set them.
CONNECTION = ("hosts", "user", "password", "dbname")
_PARAMETER_RE = re.compile(r"^([A-Za-z_]+)\s*=", re.MULTILINE)


@dataclass(frozen=True)
class CorpusMap:
    """One published table file of one source, for one database kind."""

    source: str
    kind: str  # mysql or pgsql
    path: Path

    @property
    def name(self) -> str:
        """The sockmapd map name: source and file name, unique across the corpus."""
        return f"{self.source}_{self.path.stem}".replace(".", "_")


def _sources() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if (p / "keys.toml").is_file())


def corpus_maps(kind: str) -> list[CorpusMap]:
    """Every table file of the given kind (mysql or pgsql), source by source."""
    return [
        CorpusMap(source, kind, path)
        for source in _sources()
        for path in sorted((CORPUS / source / kind).glob("*.cf"))
    ]


def _cases() -> list[Any]:
    return [
        pytest.param(backend, item, id=f"{backend}-{item.source}-{item.path.stem}")
        for backend, kind in KINDS.items()
        for item in corpus_maps(kind)
    ]


def map_keys(item: CorpusMap) -> list[str]:
    """The keys asked of one map: the source's, the database kind's and the map's own."""
    spec = tomllib.loads((CORPUS / item.source / "keys.toml").read_text())
    keys: list[str] = list(spec["keys"])
    if item.kind == "mysql":
        keys += spec.get("mysql_keys", [])
    keys += spec.get("maps", {}).get(item.path.stem, {}).get("keys", [])
    return list(dict.fromkeys(keys))


@dataclass
class Corpus:
    """One database kind: its databases, table files, import result and running sockmapd."""

    backend: str
    postmap: list[str]
    cf_files: dict[str, Path] = field(default_factory=dict)
    # Map name -> why it was not imported (the importer's lines about its file).
    not_imported: dict[str, str] = field(default_factory=dict)
    imported: dict[str, Any] = field(default_factory=dict)
    daemon: Daemon | None = None


def _statements(sql: str) -> list[str]:
    """Split a schema file into statements at a ';' that ends a line."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip()]


def load_source(db: Database, source: str) -> None:
    """Create a source's tables in db and insert its rows with bound parameters."""
    kind = KINDS[db.name]
    db.execute(_statements((CORPUS / source / f"schema.{kind}.sql").read_text()))
    data = tomllib.loads((CORPUS / source / "data.toml").read_text())
    for table, spec in data.items():
        # TOML has no null: an empty array stands for NULL.
        rows = [[None if value == [] else value for value in row] for row in spec["rows"]]
        if rows:
            db.insert(table, spec["columns"], rows)


def _write_cf(item: CorpusMap, db: Database, directory: Path) -> Path:
    body = item.path.read_text()
    present = set(_PARAMETER_RE.findall(body)) & set(CONNECTION)
    assert not present, f"{item.path}: sets {sorted(present)}; the test writes these itself"
    path = directory / f"{item.name}.cf"
    path.write_text(connection_lines(db) + body)
    return path


def _import(kind: str, files: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    names = [arg for name in files for arg in ("--name", name)]
    sources = [f"{kind}:{path}" for path in files.values()]
    command = [sys.executable, "-m", "sockmapd", "config", "import-postfix", "--show-secrets"]
    return subprocess.run([*command, *names, *sources], capture_output=True, text=True, timeout=120)


def import_maps(corpus: Corpus, kind: str) -> None:
    """Import every table file; set aside files the importer refuses and import the rest."""
    files = dict(corpus.cf_files)
    while files:
        result = _import(kind, files)
        if result.returncode != 2:
            corpus.imported = tomllib.loads(result.stdout)
            if result.stderr:
                # Parameters were dropped: every corpus map must carry all of its own.
                for name, path in files.items():
                    lines = [line for line in result.stderr.splitlines() if str(path) in line]
                    if lines:
                        corpus.not_imported[name] = "\n".join(lines)
            return
        refused = {
            name: "\n".join(line for line in result.stderr.splitlines() if str(path) in line)
            for name, path in files.items()
            if str(path) in result.stderr
        }
        if not refused:
            pytest.fail(f"import-postfix failed:\n{result.stderr}")
        corpus.not_imported.update(refused)
        files = {name: path for name, path in files.items() if name not in refused}


def _start(corpus: Corpus, directory: Path) -> None:
    if not corpus.imported.get("maps"):
        return
    port = free_port()
    config = dict(corpus.imported)
    config["server"] = {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True}
    path = directory / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    corpus.daemon = Daemon(path, port)


def _corpus(
    backend: str, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    """One database kind: a database per source, the table files, their import and sockmapd."""
    kind = KINDS[backend]
    directory = tmp_path_factory.mktemp(f"corpus-{backend}")
    (directory / "postfix").mkdir()
    (directory / "postfix" / "main.cf").write_text("")
    result = Corpus(backend, [postmap_binary(), "-c", str(directory / "postfix")])
    if kind not in postfix_types(result.postmap):
        pytest.fail(f"Postfix lacks the {kind} map type (postconf -m)")
    created: list[str] = []
    try:
        databases: dict[str, Database] = {}
        for item in corpus_maps(kind):
            if item.source not in databases:
                name = unique_name(f"corpus_{item.source}")
                databases[item.source] = server.create_database(name)
                created.append(name)
                load_source(databases[item.source], item.source)
            result.cf_files[item.name] = _write_cf(item, databases[item.source], directory)
        import_maps(result, kind)
        _start(result, directory)
        yield result
    finally:
        if result.daemon is not None:
            result.daemon.stop()
        for name in created:
            server.drop_database(name)


@pytest.fixture(scope="module")
def mariadb_corpus(
    mysql_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    """The corpus on MariaDB, shared by the module's MariaDB cases."""
    yield from _corpus("mariadb", mysql_server, tmp_path_factory)


@pytest.fixture(scope="module")
def postgresql_corpus(
    pg_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    """The corpus on PostgreSQL, shared by the module's PostgreSQL cases."""
    yield from _corpus("postgresql", pg_server, tmp_path_factory)


@pytest.mark.parametrize(("backend_name", "item"), _cases())
def test_published_map_answers_as_in_postfix(
    request: pytest.FixtureRequest, backend_name: str, item: CorpusMap
) -> None:
    corpus: Corpus = request.getfixturevalue(f"{backend_name}_corpus")
    if item.name in corpus.not_imported:
        pytest.fail(
            f"{item.path.relative_to(CORPUS)} was not imported:\n{corpus.not_imported[item.name]}",
            pytrace=False,
        )
    assert corpus.daemon is not None
    keys = map_keys(item)
    assert len(keys) >= MIN_KEYS, f"{item.path}: only {len(keys)} keys"
    direct = lookups(corpus.postmap, f"{item.kind}:{corpus.cf_files[item.name]}", keys)
    socketmap = f"socketmap:inet:127.0.0.1:{corpus.daemon.port}:{item.name}"
    through = lookups(corpus.postmap, socketmap, keys)
    differences = [
        f"{key!r}:\n    postfix:  {show(direct[key])}\n    sockmapd: {show(through[key])}"
        for key in keys
        if direct[key] != through[key]
    ]
    if differences:
        pytest.fail(
            f"{item.name}: {len(differences)} of {len(keys)} keys differ:\n"
            + "\n".join(differences),
            pytrace=False,
        )
    # The comparison is only as good as the data: Postfix itself must find some keys and
    # miss others, with no lookup error.
    found = [key for key in keys if direct[key].status == 0]
    print(f"\n{backend_name} {item.name}: {len(keys)} keys, {len(found)} found by Postfix")
    assert len(found) >= 2, f"{item.name}: Postfix finds only {found}"
    assert len(found) < len(keys) - 1, f"{item.name}: Postfix finds almost every key"
    errors = [key for key in keys if direct[key].failed]
    assert not errors, f"{item.name}: Postfix reports errors for {errors}: {direct[errors[0]]}"
