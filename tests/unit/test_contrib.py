"""The deployment files in contrib/: systemd units, logrotate, MTA examples."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
SERVICE = CONTRIB / "systemd" / "sockmapd.service"
SOCKET = CONTRIB / "systemd" / "sockmapd.socket"
TEMPLATE = CONTRIB / "systemd" / "sockmapd@.service"
LOGROTATE = CONTRIB / "logrotate" / "sockmapd"
POSTFIX = CONTRIB / "postfix" / "main.cf.example"
SENDMAIL = CONTRIB / "sendmail" / "sockmapd.mc.example"


class _MultiValues(dict[str, list[str]]):
    """Option dict that keeps every value of a repeated key, as systemd does for lists."""

    def __setitem__(self, key: str, value: list[str]) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def parse_unit(path: Path) -> configparser.RawConfigParser:
    """Parse a unit file; a repeated key's values are joined with newlines."""
    parser = configparser.RawConfigParser(
        strict=False,
        dict_type=_MultiValues,  # type: ignore[arg-type]  # holds lists while parsing
        comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    with path.open(encoding="utf-8") as handle:
        parser.read_file(handle)
    return parser


def values(parser: configparser.RawConfigParser, section: str, key: str) -> list[str]:
    """Return every value given for key, in order (an empty value resets a list in systemd)."""
    return parser.get(section, key).split("\n")


@pytest.fixture(scope="module")
def service() -> configparser.RawConfigParser:
    return parse_unit(SERVICE)


@pytest.fixture(scope="module")
def socket_unit() -> configparser.RawConfigParser:
    return parse_unit(SOCKET)


def test_service_is_type_notify_and_reloads_with_sighup(
    service: configparser.RawConfigParser,
) -> None:
    assert service.sections() == ["Unit", "Service", "Install"]
    assert service.get("Service", "Type") == "notify"
    assert service.get("Service", "ExecStartPre") == (
        "/usr/bin/sockmapd --check-config -c /etc/sockmapd/sockmapd.toml"
    )
    assert service.get("Service", "ExecStart") == (
        "/usr/bin/sockmapd -c /etc/sockmapd/sockmapd.toml"
    )
    # A reload needs a config whose tables exist and whose [[tests]] pass.
    assert values(service, "Service", "ExecReload") == [
        "/usr/bin/sockmapd --check-config --connect -c /etc/sockmapd/sockmapd.toml",
        "/bin/kill -HUP $MAINPID",
    ]
    assert service.get("Service", "Restart") == "on-failure"
    assert service.get("Install", "WantedBy") == "multi-user.target"


def test_service_runs_unprivileged_in_a_sandbox(service: configparser.RawConfigParser) -> None:
    expected = {
        "User": "sockmapd",
        "Group": "sockmapd",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    actual = {key: service.get("Service", key, fallback=None) for key in expected}
    assert actual == expected
    families = " ".join(values(service, "Service", "RestrictAddressFamilies")).split()
    assert set(families) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in values(service, "Service", "SystemCallFilter")[0].split()
    # No privilege comes back through the back door.
    assert not service.has_option("Service", "AmbientCapabilities")
    assert not service.has_option("Service", "PermissionsStartOnly")


def test_socket_listens_on_loopback_and_a_unix_socket(
    socket_unit: configparser.RawConfigParser,
) -> None:
    listen = values(socket_unit, "Socket", "ListenStream")
    assert listen == ["127.0.0.1:2224", "/run/sockmapd/sockmapd.sock"]
    assert socket_unit.get("Socket", "Accept") == "no"
    assert socket_unit.get("Socket", "SocketMode") == "0660"
    assert socket_unit.get("Socket", "Service") == "sockmapd.service"
    assert socket_unit.get("Install", "WantedBy") == "sockets.target"


def test_the_template_runs_one_instance_per_config_file(
    service: configparser.RawConfigParser,
) -> None:
    template = parse_unit(TEMPLATE)
    config = "/etc/sockmapd/%i.toml"
    assert (
        template.get("Service", "ExecStartPre") == f"/usr/bin/sockmapd --check-config -c {config}"
    )
    assert template.get("Service", "ExecStart") == f"/usr/bin/sockmapd -c {config}"
    assert values(template, "Service", "ExecReload") == [
        f"/usr/bin/sockmapd --check-config --connect -c {config}",
        "/bin/kill -HUP $MAINPID",
    ]
    for key in ("RuntimeDirectory", "StateDirectory", "LogsDirectory"):
        assert template.get("Service", key) == "sockmapd/%i"
    # Everything else, the sandbox above all, is the single unit's.
    per_instance = {
        "Description",
        "ExecStartPre",
        "ExecStart",
        "ExecReload",
        "RuntimeDirectory",
        "StateDirectory",
        "LogsDirectory",
        "RuntimeDirectoryPreserve",
    }
    for section in service.sections():
        ours = {k: v for k, v in service.items(section) if k not in per_instance}
        theirs = {k: v for k, v in template.items(section) if k not in per_instance}
        assert theirs == ours, section


def test_unit_keys_are_known_to_systemd_naming() -> None:
    # A typo in a key is only a warning for systemd: catch the obvious ones here.
    for path in (SERVICE, SOCKET, TEMPLATE):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line or line.startswith(("#", ";", "[")):
                continue
            assert re.fullmatch(r"[A-Z][A-Za-z]+=.*", line), f"{path.name}:{number}: {line!r}"


def test_logrotate_lets_the_daemon_reopen_its_file() -> None:
    text = LOGROTATE.read_text(encoding="utf-8")
    directives = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert directives[0].split()[0] == "/var/log/sockmapd.log"
    assert directives[0].endswith("{")
    assert directives[-1] == "}"
    body = directives[1:-1]
    for directive in ("weekly", "compress", "delaycompress", "missingok", "notifempty"):
        assert directive in body
    assert "create 0640 sockmapd adm" in body
    assert any(d.startswith("rotate ") for d in body)
    assert "copytruncate" not in body
    # postrotate sends the signal that only reopens the log file.
    assert "postrotate" in body
    assert any("--signal=USR1" in d for d in body)


def test_postfix_example_uses_socketmap_for_the_common_maps() -> None:
    text = POSTFIX.read_text(encoding="utf-8")
    for parameter in (
        "virtual_mailbox_maps",
        "virtual_alias_maps",
        "relay_recipient_maps",
        "transport_maps",
    ):
        assert re.search(
            rf"^{parameter} = socketmap:inet:127\.0\.0\.1:2224:\w+$", text, re.MULTILINE
        ), parameter
    assert re.search(r"check_sender_access socketmap:inet:127\.0\.0\.1:2224:\w+", text)
    assert re.search(r"check_client_access socketmap:inet:127\.0\.0\.1:2224:\w+", text)
    assert "socketmap:unix:/run/sockmapd/sockmapd.sock:" in text
    assert "chroot" in text


def test_sendmail_example_declares_socket_maps() -> None:
    text = SENDMAIL.read_text(encoding="utf-8")
    assert "Kvirtuser socket -T<TMPF> inet:2224@127.0.0.1" in text
    assert re.search(r"^K\w+ socket -T<TMPF> inet:2224@127\.0\.0\.1$", text, re.MULTILINE)
    assert "-f" in text
