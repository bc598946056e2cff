"""Real Sendmail (address test mode, sendmail -bt) looks keys up in a running sockmapd.

This is the example of docs/sendmail.md: `K` declarations over TCP and a unix socket,
a ruleset that uses them, key case folding with and without `-f`, and a `TEMP`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.integration.conftest import DaemonFactory, toml_config
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.sendmail

# Where Debian's sendmail-bin puts the binary; SOCKMAPD_SENDMAIL names another one.
DEBIAN_SENDMAIL = "/usr/libexec/sendmail/sendmail"
# Sendmail canonicalises its own host name at start and, when the name has no dot,
# sleeps 60 s before it retries; a private UTS namespace gives it a qualified name.
QUALIFIED_HOSTNAME = "mta.example.test"

EXACT_MAP = """
[maps.exact]
database = "main"
table = "users"
key = "address"
"""

SENDMAIL_CF = """\
V10/Berkeley
Dj {hostname}
O QueueDirectory={queue}
O StatusFile={queue}/statistics
O DontProbeInterfaces=true
# Sendmail refuses a socket under a world-writable directory; the test's is under /tmp.
O DontBlameSendmail=TrustStickyBit
Mlocal, P=/bin/true, F=l, A=true
Mprog, P=/bin/true, F=l, A=true

# Sendmail sends its own map name on the wire: it must be the [maps.NAME] of sockmapd.
Krecipient socket -T<TMPF> inet:{port}@127.0.0.1
Kexact socket -f -T<TMPF> inet:{port}@127.0.0.1
Kblacklist socket -T<TMPF> unix:{unix_path}
Kbroken socket -T<TMPF> inet:{port}@127.0.0.1

SCheck_recipient=90
R$+\t\t$: $(recipient $1 $: <NOTFOUND> $)
SCheck_exact=91
R$+\t\t$: $(exact $1 $: <NOTFOUND> $)

# The ruleset of docs/sendmail.md: reject listed senders, defer when the lookup fails.
SCheck_sender=92
R$+\t\t\t$: $(blacklist $1 $: <NOTFOUND> $)
R<NOTFOUND>\t\t$@ OK
R$* <TMPF>\t\t$#error $@ 4.3.0 $: "451 Temporary lookup failure"
RREJECT $*\t\t$#error $@ 5.7.1 $: "550 " $1
R$*\t\t\t$@ OK
SCheck_broken=93
R$+\t\t\t$: $(broken $1 $: <NOTFOUND> $)
R<NOTFOUND>\t\t$@ OK
R$* <TMPF>\t\t$#error $@ 4.3.0 $: "451 Temporary lookup failure"
"""


def sendmail_binary() -> str:
    """Return Sendmail's binary; fail under SOCKMAPD_REQUIRE_SENDMAIL=1, else skip, if absent."""
    configured = os.environ.get("SOCKMAPD_SENDMAIL")
    candidate = configured or DEBIAN_SENDMAIL
    if os.access(candidate, os.X_OK):
        return candidate
    if os.environ.get("SOCKMAPD_REQUIRE_SENDMAIL") == "1":
        pytest.fail(
            f"Sendmail is not at {candidate}, and SOCKMAPD_REQUIRE_SENDMAIL=1 requires it "
            "(set SOCKMAPD_SENDMAIL to the sendmail binary of the Debian package sendmail-bin)"
        )
    pytest.skip("Sendmail is not installed (Debian package sendmail-bin, or set SOCKMAPD_SENDMAIL)")


