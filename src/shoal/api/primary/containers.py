"""Container routes: listed and inspected from the cache, created through the scheduler,
everything else passed to the engine that runs the container."""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import time
from typing import Any
from urllib.parse import urlencode

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.images import gather_calls, merge_prune
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
from shoal.api.validation import CONTAINER_CREATE, CONTAINER_UPDATE_BODY, EXEC_CREATE, read_body
from shoal.cluster.client import EngineConnectionError, EngineError
from shoal.cluster.cluster import Cluster, Conflict, Placed
from shoal.cluster.engine import Engine
from shoal.scheduler.errors import SchedulerError
from shoal.scheduler.labels import (
    AFFINITIES_LABEL,
    build_container_config,
    go_json_list,
    parse_label_list,
    rules_from_config,
)

log = logging.getLogger("shoal.api")

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
UNSPECIFIED_IPS = ("", "0.0.0.0", "::")
LEGACY_HOST_FIELDS = ("Memory", "MemorySwap", "CpuShares", "Cpuset")


def public_ports(ports: list[dict[str, Any]], engine: Engine) -> list[dict[str, Any]]:
    """Ports bound to every interface are reachable at the engine's address.

    The IPv4 and IPv6 wildcard bindings of one port then read the same: shown once.
    """
    out: list[dict[str, Any]] = []
    for port in ports:
        if "PublicPort" in port and port.get("IP", "") in UNSPECIFIED_IPS:
            port["IP"] = engine.ip
        if port not in out:
            out.append(port)
    return out


def public_bindings(bindings: list[dict[str, Any]], engine: Engine) -> list[dict[str, Any]]:
    """Inspect's bindings of one port with wildcard addresses made the engine's (deduped)."""
    out: list[dict[str, Any]] = []
    for b in bindings:
        if b.get("HostIp", "") in UNSPECIFIED_IPS:
            b = {**b, "HostIp": engine.ip}
        if b not in out:
            out.append(b)
    return out


def list_entry(placed: Placed, now: float) -> dict[str, Any]:
    engine = placed.engine
    entry = placed.container.summary(now)
    entry["Names"] = [f"/{engine.name}{n}" for n in entry["Names"]]
    entry["Ports"] = public_ports(entry["Ports"], engine)
    if not engine.healthy:
        entry["Status"] = "Host Down"
    return entry


#: Filter keys of `GET /containers/json`: the engine's, plus classic Swarm's `node`.
PS_FILTERS = frozenset(
    {
        "ancestor",
        "before",
        "expose",
        "exited",
        "health",
        "id",
        "is-task",
        "isolation",
        "label",
        "name",
        "network",
        "publish",
        "since",
        "status",
        "volume",
        "node",
    }
)
HEALTH_STATES = ("starting", "healthy", "unhealthy", "none")


def validate_list_filters(filters: dict[str, list[str]]) -> None:
    """Refuse what an engine refuses, with its texts, before any container is looked at."""
    for key, values in filters.items():
        if key not in PS_FILTERS:
            raise HTTPError(400, f"invalid filter '{key}'")
        for value in values:
            if key == "status" and value not in STATUSES:
                raise HTTPError(400, f"Invalid filter 'status={value}'")
            if key == "health" and value not in HEALTH_STATES:
                raise HTTPError(400, f"Unrecognised filter value for health: {value}")
            if key == "exited":
                try:
                    int(value)
                except ValueError:
                    raise HTTPError(400, f"invalid filter 'exited={value}'") from None
            if key == "is-task" and value not in ("true", "false"):
                raise HTTPError(400, f"Invalid filter 'is-task={value}'")


def ancestor_ids(engine: Engine, refs: list[str]) -> set[str]:
    """IDs of the images `refs` name on `engine` and of every image built on top of them,
    as an engine's `ancestor` filter resolves them."""
    found = {i.id for i in engine.images if any(i.matches(r) for r in refs)}
    parents = {i.id: str(i.summary.get("ParentId") or "") for i in engine.images}
    changed = bool(found)
    while changed:
        changed = False
        for image_id, parent in parents.items():
            if parent in found and image_id not in found:
                found.add(image_id)
                changed = True
    return found


def _port_matches(values: list[str], ports: list[dict[str, Any]], field: str) -> bool:
    for value in values:
        port, _, proto = value.partition("/")
        for p in ports:
            if str(p.get(field, "")) == port and (not proto or p.get("Type") == proto):
                return True
    return False


def match_list_filters(
    placed: Placed,
    filters: dict[str, list[str]],
    refs: dict[str, float],
    ancestors: dict[int, set[str]] | None = None,
) -> bool:
    """`docker ps --filter` as an engine applies it, plus classic Swarm's `node`."""
    c = placed.container
    for key, values in filters.items():
        if key == "name":
            # The engine matches "/name"; classic Swarm matched the bare name: take both.
            names = (c.name, c.name.lstrip("/"))
            if not any(_search(v, n) for v in values for n in names):
                return False
        elif key == "id":
            if not any(c.id.startswith(v) or _search(v, c.id) for v in values):
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
            image_id = str(c.inspect.get("Image", ""))
            if ancestors is not None:
                if image_id not in ancestors.get(id(placed.engine), set()):
                    return False
            elif not any(v in (c.image, image_id) for v in values):
                return False
        elif key == "publish":
            if not _port_matches(values, c.summary(0)["Ports"], "PublicPort"):
                return False
        elif key == "expose":
            if not _port_matches(values, c.summary(0)["Ports"], "PrivatePort"):
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


