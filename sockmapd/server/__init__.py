"""The socketmap server: listeners, connections, signals and reload."""

from sockmapd.server.daemon import Daemon
from sockmapd.server.startup import StartupError

__all__ = ["Daemon", "StartupError"]
