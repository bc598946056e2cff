"""Postfix's real smtpd asks a real sockmapd: the SMTP replies and log lines of each answer.

A private Postfix instance (its own main.cf, master.cf, queue and data directories in a
temporary directory) runs one smtpd service per case, each on its own port with its own
socketmap table, so that one master answers every case. docs/postfix.md quotes these
replies and log lines; this test is where they come from.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import make_sqlite, toml_config
from tests.integration.daemon import Daemon, free_port

pytestmark = pytest.mark.postfix

# Generous bounds for a slow machine; no test measures time.
COMMAND_TIMEOUT = 60
SMTP_TIMEOUT = 60.0
LOG_WAIT = 30.0

# A query that never finishes on its own: query_timeout interrupts it, so the map
# answers TIMEOUT without any clock in the test.
SLOW_MAP = """
[databases.slow]
url = "sqlite+aiosqlite:///{db}"
query_timeout = 0.5

[maps.slow]
database = "slow"
query = '''
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
SELECT '%s' FROM c WHERE x < 0'''
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.sockmapd.test
mydomain = sockmapd.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
# 127.0.0.1 is not a trusted network: the recipient lookup decides.
mynetworks = 192.0.2.0/24
alias_maps =
alias_database =
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
syslog_name = sockmapd-test
virtual_mailbox_domains = example.com
virtual_mailbox_maps = socketmap:inet:127.0.0.1:{sockmapd}:recipient
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient
smtpd_sender_restrictions = check_sender_access socketmap:inet:127.0.0.1:{sockmapd}:blacklist
# Without SMTPUTF8, smtpd and trivial-rewrite pass 8-bit addresses on as they are.
smtputf8_enable = no
"""

# One smtpd per case; chroot off ("n"), so the instance needs no files in the queue dir.
SERVICES = {
    "ok": "",
    "temp": "-o virtual_mailbox_maps=socketmap:inet:127.0.0.1:{sockmapd}:broken",
    "timeout": "-o virtual_mailbox_maps=socketmap:inet:127.0.0.1:{sockmapd}:slow",
    "refused": "-o virtual_mailbox_maps=socketmap:inet:127.0.0.1:{dead}:recipient",
    # Postfix's default: smtpd refuses malformed UTF-8 itself.
    "smtputf8": "-o smtputf8_enable=yes",
}

MASTER_CF = """\
rewrite   unix - - n - - trivial-rewrite
cleanup   unix n - n - 0 cleanup
proxymap  unix - - n - - proxymap
anvil     unix - - n - 1 anvil
postlog   unix-dgram n - n - 1 postlogd
"""


def _require(reason: str) -> None:
    if os.environ.get("SOCKMAPD_REQUIRE_POSTFIX") == "1":
        pytest.fail(f"{reason}, and SOCKMAPD_REQUIRE_POSTFIX=1 requires it")
    pytest.skip(reason)


def _postfix_binary() -> str:
    found = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin:/usr/local/sbin")
    if not found:
        _require("postfix is not installed (Debian package postfix)")
    assert found is not None
    if os.geteuid() != 0:
        _require("starting a Postfix instance needs root")
    return found


@dataclass
class Instance:
    """A running private Postfix and the sockmapd it asks."""

    root: Path
    ports: dict[str, int]
    sockmapd: Daemon
    sockmapd_port: int
    dead_port: int

    def smtp(self, service: str) -> smtplib.SMTP:
        """Return an SMTP session on the service's smtpd, after EHLO."""
        client = smtplib.SMTP("127.0.0.1", self.ports[service], timeout=SMTP_TIMEOUT)
        code, _ = client.ehlo("client.example")
        assert code == 250
        return client

    def maillog(self) -> str:
        """Return the instance's log so far."""
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, *lines: str) -> str:
        """Return the log once it holds every one of lines (postlogd writes after the reply)."""
        deadline = time.monotonic() + LOG_WAIT
        while True:
            log = self.maillog()
            if all(line in log for line in lines) or time.monotonic() > deadline:
                return log
            time.sleep(0.1)

    def table(self, name: str, port: int | None = None) -> str:
        """Return the Postfix name of a socketmap table on sockmapd (or on port)."""
        return f"socketmap:inet:127.0.0.1:{port or self.sockmapd_port}:{name}"