def image_retry_config(
    cluster: Cluster, config: dict[str, Any], exc: EngineError
) -> dict[str, Any] | None:
    """Classic Swarm's second chance for a create whose image is missing on the chosen node
    (spec 3.5, retry b): when some node holds the image and no hard `node==` constraint
    pins the container, the config with a hard `image==<image>` affinity; else None."""
    image = str(config.get("Image") or "")
    if not image or exc.status in (400, 409):
        return None
    if any(
        c.replace(" ", "").startswith("node==") and not c.replace(" ", "").startswith("node==~")
        for c in rules_from_config(config, "constraint")
    ):
        return None
    if not any(e.image_index.find(image) is not None for e in cluster.healthy_engines()):
        return None
    retry = copy.deepcopy(config)
    labels = dict(retry.get("Labels") or {})
    affinities = [*parse_label_list(labels.get(AFFINITIES_LABEL)), f"image=={image}"]
    labels[AFFINITIES_LABEL] = go_json_list(affinities)
    retry["Labels"] = labels
    return retry


def _search(pattern: str, text: str) -> bool:
    # Linear-time Go regexes: Python's `re` backtracks, and a client's pattern ran on the loop.
    from shoal.textmatch import search

    found = search(pattern, text)
    return pattern in text if found is None else found


def register(router: Router, ctx: ApiContext) -> None:
    cluster = ctx.cluster

    async def list_containers(request: Request, params: dict[str, str]) -> Response:
        filters = parse_filters(request.arg("filters"))
        show_all = request.flag("all")
        try:
            limit = int(request.arg("limit") or "-1")
        except ValueError:
            raise HTTPError(400, "invalid value for limit") from None
        validate_list_filters(filters)
        refs: dict[str, float] = {}
        for key in ("before", "since"):
            ref = request.arg(key) or next(iter(filters.get(key) or []), None)
            if ref:
                refs[key] = find(cluster, ref).container.created
                filters[key] = [ref]
        if "status" in filters:
            show_all = True  # as on an engine: a status filter looks at every container
        if limit > 0 or refs:
            show_all = True
        ancestors = None
        if "ancestor" in filters:
            ancestors = {
                id(e): ancestor_ids(e, filters["ancestor"]) for e in cluster.active_engines()
            }
        now = time.time()
        chosen = [
            p
            for p in cluster.containers()
            if (show_all or (p.container.running and p.engine.healthy))
            and match_list_filters(p, filters, refs, ancestors)
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
        body = await read_body(request, CONTAINER_CREATE)
        name = request.arg("name")
        if name and not NAME_RE.match(name):
            raise HTTPError(
                400,
                f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
            )
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
            placed = await create_with_image_retry(
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

    async def create_with_image_retry(
        config: dict[str, Any], name: str | None, auth: str | None
    ) -> Placed:
        try:
            return await cluster.create_container(copy.deepcopy(config), name, auth)
        except EngineError as exc:
            retry = image_retry_config(cluster, config, exc)
            if retry is None:
                raise
            log.info("Create failed (%s); retrying where the image %s is", exc, config["Image"])
            return await cluster.create_container(retry, name, auth)

    async def commit(request: Request, params: dict[str, str]) -> Response | StreamResponse:
        """`docker commit` on the container's node; the new image is then cached there."""
        ref = request.arg("container") or ""
        placed = find_healthy(cluster, ref)
        pairs = [
            (k, placed.container.id if k == "container" else v)
            for k, values in request.query.items()
            for v in values
        ]
        prefix = f"/v{request.api_version}" if request.api_version else ""
        target = f"{prefix}/commit?{urlencode(pairs)}"
        engine = placed.engine

        async def after() -> None:
            with contextlib.suppress(EngineError, EngineConnectionError):
                await engine.refresh_images()

        return await forward(engine, request, target, after=after)

    async def prune(request: Request, params: dict[str, str]) -> Response:
        """`docker container prune` on every healthy node: deletions joined, space summed."""
        query = {k: v[0] for k, v in request.query.items() if v}
        engines = cluster.healthy_engines()
        results = await gather_calls(
            engines, lambda e: e.call("POST", "/containers/prune", params=query, timeout=None)
        )
        for engine in engines:
            with contextlib.suppress(EngineError, EngineConnectionError):
                await engine.refresh_containers()
        return json_response(merge_prune(results, "ContainersDeleted"))

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
                port: public_bindings(bindings, placed.engine) if bindings else bindings
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

    async def update(request: Request, params: dict[str, str]) -> Any:
        find_healthy(cluster, params["name"])  # classic Swarm: 404 before the body is read
        await read_body(request, CONTAINER_UPDATE_BODY)
        return await proxied(refresh=True)(request, params)

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
        body = await read_body(request, EXEC_CREATE)
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
    router.add("POST", "/containers/prune", prune)
    router.add("POST", "/commit", commit)
    router.add("GET", "/containers/{name:.*}/json", inspect)
    router.add("POST", "/containers/{name:.*}/start", start)
    for action in ("stop", "kill", "restart", "pause", "unpause", "wait"):
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
    router.add("POST", "/containers/{name:.*}/update", update)
    router.add("POST", "/containers/{name:.*}/rename", rename)
    router.add("POST", "/containers/{name:.*}/attach", attach)
    router.add("GET", "/containers/{name:.*}/attach/ws", attach)
    router.add("POST", "/containers/{name:.*}/exec", exec_create)
    router.add("DELETE", "/containers/{name:.*}", remove)
