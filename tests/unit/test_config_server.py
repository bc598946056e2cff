"""The [server] access, connection and socket settings: defaults, forms and every rejection."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pydantic import ValidationError

from sockmapd.config import Config, ServerConfig, parse_config, to_toml
from sockmapd.config.errors import problems_from_validation_error

UNIX_LISTEN = ["tcp://127.0.0.1:2224", "unix:///run/sockmapd/sockmapd.sock"]


def problems(server: dict[str, Any]) -> dict[str, str]:
    """Return {path: message} of every problem in the [server] table; fail if it is valid."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"server": server})
    return {p.path: p.message for p in problems_from_validation_error(info.value, Config)}


def only_problem(server: dict[str, Any]) -> tuple[str, str]:
    found = problems(server)
    assert len(found) == 1, found
    return next(iter(found.items()))


def test_defaults() -> None:
    server = ServerConfig()
    assert server.allow == ["127.0.0.0/8", "::1/128"]
    assert server.allowed_networks() == (
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv6Network("::1/128"),
    )
    assert server.max_connections == 1000
    assert server.max_request_bytes == 10_000
    assert server.shutdown_grace == 10.0
    assert (server.unix_mode, server.unix_owner, server.unix_group) == (None, None, None)
    assert server.unix_mode_bits() is None
    assert server.allow_root is False
    assert Config.model_validate({}).server == server


# ---------------------------------------------------------------- allow


def test_allow_is_normalised() -> None:
    server = ServerConfig(
        allow=["192.0.2.0/24", "2001:DB8::/32", "192.0.2.1", "::1", "10.0.0.0/255.0.0.0", "::/0"]
    )
    assert server.allow == [
        "192.0.2.0/24",
        "2001:db8::/32",
        "192.0.2.1/32",
        "::1/128",
        "10.0.0.0/8",
        "::/0",
    ]
    networks = server.allowed_networks()
    assert networks[0] == ipaddress.IPv4Network("192.0.2.0/24")
    assert networks[1] == ipaddress.IPv6Network("2001:db8::/32")
    assert ipaddress.ip_address("192.0.2.1") in networks[2]


def test_allow_may_be_empty() -> None:
    server = ServerConfig(allow=[])
    assert server.allow == []
    assert server.allowed_networks() == ()


@pytest.mark.parametrize(
    ("allow", "path", "reason"),
    [
        (["192.0.2.1/24"], "server.allow[0]", "has host bits set: did you mean 192.0.2.0/24?"),
        (["::1", "2001:db8::1/32"], "server.allow[1]", "did you mean 2001:db8::/32?"),
        (["192.0.2.0/33"], "server.allow[0]", "is not an IP address or network"),
        (["example.org"], "server.allow[0]", "is not an IP address or network"),
        (["192.0.2.0/24", ""], "server.allow[1]", "is not an IP address or network"),
        ([" 192.0.2.1"], "server.allow[0]", "is not an IP address or network"),
        (["01.2.3.4"], "server.allow[0]", "is not an IP address or network"),
        (["fe80::1%eth0"], "server.allow[0]", "is not an IP address or network"),
        (["192.0.2.0/24", 3], "server.allow[1]", "valid string"),
        ("127.0.0.0/8", "server.allow", "valid list"),
        (["192.0.2.1", "192.0.2.1/32"], "server.allow", "duplicate network '192.0.2.1/32'"),
    ],
)
def test_allow_rejected(allow: object, path: str, reason: str) -> None:
    found_path, message = only_problem({"allow": allow})
    assert found_path == path
    assert reason in message


def test_every_bad_allow_entry_is_reported() -> None:
    assert set(problems({"allow": ["x", "127.0.0.0/8", "10.0.0.1/8"]})) == {
        "server.allow[0]",
        "server.allow[2]",
    }


# ---------------------------------------------------------------- limits


