"""Container routes: listed and inspected from the cache, created through the scheduler,
everything else passed to the engine that runs the container."""

from __future__ import annotations

import re
import time
from typing import Any

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.proxy import (
    container_path,
    find,
    find_healthy,
    forward,
    hijack,
    rewrite_target,
)
from shoal.api.primary.system import parse_filters
from shoal.api.router import RouteHandler, Router
from shoal.cluster.client import EngineConnectionError, EngineError
from shoal.cluster.cluster import Conflict, Placed
from shoal.cluster.engine import Engine
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.labels import build_container_config

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
UNSPECIFIED_IPS = ("", "0.0.0.0", "::")
LEGACY_HOST_FIELDS = ("Memory", "MemorySwap", "CpuShares", "Cpuset")


def public_ports(ports: list[dict[str, Any]], engine: Engine) -> list[dict[str, Any]]:
    """Ports bound to every interface are reachable at the engine's address."""
    for port in ports:
        if "PublicPort" in port and port.get("IP", "") in UNSPECIFIED_IPS:
            port["IP"] = engine.ip
    return ports


def list_entry(placed: Placed, now: float) -> dict[str, Any]:
    engine = placed.engine
    entry = placed.container.summary(now)
    entry["Names"] = [f"/{engine.name}{n}" for n in entry["Names"]]
    entry["Ports"] = public_ports(entry["Ports"], engine)
    if not engine.healthy:
        entry["Status"] = "Host Down"
    return entry


def match_list_filters(
    placed: Placed, filters: dict[str, list[str]], refs: dict[str, float]
) -> bool:
    """`docker ps --filter` as an engine applies it, plus classic Swarm's `node`."""
    c = placed.container
    for key, values in filters.items():
        if key == "name":
            name = c.name.lstrip("/")
            if not any(_search(v, name) for v in values):
                return False
        elif key == "id":
            if not any(c.id.startswith(v) for v in values):
                return False
        elif key == "label":
            labels = c.labels
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        elif key == "status":
            if c.status not in values:
                return False
        elif key == "node":
            if not any(
                _search(v, placed.engine.name) or v == placed.engine.id for v in values
            ):
                return False
        elif key == "health":
            health = (c.state.get("Health") or {}).get("Status", "none")
            if health not in values:
                return False
        elif key == "ancestor":
            image = c.image
            if not any(
                v in (image, c.inspect.get("Image", ""))
                or image.split(":")[0] == v
                or c.inspect.get("Image", "").removeprefix("sha256:").startswith(
                    v.removeprefix("sha256:")
                )
                for v in values
            ):
                return False
        elif key == "exited":
            code = str(c.state.get("ExitCode", ""))
            if c.running or code not in values:
                return False
        elif key == "network":
            networks = (c.inspect.get("NetworkSettings") or {}).get("Networks") or {}
            ids = [n.get("NetworkID", "") for n in networks.values()]
            if not any(v in networks or any(i.startswith(v) for i in ids) for v in values):
                return False
        elif key == "volume":
            mounts = c.inspect.get("Mounts") or []
            if not any(
                v in (m.get("Name"), m.get("Destination"), m.get("Source")) for m in mounts
                for v in values
            ):
                return False
        elif key == "is-task":
            is_task = "com.docker.swarm.task" in c.labels
            if (values[0] == "true") != is_task:
                return False
        elif key == "before":
            if not c.created < refs["before"]:
                return False
        elif key == "since":
            if not c.created > refs["since"]:
                return False
    return True


#: Fields shoal itself reads from a create body, with the JSON types Docker accepts.
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "Image": (str,),
    "Cmd": (list, str),
    "Entrypoint": (list, str),
    "Env": (list,),
    "Labels": (dict,),
    "HostConfig": (dict,),
    "NetworkingConfig": (dict,),
    "ExposedPorts": (dict,),
}


