"""Configure where and how sockmapd logs."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from sockmapd.config import LogConfig

LOGGER_NAME = "sockmapd"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(config: LogConfig) -> None:
    """Send the sockmapd loggers to stderr or the configured file, at the configured level.

    Called again on reload; the previous handler is closed, so a new file is opened.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler: logging.Handler
    if config.file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        # WatchedFileHandler reopens the file when logrotate has moved it away.
        handler = logging.handlers.WatchedFileHandler(config.file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(config.level.upper())
    logger.propagate = False
