"""Docker's wire conventions (JSON bodies, headers, filters) shared by the simulator's handlers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from shoal.sandbox.simulated.documents import API_VERSION, SERVER_VERSION
from shoal.sandbox.simulated.model import SimError

HEADERS = {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
           "Server": f"Docker/{SERVER_VERSION} (linux)"}


def encode(obj: Any) -> bytes:
    """Compact JSON with the trailing newline dockerd writes."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def reply(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(obj), status=status, content_type="application/json",
                        headers=HEADERS)


def empty(status: int = 204) -> web.Response:
    return web.Response(status=status, headers=HEADERS)


def flag(query: Mapping[str, str], key: str) -> bool:
    return query.get(key, "").lower() in ("1", "true", "yes")


def parse_filters(raw: str) -> dict[str, list[str]]:
    """Docker's `filters` parameter: `{"key": ["v"]}` or the older `{"key": {"v": true}}`."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise SimError(400, f"invalid filter '{raw}'") from None
    if not isinstance(data, dict):
        raise SimError(400, f"invalid filter '{raw}'")
    return {str(k): list(v) if isinstance(v, (list, dict)) else [str(v)]
            for k, v in data.items()}


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SimError(400, f"invalid character in JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise SimError(400, "json: cannot unmarshal into a JSON object")
    return body


def container_matches(cid: str, name: str, status: str, labels: Mapping[str, str],
                      filters: Mapping[str, list[str]]) -> bool:
    """The `docker ps --filter` keys the simulator understands (others match everything)."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "status" and status not in values:
            return False
        if key == "id" and not any(cid.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in name for v in values):
            return False
        if key == "label":
            for want in values:
                k, eq, v = want.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
    return True


def event_matches(event: Mapping[str, Any], filters: Mapping[str, list[str]]) -> bool:
    """`type`, `event` and `container` filters of `/events`."""
    actor = event.get("Actor") or {}
    for key, values in filters.items():
        if not values:
            continue
        if key == "type" and event.get("Type") not in values:
            return False
        if key == "event" and event.get("Action") not in values:
            return False
        if key == "container" and (
            event.get("Type") != "container"
            or not any(v in (actor.get("ID"), (actor.get("Attributes") or {}).get("name"))
                       for v in values)
        ):
            return False
    return True
