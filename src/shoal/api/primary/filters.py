"""Docker's `filters` query parameter, read one way for every list and prune route."""

from __future__ import annotations

import json

from shoal.api.http import HTTPError, Request
from shoal.textmatch import search


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """Docker's filters JSON, in both its map-of-lists and older map-of-bools shapes."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise HTTPError(400, f"invalid filter '{raw}'") from None
    if not isinstance(data, dict):
        raise HTTPError(400, f"invalid filter '{raw}'")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def match_labels(labels: dict[str, str], wanted: list[str]) -> bool:
    """Docker's `label` filter: every `key` or `key=value` given must hold."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def regex_search(pattern: str, text: str) -> bool:
    """The `name`, `id` and `node` filters of `docker ps`: a regex, or a substring when the
    pattern is not a valid regex.

    Go's syntax in linear time (RE2): Python's `re` backtracks, and a client's pattern runs on
    the loop.
    """
    found = search(pattern, text)
    return pattern in text if found is None else found


def query_args(request: Request) -> dict[str, str]:
    """The first value of each query parameter, as passed on to the engines."""
    return {k: v[0] for k, v in request.query.items() if v}
