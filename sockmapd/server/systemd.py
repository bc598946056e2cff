"""systemd integration without a dependency: socket activation and sd_notify."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


class ActivationError(Exception):
    """LISTEN_FDS names file descriptors that are not usable sockets."""


def inherited_sockets() -> list[socket.socket]:
    """Return the sockets passed by systemd (LISTEN_FDS), or []; raise ActivationError if bad."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    # The variables are for this process only: children must not inherit them.
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        try:
            os.set_inheritable(fd, False)
            sockets.append(socket.socket(fileno=fd))
        except OSError as exc:
            raise ActivationError(
                f"LISTEN_FDS={count}, but file descriptor {fd} is not a socket: {exc}"
            ) from exc
    return sockets


def notify(state: str) -> None:
    """Send state (e.g. "READY=1") to systemd when NOTIFY_SOCKET is set; never raise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        # An abstract socket: its name starts with a NUL byte.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify %s failed: %s", state.split("=", 1)[0], exc)
