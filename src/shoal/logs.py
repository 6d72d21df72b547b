"""Logging setup: logrus-style ``time=... level=... msg=...`` lines on stdout.

Structured fields go in ``extra={"fields": {...}}``::

    log.info("Registering", extra={"fields": {"addr": addr}})
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys

__all__ = ["LEVELS", "PANIC", "LogfmtFormatter", "parse_level", "setup"]

PANIC = logging.CRITICAL + 10
# Classic Swarm's (logrus) level names; "warning" is logrus's own alias.
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": PANIC,
}
_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
    PANIC: "panic",
}
_PLAIN = re.compile(r"[A-Za-z0-9\-._/@^+]+")
_HANDLER_NAME = "shoal-logfmt"


def parse_level(name: str) -> int:
    """Map a level name (case-insensitive) to a logging level; ValueError if unknown."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(
            f'not a valid log level: "{name}" (use one of debug, info, warn, error, fatal, panic)'
        ) from None


def _value(value: object) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """Formats records the way logrus's text formatter does without a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created).astimezone()
        level = _NAMES.get(record.levelno, record.levelname.lower())
        parts = [
            f"time={_value(stamp.isoformat(timespec='seconds'))}",
            f"level={level}",
            f"msg={_value(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts.extend(f"{key}={_value(val)}" for key, val in fields.items())
        if record.exc_info:
            parts.append(f"error={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup(level: str) -> None:
    """Send all logging to stdout at ``level``; calling again replaces the setup."""
    numeric = parse_level(level)
    logging.addLevelName(PANIC, "PANIC")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
