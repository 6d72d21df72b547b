"""`/_ping`, `/version`, `/info` and `/events`: the cluster described as one engine."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from shoal import __version__
from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.router import Router
from shoal.cluster.engine import Engine, EngineState
from shoal.cluster.events import EventBus
from shoal.cluster.records import bytes_size

SERVER_VERSION = f"shoal/{__version__}"


def ping_headers(ctx: ApiContext) -> list[tuple[str, str]]:
    return [
        ("Api-Version", ctx.api_version()),
        ("Ostype", "linux"),
        ("Docker-Experimental", "true" if ctx.experimental else "false"),
        ("Swarm", "inactive"),
        # BuildKit sessions are not routed: make clients pick the classic builder.
        ("Builder-Version", "1"),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
    ]


def natural_key(text: str) -> list[Any]:
    """`node-2` before `node-10`, as classic Swarm sorts its node lines."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def engine_status_lines(engine: Engine) -> list[list[str]]:
    """The indented per-node block of classic Swarm's `docker info` (spec 3.6)."""
    containers = list(engine.containers.values())
    total = len(containers)
    if engine.healthy:
        running = sum(1 for c in containers if c.running and not c.state.get("Paused"))
        paused = sum(1 for c in containers if c.state.get("Paused"))
        stopped = total - running - paused
        count = f"{total} ({running} Running, {paused} Paused, {stopped} Stopped)"
    else:
        count = str(total)
    used_cpus = sum(c.reserved_cpus for c in containers)
    used_memory = sum(c.reserved_memory for c in containers)
    labels = ", ".join(f"{k}={v}" for k, v in sorted(engine.specs.labels.items()))
    lines = [
        [f" {engine.name}", engine.addr],
        ["  └ ID", engine.id],
        ["  └ Status", engine.state.value],
        ["  └ Containers", count],
        ["  └ Reserved CPUs", f"{used_cpus} / {engine.total_cpus}"],
        [
            "  └ Reserved Memory",
            f"{bytes_size(used_memory)} / {bytes_size(engine.total_memory)}",
        ],
        ["  └ Labels", labels],
    ]
    if engine.error:
        lines.append(["  └ Error", engine.error])
    updated = datetime.fromtimestamp(engine.updated_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines.append(["  └ UpdatedAt", updated])
    lines.append(["  └ ServerVersion", engine.specs.version])
    return lines


def build_info(ctx: ApiContext) -> dict[str, Any]:
    cluster = ctx.cluster
    engines = [e for e in cluster.engines.values() if e.state is not EngineState.DISCONNECTED]
    active = [e for e in engines if e.state is not EngineState.PENDING]
    containers = [c for e in active for c in e.containers.values()]
    running = sum(1 for c in containers if c.running and not c.state.get("Paused"))
    paused = sum(1 for c in containers if c.state.get("Paused"))
    role, primary = ctx.role()
    status: list[list[str]] = [["Role", role]]
    if primary:
        status.append(["Primary", primary])
    status += [
        ["Strategy", ctx.strategy],
        ["Filters", ", ".join(ctx.filters)],
        ["Nodes", str(len(engines))],
    ]
    if cluster.discovery_error:
        status.append(["Discovery Error", cluster.discovery_error])
    for engine in sorted(engines, key=lambda e: natural_key(e.name)):
        status += engine_status_lines(engine)
    images = sum(
        1 for e in active for i in e.images if i.repo_tags or i.repo_digests
    )
    uname = platform.uname()
    return {
        "ID": "",
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": images,
        "Driver": "",
        "DriverStatus": None,
        "SystemStatus": status,
        "Plugins": {"Volume": None, "Network": None, "Authorization": None, "Log": None},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "IPv4Forwarding": True,
        "BridgeNfIptables": True,
        "BridgeNfIp6tables": True,
        "OomKillDisable": True,
        "Debug": False,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "NEventsListener": cluster.bus.listeners,
        "KernelVersion": uname.release or "<unknown>",
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "",
        "NCPU": sum(e.total_cpus for e in active),
        "MemTotal": sum(e.total_memory for e in active),
        "DockerRootDir": "",
        "HttpProxy": os.environ.get("http_proxy", ""),
        "HttpsProxy": os.environ.get("https_proxy", ""),
        "NoProxy": os.environ.get("no_proxy", ""),
        "Name": socket.gethostname() or "<unknown>",
        "Labels": None,
        "ExperimentalBuild": ctx.experimental,
        "ServerVersion": SERVER_VERSION,
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False},
        "SecurityOptions": None,
        "Warnings": None,
    }


def build_version(ctx: ApiContext) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "Platform": {"Name": "shoal"},
        "Version": SERVER_VERSION,
        "ApiVersion": ctx.api_version(),
        "MinAPIVersion": ctx.min_api_version(),
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
        "KernelVersion": uname.release,
        "Experimental": ctx.experimental,
        "BuildTime": "",
    }


NANO = 1_000_000_000
#: Filter keys Docker matches by prefix against the actor's ID or `name` attribute.
FUZZY_EVENT_KEYS = ("container", "daemon", "plugin", "volume", "network", "service", "secret",
                    "config")
