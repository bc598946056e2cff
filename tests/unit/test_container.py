"""The container files: Dockerfile, compose.yaml and contrib/docker/, checked without Docker."""

from __future__ import annotations

import http.server
import ipaddress
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import yaml

from sockmapd.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
CONTAINER_CONFIG = ROOT / "contrib" / "docker" / "sockmapd.toml"
POSTFIX_DIR = ROOT / "contrib" / "docker" / "postfix"
CONFIG_IN_IMAGE = "/etc/sockmapd/sockmapd.toml"
SOCKETMAP_RE = re.compile(r"socketmap:inet:(?P<host>[^:\s]+):(?P<port>\d+):(?P<map>[^\s,]+)")


def container_config_document() -> dict[str, Any]:
    """Return contrib/docker/sockmapd.toml as a dict."""
    return tomllib.loads(CONTAINER_CONFIG.read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """Return the (INSTRUCTION, arguments) of the last stage of a Dockerfile."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    parsed = [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]
    last_from = max(i for i, (name, _) in enumerate(parsed) if name == "FROM")
    return parsed[last_from:]


def only(stage: list[tuple[str, str]], name: str) -> str:
    """Return the arguments of the one instruction called name."""
    found = [args for instruction, args in stage if instruction == name]
    assert len(found) == 1, (name, found)
    return found[0]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    """Return the variables set by ENV KEY=VALUE instructions."""
    pairs = " ".join(args for name, args in stage if name == "ENV").split()
    return dict(pair.split("=", 1) for pair in pairs)


def port_of(address: str) -> int:
    """Return the port of a tcp://HOST:PORT or http://HOST:PORT/... address."""
    match = re.search(r":(\d+)(?:/|$)", address)
    assert match, address
    return int(match.group(1))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def image() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE)


def test_image_runs_unprivileged_with_the_mounted_config(image: list[tuple[str, str]]) -> None:
    user = only(image, "USER").split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user), user
    assert json.loads(only(image, "ENTRYPOINT")) == ["sockmapd"]
    assert json.loads(only(image, "CMD")) == ["-c", CONFIG_IN_IMAGE]
    assert set(only(image, "EXPOSE").split()) == {"2224", "9224"}
    # The config leaves the account to the image: it must neither need nor allow root.
    server = tomllib.loads(CONTAINER_CONFIG.read_text())["server"]
    assert not server.get("allow_root", False)
    assert "run_as_user" not in server


def test_build_context_keeps_what_the_image_copies() -> None:
    """.dockerignore leaves out everything but what the Dockerfile's COPY lines name."""
    kept = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--from="):
            copied.update(word.rstrip("/") for word in words[1:-1])
    assert copied == kept
    assert all((ROOT / name).exists() for name in copied), copied