def test_limits_accepted() -> None:
    server = ServerConfig(max_connections=1, shutdown_grace=0)
    assert (server.max_connections, server.shutdown_grace) == (1, 0.0)
    assert isinstance(server.shutdown_grace, float)
    assert ServerConfig(max_connections=1_000_000, shutdown_grace=3600.5).max_connections == (
        1_000_000
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("max_connections", 0, "greater than or equal to 1"),
        ("max_connections", 1_000_001, "less than or equal to 1000000"),
        ("max_connections", "10", "valid integer"),
        ("max_connections", True, "valid integer"),
        ("max_connections", 10.0, "valid integer"),
        ("shutdown_grace", -0.1, "greater than or equal to 0"),
        ("shutdown_grace", float("inf"), "finite number"),
        ("shutdown_grace", float("nan"), "finite number"),
        ("shutdown_grace", "10", "valid number"),
        ("shutdown_grace", True, "valid number"),
        ("allow_root", 1, "valid boolean"),
        ("allow_root", "true", "valid boolean"),
        ("workers", 0, "greater than or equal to 1"),
        ("workers", 65, "less than or equal to 64"),
        ("workers", "2", "valid integer"),
        ("workers", 2.0, "valid integer"),
    ],
)
def test_limit_rejected(field: str, value: object, reason: str) -> None:
    path, message = only_problem({field: value})
    assert path == f"server.{field}"
    assert reason in message


def test_allow_root() -> None:
    assert ServerConfig(allow_root=True).allow_root is True


# ---------------------------------------------------------------- unix socket


@pytest.mark.parametrize(
    ("mode", "canonical", "bits"),
    [
        ("0660", "0660", 0o660),
        ("660", "0660", 0o660),
        ("600", "0600", 0o600),
        ("0777", "0777", 0o777),
        ("0", "0000", 0),
    ],
)
def test_unix_mode_accepted(mode: str, canonical: str, bits: int) -> None:
    server = ServerConfig(listen=UNIX_LISTEN, unix_mode=mode)
    assert server.unix_mode == canonical
    assert server.unix_mode_bits() == bits


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("1777", "expected octal digits up to 0777"),
        ("0800", "expected octal digits up to 0777"),
        ("00660", "expected octal digits up to 0777"),
        ("", "expected octal digits up to 0777"),
        ("rw-rw----", "expected octal digits up to 0777"),
        ("0o660", "expected octal digits up to 0777"),
        (" 660", "expected octal digits up to 0777"),
        ("٦٦٠", "expected octal digits up to 0777"),
        (660, 'quoted octal string, e.g. "0660"'),
        (0o660, 'quoted octal string, e.g. "0660"'),
        (True, 'quoted octal string, e.g. "0660"'),
        (6.6, "valid string"),
    ],
)
def test_unix_mode_rejected(mode: object, reason: str) -> None:
    path, message = only_problem({"listen": UNIX_LISTEN, "unix_mode": mode})
    assert path == "server.unix_mode"
    assert reason in message


@pytest.mark.parametrize("name", ["postfix", "mail-users", "_sockmapd", "0", "1001", "DOMAIN\\x"])
def test_unix_owner_and_group_accepted(name: str) -> None:
    server = ServerConfig(listen=UNIX_LISTEN, unix_owner=name, unix_group=name)
    assert (server.unix_owner, server.unix_group) == (name, name)


@pytest.mark.parametrize("field", ["unix_owner", "unix_group"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "non-empty user or group name or numeric id"),
        ("post fix", "without whitespace or control characters"),
        ("postfix\n", "without whitespace or control characters"),
        ("post\x00fix", "without whitespace or control characters"),
        ("post\x7ffix", "without whitespace or control characters"),
        (1001, "valid string"),
    ],
)
def test_unix_owner_and_group_rejected(field: str, value: object, reason: str) -> None:
    path, message = only_problem({"listen": UNIX_LISTEN, field: value})
    assert path == f"server.{field}"
    assert reason in message


def test_unix_settings_need_a_unix_listener() -> None:
    found = problems({"unix_mode": "0660", "unix_owner": "postfix", "unix_group": "postfix"})
    assert found == {
        f"server.{field}": "applies only to unix sockets, but no unix:// listen address is given"
        for field in ("unix_mode", "unix_owner", "unix_group")
    }


