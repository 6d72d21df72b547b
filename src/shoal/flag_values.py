"""Flag values read the way Go's flag and strconv packages (and urfave/cli) read them, so
shoal's command line accepts and refuses what classic Swarm's does, with its messages; and
the flags' defaults, written once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from shoal.durations import DurationError, parse_duration

GO_INT = re.compile(r"[+-]?\d+")
GO_FLOAT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class FlagDefaults:
    """Each flag's default as typed on the command line, i.e. as ``--help`` shows it.

    The one place a default is written: click's options and the raw options hold these
    strings, and whatever needs the value (the validated options, the API server's limits)
    parses them, so a default cannot differ between the help, the parser and the server.
    """

    # Before the command, or (as dockerd takes them) after manage, join or list.
    log_level: str = "info"
    log_format: str = "text"
    # manage
    strategy: str = "spread"
    replication_ttl: str = "20s"
    refresh_min: str = "30s"
    refresh_max: str = "60s"
    failure_retry: str = "3"
    refresh_retry: str = "3"
    engine_probe_timeout: str = "5s"
    cluster_driver: str = "swarm"
    overcommit: str = "0.05"  # --cluster-opt swarm.overcommit
    create_retry: str = "0"  # --cluster-opt swarm.createretry
    api_head_timeout: str = "30s"
    api_idle_timeout: str = "2m0s"
    api_body_timeout: str = "1m0s"
    api_body_min_rate: str = "65536"
    api_max_connections: str = "2048"
    # manage and join (one flag in classic Swarm)
    heartbeat: str = "60s"
    # join
    ttl: str = "180s"
    delay: str = "0s"
    # list
    timeout: str = "10s"


DEFAULTS: Final = FlagDefaults()


class OptionsError(Exception):
    """An invalid command line; ``message`` is what the user sees."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool; None when it would fail."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def flag_duration(text: str, flag: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise OptionsError(f"invalid {flag}: {exc}") from None


def lenient_duration(text: str) -> float:
    """urfave/cli's DurationFlag: an unparsable value reads as zero."""
    try:
        return parse_duration(text)
    except DurationError:
        return 0.0


def flag_int(text: str, flag: str) -> int:
    if not GO_INT.fullmatch(text):
        raise OptionsError(f'invalid value "{text}" for flag {flag}: parse error')
    return int(text)


def limit_duration(text: str, flag: str) -> float:
    """A server limit: a Go duration, >= 0 (0 turns the limit off)."""
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise OptionsError(f'invalid value "{text}" for flag {flag}: parse error') from exc
    if seconds < 0:
        raise OptionsError(f"{flag} must not be negative")
    return seconds


def limit_count(text: str, flag: str, minimum: int) -> int:
    value = flag_int(text, flag)
    if value < minimum:
        raise OptionsError(f"{flag} must be at least {minimum}")
    return value


def go_float(text: str) -> float:
    """strconv.ParseFloat, leniently: unparsable is 0 (DriverOpts.Float)."""
    return float(text) if GO_FLOAT.fullmatch(text) else 0.0


def go_int(text: str) -> int:
    """strconv.ParseInt, leniently: unparsable is 0 (DriverOpts.Int)."""
    if not GO_INT.fullmatch(text):
        return 0
    return max(-(1 << 63), min((1 << 63) - 1, int(text)))
