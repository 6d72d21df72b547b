"""`/_ping`, `/version`, `/info` and `/events`: the cluster described as one engine."""

from __future__ import annotations

import os
import platform
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shoal import __version__
from shoal.api.http import Request, Response, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.encoding import dumps
from shoal.api.primary.fanout import Policy, fan_out, healthy_engines
from shoal.api.primary.filters import query_args
from shoal.api.primary.image_list import add_counts
from shoal.cluster.engine import Engine, EngineState
from shoal.cluster.records import bytes_size
from shoal.cluster.views import NodeTotals

#: Classic Swarm's version: scripts and Swarm tooling detect a Swarm manager by its prefix.
SERVER_VERSION = "swarm/1.2.9"
#: Shoal's own name and version, shown next to it in `/version`.
SHOAL_VERSION = f"shoal/{__version__}"


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


def engine_status_lines(engine: Engine, totals: NodeTotals | None = None) -> list[list[str]]:
    """The indented per-node block of classic Swarm's `docker info` ."""
    if totals is None:
        totals = NodeTotals.of(engine.containers.values())
    total = totals.total
    if engine.healthy:
        running, paused = totals.running, totals.paused
        stopped = total - running - paused
        count = f"{total} ({running} Running, {paused} Paused, {stopped} Stopped)"
    else:
        count = str(total)
    used_cpus = totals.reserved_cpus
    used_memory = totals.reserved_memory
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


def status_header(ctx: ApiContext, nodes: int) -> list[list[str]]:
    """Classic Swarm's `SystemStatus` pairs before the node blocks."""
    role, primary = ctx.role()
    status: list[list[str]] = [["Role", role]]
    if primary:
        status.append(["Primary", primary])
    status += [
        ["Strategy", ctx.strategy],
        ["Filters", ", ".join(ctx.filters)],
        ["Nodes", str(nodes)],
    ]
    if ctx.cluster.discovery_error:
        status.append(["Discovery Error", ctx.cluster.discovery_error])
    return status


def system_status(ctx: ApiContext, engines: list[Engine]) -> list[list[str]]:
    """Classic Swarm's `SystemStatus` pairs: role, strategy, filters, then one block a node."""
    status = status_header(ctx, len(engines))
    for engine in sorted(engines, key=node_order):
        status += engine_status_lines(engine)
    return status


def count_images(per_engine: Iterable[tuple[str, ...]]) -> int:
    """`Images` from what `image_keys` gives for each active engine: counted as
    `GET /images/json?all=1` lists them, once per image ID, untagged included."""
    return len({key for keys in per_engine for key in keys})


def image_keys(engine: Engine) -> tuple[str, ...]:
    """The images of one engine that `/info` counts."""
    return tuple(i.id for i in engine.images)


def build_info(ctx: ApiContext) -> dict[str, Any]:
    """`/info` worked out from scratch: what `info_body` must always agree with."""
    cluster = ctx.cluster
    engines = [e for e in cluster.all_engines() if e.state is not EngineState.DISCONNECTED]
    active = [e for e in engines if e.state is not EngineState.PENDING]
    containers = [c for e in active for c in e.containers.values()]
    running = sum(1 for c in containers if c.running and not c.state.get("Paused"))
    paused = sum(1 for c in containers if c.state.get("Paused"))
    totals = InfoTotals(
        containers=len(containers),
        running=running,
        paused=paused,
        images=count_images(image_keys(e) for e in active),
        cpus=sum(e.total_cpus for e in active),
        memory=sum(e.total_memory for e in active),
    )
    head, tail = info_fields(ctx, totals)
    return {**head, "SystemStatus": system_status(ctx, engines), **tail}


@dataclass(slots=True)
class InfoTotals:
    """The cluster-wide figures of `/info`."""

    containers: int
    running: int
    paused: int
    images: int
    cpus: int
    memory: int


