"""Go-style durations ("1m30s", "500ms"), because classic Swarm's flags take them."""

from __future__ import annotations

import re

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS = (1 << 63) - 1
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


class DurationError(ValueError):
    """A string that Go's time.ParseDuration would reject; message matches Go's."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_duration_ns(text: str) -> int:
    """Parse like Go's time.ParseDuration and return integer nanoseconds."""
    original = text
    sign = 1
    if text[:1] in ("-", "+"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise DurationError(f"time: invalid duration {_quote(original)}")
    total = 0
    while text:
        match = _PART.match(text)
        assert match is not None  # the pattern always matches (possibly empty)
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise DurationError(f"time: invalid duration {_quote(original)}")
        if not unit:
            raise DurationError(f"time: missing unit in duration {_quote(original)}")
        if unit not in _UNITS_NS:
            raise DurationError(
                f"time: unknown unit {_quote(unit)} in duration {_quote(original)}"
            )
        scale = _UNITS_NS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > _MAX_NS:
            raise DurationError(f"time: invalid duration {_quote(original)}")
        text = text[match.end() :]
    return sign * total


def parse_duration(text: str) -> float:
    """Parse like Go's time.ParseDuration and return seconds."""
    return parse_duration_ns(text) / 1e9


def _frac(value: int, digits: int) -> str:
    """Render value / 10**digits with trailing zeros dropped, as Go does."""
    whole, rest = divmod(value, 10**digits)
    if rest == 0:
        return str(whole)
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_duration(seconds: float) -> str:
    """Render seconds like Go's Duration.String ("1m0s", "1.5s", "500ms")."""
    ns = round(seconds * 1e9)
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u == 0:
        return "0s"
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_frac(u, 3)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{_frac(u, 6)}ms"
    secs, sub = divmod(u, 1_000_000_000)
    text = _frac((secs % 60) * 1_000_000_000 + sub, 9) + "s"
    minutes = secs // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text
