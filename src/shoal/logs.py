"""Logging setup: logrus-style ``time=... level=... msg=...`` lines on stdout, or JSON.

Structured fields go in ``extra={"fields": {...}}``, or ``extra=fields(...)``::

    log.info("Registering", extra=fields(addr=addr))

A line about an engine carries ``engine`` (its name) and ``addr``; a line about a
container carries ``container`` (its ID) and ``node`` (the engine's name), so a log
shipper can follow one engine or one container without parsing messages.

``--log-format json`` writes the same record as one JSON object per line (logrus's
JSON formatter: ``time``, ``level``, ``msg``, then the fields), for log shippers.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys

__all__ = [
    "LEVELS",
    "LOG_FORMATS",
    "PANIC",
    "JsonFormatter",
    "LogfmtFormatter",
    "fields",
    "parse_level",
    "setup",
]

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
LOG_FORMATS = ("text", "json")
#: Keys the JSON formatter writes itself; a field of the same name is prefixed
#: with ``fields.``, as logrus does, rather than overwriting them.
_RESERVED = frozenset({"time", "level", "msg", "error"})
_PLAIN = re.compile(r"[A-Za-z0-9\-._/@^+]+")
_HANDLER_NAME = "shoal-logfmt"


def fields(**values: object) -> dict[str, dict[str, object]]:
    """The ``extra=`` of a log call carrying structured fields."""
    return {"fields": values}


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


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, msg, the record's fields, and any error."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created).astimezone()
        out: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds"),
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, val in fields.items():
                name = str(key)
                out[f"fields.{name}" if name in _RESERVED else name] = _json_value(val)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


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


def setup(level: str, log_format: str = "text") -> None:
    """Send all logging to stdout at ``level``; calling again replaces the setup."""
    numeric = parse_level(level)
    if log_format not in LOG_FORMATS:
        raise ValueError(f'unsupported log format "{log_format}" (use text or json)')
    logging.addLevelName(PANIC, "PANIC")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
