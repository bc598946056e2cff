"""A private PgBouncer process in front of the test PostgreSQL server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from sqlalchemy.engine import URL, make_url

START_TIMEOUT = 15.0


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class PgBouncer:
    """PgBouncer on its own port with its own ini and auth file, stopped by stop().

    Every database name a client asks for is passed on to the server (the `*` entry),
    so each test reaches its own database through the one bouncer.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        server: URL,
        port: int,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 4,
        users: dict[str, str] | None = None,
        extra: str = "",
    ) -> None:
        self.port = port
        self.log_path = directory / "pgbouncer.log"
        ini = directory / "pgbouncer.ini"
        auth = directory / "userlist.txt"
        # trust: any listed user logs in without a password; PgBouncer uses the listed
        # password, if any, to log in to the server.
        accounts = {str(server.username): server.password or "", **(users or {})}
        auth.write_text(
            "".join(f"{_quoted(user)} {_quoted(password)}\n" for user, password in accounts.items())
        )
        ini.write_text(
            f"""\
[databases]
* = host={server.host} port={server.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {auth}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 200
logfile =
pidfile =
{extra}
"""
        )
        command = [binary]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; it reads its files before it switches.
            command += ["-u", "nobody"]
        command.append(str(ini))
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
            except OSError:
                time.sleep(0.05)
                continue
            return
        self.stop()
        raise RuntimeError(f"pgbouncer did not start listening:\n{self.log()}")

    def url(self, database_url: str) -> str:
        """Return database_url (a database on the server) with this bouncer as its host."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def log(self) -> str:
        """Return everything PgBouncer has written so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """Kill PgBouncer at once (SIGKILL): every client connection breaks."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop PgBouncer (SIGINT: at once, closing every connection) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
