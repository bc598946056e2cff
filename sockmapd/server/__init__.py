"""The socketmap server: listeners, connections, signals and reload."""

from sockmapd.server.daemon import Daemon, StartupError

__all__ = ["Daemon", "StartupError"]
