"""Flag values read the way Go's flag and strconv packages (and urfave/cli) read them, so
shoal's command line accepts and refuses what classic Swarm's does, with its messages."""

from __future__ import annotations

import re

from shoal.durations import DurationError, parse_duration

GO_INT = re.compile(r"[+-]?\d+")
GO_FLOAT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE
)


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