#: `event` values Docker matches by prefix (their actions carry a `: detail` suffix).
PREFIX_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})


def parse_event_time(value: str | None, name: str) -> int | None:
    """`since`/`until` in nanoseconds: Docker's `seconds[.nanoseconds]`, or RFC 3339.

    Integer nanoseconds, because a float cannot tell apart two events of the same
    second the way the engines' `timeNano` does.
    """
    if value is None or value == "":
        return None
    seconds, dot, fraction = value.partition(".")
    if seconds.lstrip("-").isdigit() and (not dot or fraction.isdigit()):
        nanos = int((fraction or "0")[:9].ljust(9, "0"))
        sign = -1 if seconds.startswith("-") else 1
        return int(seconds) * NANO + sign * nanos
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"invalid value for {name}: {value!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp()) * NANO + stamp.microsecond * 1000


def _strip_tag(image: str) -> str:
    """Docker's `stripTag`: the familiar repository name without tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def event_matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's `/events` filter (daemon/events/filter.go), plus shoal's `node`.

    Keys are ANDed, values of one key ORed. As in Docker, `container=x` and its kin
    compare with the actor of any event type, by exact value or prefix; `label` needs
    every `key[=value]` given. `node` takes a node name or engine ID.
    """
    if not filters:
        return True
    actor = event.get("Actor") or {}
    attrs: dict[str, str] = actor.get("Attributes") or {}
    actor_id = str(actor.get("ID") or event.get("id") or "")
    name = str(attrs.get("name", ""))
    kind = str(event.get("Type") or "")
    action = str(event.get("Action") or event.get("status") or "")

    def exact(key: str, *sources: str) -> bool:
        values = filters.get(key)
        return not values or any(s in values for s in sources)

    def fuzzy(key: str, *sources: str) -> bool:
        values = filters.get(key)
        if not values:
            return True
        return any(s == v or (s and s.startswith(v)) for s in sources for v in values)

    if PREFIX_ACTIONS & set(filters.get("event", ())):
        if not fuzzy("event", action):
            return False
    elif not exact("event", action):
        return False
    if not exact("type", kind) or not exact("scope", str(event.get("scope", ""))):
        return False
    if not all(fuzzy(key, actor_id, name) for key in FUZZY_EVENT_KEYS):
        return False
    image = str(attrs.get("name" if kind == "image" else "image", ""))
    if not exact("image", actor_id, image, _strip_tag(actor_id), _strip_tag(image)):
        return False
    if not exact("node", str(attrs.get("node.name", "")), str(attrs.get("node.id", ""))):
        return False
    for wanted in filters.get("label", ()):
        key, sep, value = wanted.partition("=")
        if key not in attrs or (sep and attrs[key] != value):
            return False
    return True


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


def event_time(event: dict[str, Any]) -> int:
    """An event's time in nanoseconds (old engines send only seconds)."""
    nano = event.get("timeNano")
    if nano:
        return int(nano)
    return int(event.get("time") or 0) * NANO


async def event_stream(
    bus: EventBus, since: int | None, until: int | None, filters: dict[str, list[str]]
) -> AsyncIterator[bytes]:
    """Past events from the bus history (with `since` or `until`, as Docker replays its
    buffer), then live ones until `until`; each once, in arrival order."""
    # Subscribe and copy the history with no await between: nothing missed or doubled.
    subscription = bus.subscribe()
    backlog: list[dict[str, Any]] = []
    if since is not None or until is not None:
        low = since or 0
        backlog = [
            e
            for e in list(bus.history)
            if low <= event_time(e) and (until is None or event_time(e) <= until)
        ]
    try:
        yield b""
        for event in backlog:
            if event_matches(event, filters):
                yield _encode_event(event)
        if until is not None and until <= time.time_ns():
            return
        iterator = subscription.__aiter__()
        while True:
            timeout = None if until is None else max(until - time.time_ns(), 0) / NANO
            try:
                event = await asyncio.wait_for(iterator.__anext__(), timeout)
            except (StopAsyncIteration, TimeoutError):
                return
            if event_matches(event, filters):
                yield _encode_event(event)
    finally:
        subscription.close()


def _encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def register(router: Router, ctx: ApiContext) -> None:
    async def ping(request: Request, params: dict[str, str]) -> Response:
        return Response(200, b"OK", ping_headers(ctx), "text/plain; charset=utf-8")

    async def version(request: Request, params: dict[str, str]) -> Response:
        return json_response(build_version(ctx))

    async def info(request: Request, params: dict[str, str]) -> Response:
        return json_response(build_info(ctx))

    async def events(request: Request, params: dict[str, str]) -> StreamResponse:
        since = parse_event_time(request.arg("since"), "since")
        until = parse_event_time(request.arg("until"), "until")
        if since is not None and until is not None and until < since:
            raise HTTPError(
                400,
                f"`since` time ({request.arg('since')}) cannot be after "
                f"`until` time ({request.arg('until')})",
            )
        filters = parse_filters(request.arg("filters"))
        return StreamResponse(200, event_stream(ctx.cluster.bus, since, until, filters))

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