def test_image_healthcheck_asks_healthz_on_the_metrics_port(image: list[tuple[str, str]]) -> None:
    url = env_of(image)["SOCKMAPD_HEALTHCHECK_URL"]
    assert url == "http://127.0.0.1:9224/healthz"
    metrics = tomllib.loads(CONTAINER_CONFIG.read_text())["metrics"]
    assert port_of(metrics["listen"]) == port_of(url)
    assert metrics["listen"].startswith("tcp://0.0.0.0:")


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz() -> Iterator[tuple[str, type[_Healthz]]]:
    """A local /healthz whose status the test sets; yields its URL and handler class."""
    handler = type("Handler", (_Healthz,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz", handler
    finally:
        server.shutdown()
        server.server_close()


def test_image_healthcheck_follows_the_healthz_status(
    image: list[tuple[str, str]], healthz: tuple[str, type[_Healthz]]
) -> None:
    """The HEALTHCHECK command as written: exit 0 on 200, exit 1 on 503 or no listener."""
    args = only(image, "HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + len("CMD") :])
    assert command[0] == "python"
    url, handler = healthz

    def exit_status(target: str) -> int:
        env = {"SOCKMAPD_HEALTHCHECK_URL": target}
        result = subprocess.run(
            [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
        )
        return result.returncode

    assert exit_status(url) == 0
    handler.status = 503
    assert exit_status(url) == 1
    assert exit_status(url.replace("/healthz", "/nothing")) == 1
    assert exit_status("http://127.0.0.1:1/healthz") == 1


def test_compose_mounts_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name}: {volume}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
    assert set(compose["services"]) == {"db", "sockmapd", "postfix"}
    assert set(compose["volumes"]) == {"db-data"}


def test_compose_runs_sockmapd_on_its_config_and_publishes_its_ports(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["sockmapd"]
    assert service["build"] == "."
    assert f"./contrib/docker/sockmapd.toml:{CONFIG_IN_IMAGE}:ro" in service["volumes"]
    config = tomllib.loads(CONTAINER_CONFIG.read_text())
    [listen] = config["server"]["listen"]
    expected = {port_of(listen), port_of(config["metrics"]["listen"])}
    published = {int(mapping.rsplit(":", 1)[1]) for mapping in service["ports"]}
    assert published == expected
    # The health check is the image's (GET /healthz), and Postfix waits for it.
    assert "healthcheck" not in service
    depends = compose["services"]["postfix"]["depends_on"]
    assert depends["sockmapd"]["condition"] == "service_healthy"
    assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert "SOCKMAPD_DB_PASSWORD" in service["environment"]
    assert config["databases"]["mail"]["password_env"] == "SOCKMAPD_DB_PASSWORD"


def test_compose_database_is_the_one_the_config_names(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    database = tomllib.loads(CONTAINER_CONFIG.read_text())["databases"]["mail"]
    assert database["driver"] == "postgresql"
    assert database["hosts"] == ["db"]
    assert database["name"] == db["environment"]["POSTGRES_DB"]
    assert database["user"] == db["environment"]["POSTGRES_USER"]
    assert (
        db["environment"]["POSTGRES_PASSWORD"]
        == (compose["services"]["sockmapd"]["environment"]["SOCKMAPD_DB_PASSWORD"])
    )
    init = [v for v in db["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert init == ["./examples/quickstart.sql:/docker-entrypoint-initdb.d/10-quickstart.sql:ro"]


def test_container_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKMAPD_DB_PASSWORD", "example-only")
    path = tmp_path / "sockmapd.toml"
    path.write_text(tomli_w.dumps(container_config_document()))
    config = load_config(path)
    assert set(config.maps) == {"recipient", "alias", "access"}
    # A client on a compose network (a private address) is allowed in.
    allowed = [ipaddress.ip_network(n) for n in config.server.allow]
    assert any(ipaddress.ip_address("172.18.0.5") in net for net in allowed)


def test_container_config_maps_the_quickstart_tables() -> None:
    sql = (ROOT / "examples" / "quickstart.sql").read_text()
    tables = dict(re.findall(r"CREATE TABLE (\w+) \((.*?)\);", sql, flags=re.DOTALL))
    for name, spec in tomllib.loads(CONTAINER_CONFIG.read_text())["maps"].items():
        columns = [spec[k] for k in ("key", "value", "reason") if k in spec]
        assert spec["table"] in tables, name
        for column in columns:
            assert re.search(rf"\b{column}\b", tables[spec["table"]]), (name, column)


def test_postfix_asks_the_sockmapd_service_for_maps_it_has(compose: dict[str, Any]) -> None:
    config = tomllib.loads(CONTAINER_CONFIG.read_text())
    [listen] = config["server"]["listen"]
    found = list(SOCKETMAP_RE.finditer((POSTFIX_DIR / "main.cf").read_text()))
    assert found
    for match in found:
        assert match["host"] in compose["services"], match[0]
        assert match["host"] == "sockmapd", match[0]
        assert int(match["port"]) == port_of(listen), match[0]
        assert match["map"] in config["maps"], match[0]


def test_postfix_image_runs_in_the_foreground() -> None:
    stage = instructions(POSTFIX_DIR / "Dockerfile")
    assert json.loads(only(stage, "CMD")) == ["postfix", "start-fg"]
    assert "COPY main.cf /etc/postfix/main.cf" in [f"{n} {a}" for n, a in stage]