@cache
def _hostname_prefix() -> tuple[str, ...]:
    """Return a command prefix that runs a command under a qualified host name, if possible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run(
        [unshare, "-u", "hostname", QUALIFIED_HOSTNAME], capture_output=True, timeout=10
    )
    if probe.returncode != 0:
        return ()
    return (unshare, "-u", "sh", "-c", f'hostname {QUALIFIED_HOSTNAME} && exec "$@"', "sh")


@pytest.fixture
def sendmail_daemon(start_daemon: DaemonFactory, tmp_path: Path) -> Daemon:
    """Return a sockmapd serving the test maps plus 'exact', on TCP and a unix socket."""
    sendmail_binary()
    unix_path = tmp_path / "sockmapd.toml.sock"
    text = toml_config(tmp_path / "test.sqlite3", ["tcp://127.0.0.1:@PORT@", f"unix://{unix_path}"])
    return start_daemon(unix=True, config_text=text + EXACT_MAP)


def _address_test(daemon: Daemon, tmp_path: Path, commands: list[str]) -> str:
    """Run sendmail -bt with the test .cf, feed it commands and return what it printed."""
    queue = tmp_path / "mqueue"
    queue.mkdir(exist_ok=True)
    cf = tmp_path / "sendmail.cf"
    cf.write_text(
        SENDMAIL_CF.format(
            hostname=QUALIFIED_HOSTNAME, queue=queue, port=daemon.port, unix_path=daemon.unix_path
        )
    )
    command = [*_hostname_prefix(), sendmail_binary(), "-bt", "-C", str(cf)]
    # Without the namespace, Sendmail's 60 s wait for its host name is part of the run.
    result = subprocess.run(
        command,
        input="".join(f"{line}\n" for line in commands),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_map_lookups_fold_case_unless_the_map_has_f(
    sendmail_daemon: Daemon, tmp_path: Path
) -> None:
    output = _address_test(
        sendmail_daemon,
        tmp_path,
        [
            "/map recipient Alice@Example.COM",
            "/map recipient nobody@example.com",
            "/map exact Alice@Example.COM",
            "/map exact alice@example.com",
            "/map blacklist Hello@BuyDirect4U.co.uk",
            "/map broken anything",
        ],
    )
    # Without -f, Sendmail lowercases the key before sending it.
    assert "recipient (Alice@Example.COM) returns alice@example.com (0)" in output, output
    assert "recipient (nobody@example.com) no match (68)" in output, output
    # With -f, the key is sent as typed: the table holds it in lower case only.
    assert "exact (Alice@Example.COM) no match (68)" in output, output
    assert "exact (alice@example.com) returns alice@example.com (0)" in output, output
    assert (
        "blacklist (Hello@BuyDirect4U.co.uk) returns REJECT Sender identified as spammer (0)"
        in output
    ), output
    # TEMP is a temporary failure: EX_TEMPFAIL (75), never "no match".
    assert "broken (anything) no match (75)" in output, output

    log = sendmail_daemon.log()
    assert "map=recipient key=alice@example.com result=OK" in log
    assert "map=exact key=Alice@Example.COM result=NOTFOUND" in log
    assert "map=broken key=anything result=TEMP" in log


def test_rulesets_use_the_answers(sendmail_daemon: Daemon, tmp_path: Path) -> None:
    output = _address_test(
        sendmail_daemon,
        tmp_path,
        [
            "Check_recipient Alice@Example.COM",
            "Check_recipient nobody@example.com",
            "Check_exact Alice@Example.COM",
            "Check_sender Hello@BuyDirect4U.co.uk",
            "Check_sender friend@example.net",
            "Check_broken anything",
        ],
    )
    lines = [" ".join(line.split()) for line in output.splitlines()]
    returns = [line.split("returns: ", 1)[1] for line in lines if "returns: " in line]
    assert returns == [
        "alice @ example . com",
        "< NOTFOUND >",
        "< NOTFOUND >",
        '$# error $@ 5 . 7 . 1 $: "550 " Sender identified as spammer',
        "OK",
        # TEMP: the -T<TMPF> token is appended to the key, and the ruleset defers.
        '$# error $@ 4 . 3 . 0 $: "451 Temporary lookup failure"',
    ], output
    assert "== Ruleset Check_broken (93) status 75" in lines, output