def info_fields(ctx: ApiContext, totals: InfoTotals) -> tuple[dict[str, Any], dict[str, Any]]:
    """`/info` before and after `SystemStatus` (the per-node part, rendered apart)."""
    uname = platform.uname()
    head = {
        "ID": "",
        "Containers": totals.containers,
        "ContainersRunning": totals.running,
        "ContainersPaused": totals.paused,
        "ContainersStopped": totals.containers - totals.running - totals.paused,
        "Images": totals.images,
        "Driver": "",
        "DriverStatus": None,
    }
    tail = {
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
        "NEventsListener": ctx.cluster.bus.listeners,
        "KernelVersion": uname.release or "<unknown>",
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "",
        "NCPU": totals.cpus,
        "MemTotal": totals.memory,
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
    return head, tail


def node_order(engine: Engine) -> tuple[Any, ...]:
    """Node blocks by name, `node-2` before `node-10`; the address breaks ties."""
    return (natural_key(engine.name), engine.addr)


def node_block(engine: Engine, totals: NodeTotals) -> bytes:
    """ENGINE's encoded `SystemStatus` pairs, to join between the others' ."""
    return dumps(engine_status_lines(engine, totals))[1:-1]


def info_body(ctx: ApiContext) -> bytes:
    """`/info` from the kept tally, patched with the engines that changed since the last
    read, and joined from the encoded pieces."""
    cluster = ctx.cluster
    tally = cluster.views.info(cluster.is_member, node_block, node_order)
    totals = InfoTotals(
        tally.containers, tally.running, tally.paused, tally.images, tally.cpus, tally.memory
    )
    head, tail = info_fields(ctx, totals)
    status = dumps(status_header(ctx, tally.nodes))
    parts = [dumps(head)[:-1], b',"SystemStatus":', status[:-1]]
    for block in tally.blocks():
        parts.append(b",")
        parts.append(block)
    parts += [b"],", dumps(tail)[1:], b"\n"]
    return b"".join(parts)


def build_version(ctx: ApiContext) -> dict[str, Any]:
    uname = platform.uname()
    answer: dict[str, Any] = {
        "Platform": {"Name": SHOAL_VERSION},
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
    # The CLI shows the components when there are any: the Swarm version first, as `Engine`.
    details = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in answer.items()
        if k not in ("Platform", "Version")
    }
    answer["Components"] = [
        {"Name": "Engine", "Version": SERVER_VERSION, "Details": details},
        {"Name": "shoal", "Version": __version__, "Details": {}},
    ]
    return answer


async def ping(ctx: ApiContext, request: Request, params: Params) -> Response:
    return Response(200, b"OK", ping_headers(ctx), "text/plain; charset=utf-8")


async def version(ctx: ApiContext, request: Request, params: Params) -> Response:
    return json_response(build_version(ctx))


async def info(ctx: ApiContext, request: Request, params: Params) -> Response:
    return Response(200, info_body(ctx), [])


async def system_df(ctx: ApiContext, request: Request, params: Params) -> Response:
    """`docker system df` over the cluster (classic Swarm had none)."""
    query = query_args(request)
    results = await fan_out(
        healthy_engines(ctx.cluster),
        lambda e: e.call("GET", "/system/df", params=query or None, timeout=None),
        Policy.ALL,
    )
    return json_response(merge_df(results))


def merge_df(results: Sequence[tuple[Engine, Any]]) -> dict[str, Any]:
    """`/system/df` of several engines: images merged by ID, containers and local volumes
    named with their node as `docker ps` and `docker volume ls` show them."""
    layers = 0
    images: dict[str, dict[str, Any]] = {}
    containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    build_cache: list[Any] = []
    for engine, result in results:
        data = result or {}
        layers += int(data.get("LayersSize") or 0)
        for image in data.get("Images") or []:
            _merge_df_image(images, image)
        for container in data.get("Containers") or []:
            item = dict(container)
            item["Names"] = [f"/{engine.name}{n}" for n in item.get("Names") or []]
            containers.append(item)
        for volume in data.get("Volumes") or []:
            item = dict(volume)
            if item.get("Driver", "local") == "local":
                item["Name"] = f"{engine.name}/{item.get('Name', '')}"
            volumes.append(item)
        build_cache.extend(data.get("BuildCache") or [])
    return {
        "LayersSize": layers,
        "Images": sorted(images.values(), key=lambda i: i.get("Created", 0), reverse=True),
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": build_cache,
    }


def _merge_df_image(images: dict[str, dict[str, Any]], image: dict[str, Any]) -> None:
    entry = images.get(image.get("Id", ""))
    if entry is None:
        images[image.get("Id", "")] = dict(image)
        return
    for key in ("RepoTags", "RepoDigests"):
        values = entry.get(key) or []
        entry[key] = values + [v for v in image.get(key) or [] if v not in values]
    entry["Containers"] = add_counts(entry.get("Containers"), image.get("Containers"))
