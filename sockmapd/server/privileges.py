"""Drop root privileges after the listeners are bound and the log is open."""

from __future__ import annotations

import grp
import logging
import os
import pwd

log = logging.getLogger(__name__)


class PrivilegeError(Exception):
    """The configured user or group does not exist, or switching to it failed."""


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch to user and group (setgroups, setgid, setuid, in that order) and verify it."""
    if user is None and group is None:
        return
    try:
        pw = pwd.getpwnam(user) if user is not None else None
    except KeyError:
        raise PrivilegeError(f"run_as_user: no such user {user!r}") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group is not None else (pw.pw_gid if pw else None)
    except KeyError:
        raise PrivilegeError(f"run_as_group: no such group {group!r}") from None
    try:
        if gid is not None:
            os.setgroups([gid])
            os.setgid(gid)
        if pw is not None:
            os.setuid(pw.pw_uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to user {user!r} group {group!r}: {exc}") from exc
    if pw is not None:
        # A process that could regain root after setuid has not dropped anything.
        if os.getuid() != pw.pw_uid or os.geteuid() != pw.pw_uid:
            raise PrivilegeError(f"still running as uid {os.geteuid()} after setuid")
        if pw.pw_uid != 0:
            try:
                os.setuid(0)
            except PermissionError:
                pass
            else:
                raise PrivilegeError("setuid(0) succeeded after dropping privileges")
    log.info("running as uid %d gid %d", os.getuid(), os.getgid())
