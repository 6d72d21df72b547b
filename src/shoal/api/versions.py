"""Client API versions checked against the served range and refused in the engine's own words."""

from __future__ import annotations

from typing import Final

from shoal.api.http import Response, json_response

_JSON_ERRORS_SINCE: Final = (1, 24)
"""Older API versions get their errors as plain text (the engine's rule)."""


def version_error(version: str, minimum: str, maximum: str) -> str | None:
    """The engine's message for a client API version outside `minimum..maximum`, else None."""
    wanted = _version_tuple(version)
    if _compare(wanted, _version_tuple(maximum)) > 0:
        return f"client version {version} is too new. Maximum supported API version is {maximum}"
    if _compare(wanted, _version_tuple(minimum)) < 0:
        return (
            f"client version {version} is too old. Minimum supported API version is {minimum}, "
            "please upgrade your client to a newer version"
        )
    return None


def version_response(version: str, minimum: str, maximum: str) -> Response | None:
    """400 for a version outside the range, as the engine sends it (plain text below 1.24)."""
    message = version_error(version, minimum, maximum)
    if message is None:
        return None
    headers = [("Api-Version", maximum)]
    if _compare(_version_tuple(version), _JSON_ERRORS_SINCE) >= 0:
        return json_response({"message": message}, 400, headers)
    headers.append(("X-Content-Type-Options", "nosniff"))
    return Response(400, f"{message}\n".encode(), headers, "text/plain; charset=utf-8")


def _compare(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Compare versions as the engine does: missing parts count as 0 (1.41 == 1.41.0)."""
    width = max(len(a), len(b))
    a = a + (0,) * (width - len(a))
    b = b + (0,) * (width - len(b))
    return (a > b) - (a < b)


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)