def check_config_types(body: dict[str, Any]) -> None:
    """Refuse a body whose fields have the wrong JSON types, as dockerd's decoder would."""
    for key, types in CONFIG_TYPES.items():
        value = body.get(key)
        if value is not None and not isinstance(value, types):
            raise HTTPError(
                400, f"json: cannot unmarshal {type(value).__name__} into field {key}"
            )
    env = body.get("Env") or []
    if not all(isinstance(e, str) for e in env):
        raise HTTPError(400, "json: cannot unmarshal non-string into field Env")
    labels = body.get("Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise HTTPError(400, "json: cannot unmarshal non-string into field Labels")


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_containers(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        show_all = request.flag("all")
        try:
            limit = int(request.arg("limit") or "-1")
        except ValueError:
            raise HTTPError(400, "invalid value for limit") from None
        refs: dict[str, float] = {}
        for key in ("before", "since"):
            ref = request.arg(key) or next(iter(filters.get(key) or []), None)
            if ref:
                refs[key] = find(cluster, ref).container.created
                filters[key] = [ref]
        if "status" in filters:
            for value in filters["status"]:
                if value not in STATUSES:
                    raise HTTPError(400, f"Invalid filter 'status={value}'")
            if any(v != "running" for v in filters["status"]):
                show_all = True
        if limit > 0 or refs:
            show_all = True
        now = time.time()
        chosen = [
            p
            for p in cluster.containers()
            if (show_all or (p.container.running and p.engine.healthy))
            and match_list_filters(p, filters, refs)
        ]
        chosen.sort(key=lambda p: p.container.created, reverse=True)
        if limit > 0:
            chosen = chosen[:limit]
        out = [list_entry(p, now) for p in chosen]
        if request.flag("size") and out:
            await add_sizes(chosen, out)
        return json_response(out)

    async def add_sizes(chosen: list[Placed], out: list[dict[str, Any]]) -> None:
        """Sizes cost the engine a disk walk, so they are fetched only when asked for."""
        sizes: dict[str, dict[str, Any]] = {}
        for engine in {id(p.engine): p.engine for p in chosen}.values():
            try:
                listing = await engine.call(
                    "GET", "/containers/json", params={"all": "1", "size": "1"}
                )
            except (EngineError, EngineConnectionError):
                continue
            for item in listing or []:
                sizes[item["Id"]] = item
        for entry in out:
            item = sizes.get(entry["Id"])
            if item:
                entry["SizeRw"] = item.get("SizeRw", 0)
                entry["SizeRootFs"] = item.get("SizeRootFs", 0)

    async def create(request: Request, params: dict[str, str]) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid JSON: a container config object is required")
        name = request.arg("name")
        if name and not NAME_RE.match(name):
            raise HTTPError(
                400,
                f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
            )
        check_config_types(body)
        if not body.get("Image"):
            raise HTTPError(400, "No image specified")
        host_config = body.get("HostConfig")
        if host_config is None:
            host_config = body["HostConfig"] = {}
        if not isinstance(host_config, dict):
            raise HTTPError(400, "invalid JSON: HostConfig must be an object")
        for key in LEGACY_HOST_FIELDS:
            if body.get(key):
                host_config[key] = body.pop(key)
        try:
            config = build_container_config(body)
        except (ValueError, TypeError) as exc:
            raise HTTPError(500, str(exc)) from None
        try:
            placed = await cluster.create_container(
                config, name, request.headers.get("X-Registry-Auth")
            )
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
        except SchedulerError as exc:
            raise HTTPError(500, str(exc)) from None
        except EngineError as exc:
            raise HTTPError(exc.status, exc.message) from None
        except EngineConnectionError as exc:
            raise HTTPError(500, str(exc)) from None
        warnings: list[str] = []
        return json_response({"Id": placed.container.id, "Warnings": warnings}, 201)

    async def inspect(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        ref = params["name"]
        placed = find_healthy(cluster, ref)
        if request.flag("size"):
            target = rewrite_target(request, container_path(request, ref, placed.container.id))
            return await forward(placed.engine, request, target)
        data = dict(placed.container.inspect)
        data["Node"] = placed.engine.node_json()
        settings = data.get("NetworkSettings")
        if settings and settings.get("Ports"):
            settings = dict(settings)
            settings["Ports"] = {
                port: [
                    {**b, "HostIp": placed.engine.ip}
                    if b.get("HostIp", "") in UNSPECIFIED_IPS
                    else b
                    for b in bindings
                ]
                if bindings
                else bindings
                for port, bindings in settings["Ports"].items()
            }
            data["NetworkSettings"] = settings
        return json_response(data)

    async def start(request: Request, params: dict[str, str]) -> Response:
        ref = params["name"]
        placed = find(cluster, ref)
        await request.body()
        query = {k: v[0] for k, v in request.query.items() if v}
        try:
            await placed.engine.call(
                "POST", f"/containers/{placed.container.id}/start", params=query or None
            )
        except EngineError as exc:
            if exc.status == 304:
                return Response(304, b"", [], None)
            raise HTTPError(exc.status, exc.message) from None
        except EngineConnectionError as exc:
            raise HTTPError(500, str(exc)) from None
        try:
            await placed.engine.refresh_container(placed.container.id)
        except (EngineError, EngineConnectionError):
            pass
        return Response(204, b"", [], None)

    def proxied(refresh: bool, healthy: bool = True) -> RouteHandler:
        """A route passed through to the container's engine (`proxy` and `proxy+refresh`)."""

        async def handle(request: Request, params: dict[str, str]) -> Response | StreamResponse:
            ref = params["name"]
            placed = find_healthy(cluster, ref) if healthy else find(cluster, ref)
            cid = placed.container.id
            target = rewrite_target(request, container_path(request, ref, cid))
            after = None
            if refresh:
                engine = placed.engine

                async def after() -> None:
                    await engine.refresh_container(cid)

            return await forward(placed.engine, request, target, after=after)

        return handle

    async def remove(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        ref = params["name"]
        placed = find(cluster, ref)
        engine = placed.engine
        cid = placed.container.id
        target = rewrite_target(request, container_path(request, ref, cid))
        response = await forward(engine, request, target)
        if response.status < 300:
            engine.forget_container(cid)
        return response

    async def rename(request: Request, params: dict[str, str]) -> Any:
        ref = params["name"]
        placed = find_healthy(cluster, ref)
        new_name = request.arg("name") or ""
        taken = cluster.name_taken(new_name)
        if taken is not None and taken.id != placed.container.id:
            raise HTTPError(
                409,
                f'Conflict. The container name "/{new_name.lstrip("/")}" is already in use '
                f'by container "{taken.id}". You have to remove (or rename) that container '
                "to be able to reuse that name.",
            )
        handler: RouteHandler = proxied(refresh=True)
        return await handler(request, params)

    async def attach(request: Request, params: dict[str, str]) -> Any:
        ref = params["name"]
        placed = find_healthy(cluster, ref)
        target = rewrite_target(request, container_path(request, ref, placed.container.id))
        if request.is_upgrade or request.path.endswith("/attach/ws"):
            return hijack(placed.engine, target)
        return await forward(placed.engine, request, target)

    async def exec_create(request: Request, params: dict[str, str]) -> Response:
        ref = params["name"]
        placed = find(cluster, ref)
        body = await request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid JSON: an exec config object is required")
        if not body.get("Cmd"):
            raise HTTPError(400, "No exec command specified")
        try:
            created = await placed.engine.call(
                "POST", f"/containers/{placed.container.id}/exec", body=body
            )
        except EngineError as exc:
            raise HTTPError(exc.status, exc.message) from None
        except EngineConnectionError as exc:
            raise HTTPError(500, str(exc)) from None
        cluster.execs[created["Id"]] = placed.container.id
        return json_response(created, 201)

    router.add("GET", "/containers/json", list_containers)
    router.add("GET", "/containers/ps", list_containers)
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/{name:.*}/json", inspect)
    router.add("POST", "/containers/{name:.*}/start", start)
    for action in ("stop", "kill", "restart", "pause", "unpause", "update", "wait"):
        router.add("POST", f"/containers/{{name:.*}}/{action}", proxied(refresh=True))
    for method, action in (
        ("GET", "logs"),
        ("GET", "top"),
        ("GET", "stats"),
        ("GET", "changes"),
        ("GET", "export"),
        ("GET", "archive"),
        ("HEAD", "archive"),
        ("PUT", "archive"),
        ("POST", "resize"),
        ("POST", "copy"),
    ):
        router.add(method, f"/containers/{{name:.*}}/{action}", proxied(refresh=False))
    router.add("POST", "/containers/{name:.*}/rename", rename)
    router.add("POST", "/containers/{name:.*}/attach", attach)
    router.add("GET", "/containers/{name:.*}/attach/ws", attach)
    router.add("POST", "/containers/{name:.*}/exec", exec_create)
    router.add("DELETE", "/containers/{name:.*}", remove)