def _postfix(binary: str, config: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAIL_CONFIG=str(config))
    return subprocess.run(
        [binary, "-c", str(config), command],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """Start sockmapd and a private Postfix instance; stop both at the end."""
    binary = _postfix_binary()
    work = tmp_path_factory.mktemp("smtpd")
    db = make_sqlite(work / "test.sqlite3")
    sockmapd_port = free_port()
    config_path = work / "sockmapd.toml"
    config_path.write_text(
        toml_config(db, [f"tcp://127.0.0.1:{sockmapd_port}"]) + SLOW_MAP.format(db=db)
    )
    sockmapd = Daemon(config_path, sockmapd_port)
    # pytest's temporary directories are private to root; the Postfix daemons run as
    # the user postfix and must reach the queue directory.
    root = Path(tempfile.mkdtemp(prefix="sockmapd-postfix-"))
    root.chmod(0o755)
    config = root / "etc"
    started = False
    try:
        config.mkdir()
        (root / "queue").mkdir(mode=0o755)
        values = {"root": root, "sockmapd": sockmapd_port, "dead": free_port()}
        (config / "main.cf").write_text(MAIN_CF.format(**values))
        ports = {service: free_port() for service in SERVICES}
        master = [
            f"127.0.0.1:{ports[service]} inet n - n - - smtpd {options.format(**values)}"
            for service, options in SERVICES.items()
        ]
        (config / "master.cf").write_text("\n".join(master) + "\n" + MASTER_CF)
        result = _postfix(binary, config, "start")
        started = result.returncode == 0
        if not started:
            log = (
                (root / "maillog").read_text(errors="replace")
                if (root / "maillog").exists()
                else ""
            )
            pytest.fail(f"postfix start failed:\n{result.stdout}{result.stderr}{log}")
        yield Instance(root, ports, sockmapd, sockmapd_port, int(values["dead"]))
    finally:
        try:
            # Also after a failed or timed-out start: never leave a master running.
            if started or (root / "queue" / "pid" / "master.pid").exists():
                result = _postfix(binary, config, "stop")
                assert not started or result.returncode == 0, result.stdout + result.stderr
        finally:
            sockmapd.stop()
            shutil.rmtree(root, ignore_errors=True)


def _request_logged(instance: Instance, map_name: str, key: str, result: str) -> bool:
    return f"map={map_name} key={key} result={result}" in instance.sockmapd.log()


def test_found_recipient_is_accepted(instance: Instance) -> None:
    with instance.smtp("ok") as client:
        assert client.mail("someone@example.org") == (250, b"2.1.0 Ok")
        assert client.rcpt("alice@example.com") == (250, b"2.1.5 Ok")
    # The answers came from sockmapd: the sender's NOTFOUND in the access map is no action.
    assert _request_logged(instance, "blacklist", "someone@example.org", "NOTFOUND")
    assert _request_logged(instance, "recipient", "alice@example.com", "OK")
    # A socketmap table is asked the whole address only, never a domain or user@ part.
    assert "key=example.org " not in instance.sockmapd.log()
    assert "key=@example.com " not in instance.sockmapd.log()
    assert "key=someone@ " not in instance.sockmapd.log()


def test_notfound_recipient_is_rejected_as_user_unknown(instance: Instance) -> None:
    with instance.smtp("ok") as client:
        assert client.mail("someone@example.org")[0] == 250
        assert client.rcpt("nobody@example.com") == (
            550,
            b"5.1.1 <nobody@example.com>: Recipient address rejected: "
            b"User unknown in virtual mailbox table",
        )
    assert _request_logged(instance, "recipient", "nobody@example.com", "NOTFOUND")
    line = (
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@example.com>: "
        "Recipient address rejected: User unknown in virtual mailbox table;"
    )
    assert line in instance.wait_for_log(line)


def test_sender_access_reject_is_554_at_rcpt(instance: Instance) -> None:
    with instance.smtp("ok") as client:
        # smtpd_delay_reject = yes (the default): sender restrictions run at RCPT TO.
        assert client.mail("hello@buydirect4u.co.uk") == (250, b"2.1.0 Ok")
        assert client.rcpt("alice@example.com") == (
            554,
            b"5.7.1 <hello@buydirect4u.co.uk>: Sender address rejected: "
            b"Sender identified as spammer",
        )
    assert _request_logged(instance, "blacklist", "hello@buydirect4u.co.uk", "OK")


def test_temp_is_451_temporary_lookup_failure(instance: Instance) -> None:
    with instance.smtp("temp") as client:
        assert client.mail("someone@example.org")[0] == 250
        assert client.rcpt("alice@example.com") == (
            451,
            b"4.3.0 <alice@example.com>: Temporary lookup failure",
        )
    assert _request_logged(instance, "broken", "alice@example.com", "TEMP")
    table = instance.table("broken")
    lines = [
        f"warning: {table} socketmap server temporary error: "
        "database main unavailable, try again later",
        f'warning: {table} lookup error for "alice@example.com"',
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 451 4.3.0 <alice@example.com>: "
        "Temporary lookup failure;",
    ]
    log = instance.wait_for_log(*lines)
    for line in lines:
        assert line in log


def test_timeout_is_451_temporary_lookup_failure(instance: Instance) -> None:
    with instance.smtp("timeout") as client:
        assert client.mail("someone@example.org")[0] == 250
        assert client.rcpt("alice@example.com") == (
            451,
            b"4.3.0 <alice@example.com>: Temporary lookup failure",
        )
    assert _request_logged(instance, "slow", "alice@example.com", "TIMEOUT")
    table = instance.table("slow")
    lines = [
        f"warning: {table} socketmap server timeout error: "
        "database slow did not answer within 0.5s",
        f'warning: {table} lookup error for "alice@example.com"',
    ]
    log = instance.wait_for_log(*lines)
    for line in lines:
        assert line in log


def test_refused_connection_is_451_temporary_lookup_failure(instance: Instance) -> None:
    with instance.smtp("refused") as client:
        assert client.mail("someone@example.org")[0] == 250
        assert client.rcpt("alice@example.com") == (
            451,
            b"4.3.0 <alice@example.com>: Temporary lookup failure",
        )
    table = instance.table("recipient", instance.dead_port)
    lines = [
        f"warning: connect to 127.0.0.1:{instance.dead_port}: Connection refused",
        f"warning: table {table} lookup error: Connection refused",
        f'warning: {table} lookup error for "alice@example.com"',
    ]
    log = instance.wait_for_log(*lines)
    for line in lines:
        assert line in log


def test_perm_is_451_server_configuration_error(instance: Instance) -> None:
    # Postfix without SMTPUTF8 sends a Latin-1 address as it is; sockmapd answers PERM.
    with instance.smtp("ok") as client:
        assert client.mail("someone@example.org")[0] == 250
        client.send(b"RCPT TO:<caf\xe9@example.com>\r\n")
        assert client.getreply() == (451, b"4.3.5 Server configuration error")
    assert _request_logged(instance, "recipient", "caf\\xe9@example.com", "PERM")
    with instance.smtp("ok") as client:
        client.send(b"MAIL FROM:<caf\xe9@example.org>\r\n")
        assert client.getreply()[0] == 250
        code, text = client.rcpt("alice@example.com")
        assert code == 451
        assert text.startswith(b"4.3.5 <caf")
        assert text.endswith(b"@example.org>: Sender address rejected: Server configuration error")
    assert _request_logged(instance, "blacklist", "caf\\xe9@example.org", "PERM")
    lines = [
        f"warning: {instance.table(name)} socketmap server permanent error: key is not valid UTF-8"
        for name in ("recipient", "blacklist")
    ]
    lines.append(
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 451 4.3.5 Server configuration error;"
    )
    log = instance.wait_for_log(*lines)
    for line in lines:
        assert line in log


def test_smtputf8_smtpd_never_sends_malformed_utf8(instance: Instance) -> None:
    with instance.smtp("smtputf8") as client:
        assert client.mail("someone@example.org")[0] == 250
        client.send(b"RCPT TO:<na\xefve@example.com>\r\n")
        assert client.getreply() == (500, b"5.5.2 Error: bad UTF-8 syntax")
    assert "key=na\\xefve@example.com" not in instance.sockmapd.log()
