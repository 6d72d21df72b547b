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
from shoal.cluster.records import bytes_size

SERVER_VERSION = f"shoal/{__version__}"


def ping_headers(ctx: ApiContext) -> list[tuple[str, str]]:
    return [
        ("Api-Version", ctx.api_version()),
        ("Ostype", "linux"),
        ("Docker-Experimental", "true" if ctx.experimental else "false"),
        ("Swarm", "inactive"),
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


def parse_event_time(value: str | None, name: str) -> float | None:
    """`since`/`until` as Docker takes them: unix seconds (with fraction) or RFC 3339."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPError(400, f"invalid value for {name}: {value!r}") from None


def event_matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's `/events` filters, plus `node` (the node's name or ID)."""
    if not filters:
        return True
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    kind = event.get("Type") or "container"
    action = str(event.get("Action") or event.get("status") or "")
    checks: dict[str, set[str]] = {
        "type": {kind},
        "event": {action, action.split(":", 1)[0]},
        "node": {attrs.get("node.name", ""), attrs.get("node.id", "")},
        "scope": {str(event.get("scope", "local"))},
    }
    oid = str(actor.get("ID") or event.get("id") or "")
    name = attrs.get("name", "")
    if kind == "container":
        checks["container"] = {oid, oid[:12], name}
        checks["image"] = {attrs.get("image", ""), str(event.get("from", "")).split(" ")[0]}
    elif kind == "image":
        checks["image"] = {oid, name}
    elif kind == "network":
        checks["network"] = {oid, name}
    elif kind == "volume":
        checks["volume"] = {oid}
    for key, wanted in filters.items():
        if key == "label":
            if not any(
                attrs.get(w.partition("=")[0]) == w.partition("=")[2]
                if "=" in w
                else w in attrs
                for w in wanted
            ):
                return False
            continue
        have = checks.get(key)
        if have is None:
            if key in ("container", "image", "network", "volume", "daemon", "plugin"):
                return False
            continue
        if not any(w in have or (key == "container" and oid.startswith(w)) for w in wanted):
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


def event_time(event: dict[str, Any]) -> float:
    nano = event.get("timeNano")
    if nano:
        return float(nano) / 1e9
    return float(event.get("time") or 0)


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
        filters = parse_filters(request.arg("filters"))
        bus = ctx.cluster.bus
        # Subscribe and copy the history with no await between: no event is missed or doubled.
        subscription = bus.subscribe()
        backlog = [
            e
            for e in list(bus.history)
            if since is not None and event_time(e) >= since
        ]

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b""
                for event in backlog:
                    if until is not None and event_time(event) > until:
                        return
                    if event_matches(event, filters):
                        yield json.dumps(event).encode() + b"\n"
                if until is not None and until <= time.time():
                    return
                iterator = subscription.__aiter__()
                while True:
                    timeout = None if until is None else max(until - time.time(), 0)
                    try:
                        event = await asyncio.wait_for(iterator.__anext__(), timeout)
                    except (StopAsyncIteration, TimeoutError):
                        return
                    if until is not None and event_time(event) > until:
                        return
                    if event_matches(event, filters):
                        yield json.dumps(event).encode() + b"\n"
            finally:
                subscription.close()

        return StreamResponse(200, stream())

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