def test_unix_settings_with_invalid_listen_report_only_listen() -> None:
    found = problems({"listen": ["nonsense"], "unix_mode": "0660"})
    assert list(found) == ["server.listen[0]"]


def test_unix_listener_with_any_scheme_case() -> None:
    server = ServerConfig(listen=["UNIX:///run/s.sock"], unix_mode="640")
    assert server.unix_mode == "0640"


# ---------------------------------------------------------------- TOML round trip


def test_new_settings_round_trip() -> None:
    text = """\
[server]
listen = ["tcp://[::]:2224", "unix:///run/sockmapd/sockmapd.sock"]
allow = ["192.0.2.1", "2001:db8::/32"]
max_connections = 50
shutdown_grace = 0
unix_mode = "660"
unix_owner = "sockmapd"
unix_group = "postfix"
allow_root = true
"""
    config = parse_config(text)
    written = to_toml(config)
    assert 'allow = [\n    "192.0.2.1/32",\n    "2001:db8::/32",\n]' in written
    assert 'unix_mode = "0660"' in written
    assert "shutdown_grace = 0.0" in written
    assert "allow_root = true" in written
    assert parse_config(written) == config
    assert to_toml(parse_config(written)) == written


def test_empty_allow_round_trips() -> None:
    config = parse_config("[server]\nallow = []\n")
    assert "allow = []" in to_toml(config)
    assert parse_config(to_toml(config)).server.allow == []


# --- [metrics] -------------------------------------------------------------------------


def test_metrics_are_off_by_default() -> None:
    config = parse_config("")
    assert config.metrics.listen is None
    assert config.metrics.listen_address() is None


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("tcp://127.0.0.1:9224", "tcp://127.0.0.1:9224"),
        ("TCP://[::1]:9224", "tcp://[::1]:9224"),
        ("unix:///run/sockmapd/metrics.sock", "unix:///run/sockmapd/metrics.sock"),
    ],
)
def test_metrics_listen_takes_the_listen_address_forms(text: str, normalised: str) -> None:
    config = parse_config(f'[metrics]\nlisten = "{text}"\n')
    assert config.metrics.listen == normalised
    assert str(config.metrics.listen_address()) == normalised


@pytest.mark.parametrize("text", ["http://127.0.0.1:9224", "tcp://127.0.0.1", "9224"])
def test_an_invalid_metrics_listen_is_reported_at_its_path(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"metrics": {"listen": text}})
    paths = [p.path for p in problems_from_validation_error(info.value, Config)]
    assert paths == ["metrics.listen"]


def test_metrics_listen_may_not_be_a_socketmap_listener() -> None:
    with pytest.raises(ValidationError) as info:
        Config.model_validate(
            {
                "server": {"listen": ["tcp://127.0.0.1:2224"]},
                "metrics": {"listen": "tcp://127.0.0.1:2224"},
            }
        )
    (problem,) = problems_from_validation_error(info.value, Config)
    assert problem.path == "metrics"
    assert "address of its own" in problem.message


def test_metrics_listen_is_written_by_convert_when_set() -> None:
    config = parse_config('[metrics]\nlisten = "tcp://127.0.0.1:9224"\n')
    text = to_toml(config)
    assert '[metrics]\nlisten = "tcp://127.0.0.1:9224"' in text
    assert parse_config(text) == config
    assert "[metrics]" not in to_toml(parse_config(""))


def test_workers_default_to_one_and_round_trip() -> None:
    assert ServerConfig().workers == 1
    config = parse_config("[server]\nworkers = 4\n")
    assert config.server.workers == 4
    assert "workers = 4" in to_toml(config)
    assert parse_config(to_toml(config)) == config


def test_metrics_listen_is_accepted_with_several_workers() -> None:
    config = Config.model_validate(
        {"server": {"workers": 2}, "metrics": {"listen": "tcp://127.0.0.1:9224"}}
    )
    assert config.server.workers == 2
    assert config.metrics.listen == "tcp://127.0.0.1:9224"
