"""`GET /containers/json`: the cluster's containers from the cache, filtered as an engine
filters them, plus classic Swarm's `node` filter and node-prefixed names.

Answers are joined from entries encoded once per container change (`ReadViews` slots),
in an order kept sorted as containers come and go; only a Status that went stale ("Up 5
minutes" at minute 6) is worked out again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from shoal.api.http import HTTPError, Request, Response, StreamResponse, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.encoding import dumps
from shoal.api.primary.filters import match_labels, parse_filters, regex_search
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine
from shoal.cluster.errors import EngineFailure
from shoal.cluster.index import Placed
from shoal.cluster.records import container_status, status_stale_at
from shoal.cluster.views import Slot

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
UNSPECIFIED_IPS = ("", "0.0.0.0", "::")
HEALTH_STATES = ("starting", "healthy", "unhealthy", "none")
HOST_DOWN = dumps("Host Down")
#: Keys of a list entry after its Status (encoded apart, so Status can be spliced in).
AFTER_STATUS = ("HostConfig", "NetworkSettings", "Mounts")

#: Bytes of list entries per chunk of a long list: small enough not to matter to memory,
#: big enough that the chunks cost nothing next to the entries.
LIST_CHUNK = 1024 * 1024
#: Filter keys of `GET /containers/json`: the engine's, plus classic Swarm's `node`.
PS_FILTERS = frozenset(
    {
        "ancestor", "before", "expose", "exited", "health", "id", "is-task", "isolation",
        "label", "name", "network", "publish", "since", "status", "volume", "node",
    }
)  # fmt: skip


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
            if key == "exited" and not _is_int(value):
                raise HTTPError(400, f"invalid filter 'exited={value}'")
            if key == "is-task" and value not in ("true", "false"):
                raise HTTPError(400, f"Invalid filter 'is-task={value}'")


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


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


def _matches_name_or_id(placed: Placed, key: str, values: list[str]) -> bool:
    c = placed.container
    if key == "name":
        # The engine matches "/name"; classic Swarm matched the bare name: take both.
        names = (c.name, c.name.lstrip("/"))
        return any(regex_search(v, n) for v in values for n in names)
    if key == "id":
        return any(c.id.startswith(v) or regex_search(v, c.id) for v in values)
    engine = placed.engine
    return any(regex_search(v, engine.name) or v == engine.id for v in values)


def _matches_attachments(placed: Placed, key: str, values: list[str]) -> bool:
    """The `network` and `volume` filters: what the container is attached to."""
    inspect = placed.container.inspect
    if key == "network":
        networks = (inspect.get("NetworkSettings") or {}).get("Networks") or {}
        ids = [n.get("NetworkID", "") for n in networks.values()]
        return any(v in networks or any(i.startswith(v) for i in ids) for v in values)
    mounts = inspect.get("Mounts") or []
    return any(
        v in (m.get("Name"), m.get("Destination"), m.get("Source")) for m in mounts for v in values
    )


def _matches_one(
    placed: Placed, key: str, values: list[str], refs: dict[str, float],
    ancestors: dict[int, set[str]] | None,
) -> bool:  # fmt: skip
    c = placed.container
    if key in ("name", "id", "node"):
        return _matches_name_or_id(placed, key, values)
    if key in ("network", "volume"):
        return _matches_attachments(placed, key, values)
    if key == "label":
        return match_labels(c.labels, values)
    if key == "status":
        return c.status in values
    if key == "health":
        return (c.state.get("Health") or {}).get("Status", "none") in values
    if key == "ancestor":
        image_id = c.image_id
        if ancestors is not None:
            return image_id in ancestors.get(id(placed.engine), set())
        return any(v in (c.image, image_id) for v in values)
    if key in ("publish", "expose"):
        field = "PublicPort" if key == "publish" else "PrivatePort"
        return _port_matches(values, c.summary(0)["Ports"], field)
    if key == "exited":
        return not c.running and str(c.state.get("ExitCode", "")) in values
    if key == "is-task":
        return (values[0] == "true") == ("com.docker.swarm.task" in c.labels)
    if key == "before":
        return c.created < refs["before"]
    if key == "since":
        return c.created > refs["since"]
    return True


def match_list_filters(
    placed: Placed,
    filters: dict[str, list[str]],
    refs: dict[str, float],
    ancestors: dict[int, set[str]] | None = None,
) -> bool:
    """`docker ps --filter` as an engine applies it, plus classic Swarm's `node`."""
    return all(_matches_one(placed, k, v, refs, ancestors) for k, v in filters.items())


def encode_entry(slot: Slot, now: float) -> None:
    """The slot's entry encoded for the engine's current name, its Status left to fill in."""
    entry = list_entry(slot.placed, now)
    del entry["Status"]
    after = {k: entry.pop(k) for k in AFTER_STATUS}
    head = b"," + dumps(entry)[:-1] + b',"Status":'
    tail = b"," + dumps(after)[1:]
    slot.entry = head + b'""' + tail
    slot.status_start = len(head)
    slot.tail_len = len(tail)
    slot.rendered = slot.view.render
    slot.status_until = -1.0


def with_status(slot: Slot, status: bytes) -> bytes:
    """The slot's encoded entry with another encoded Status spliced in."""
    entry = slot.entry
    return entry[: slot.status_start] + status + entry[len(entry) - slot.tail_len :]


def fresh_entry(slot: Slot, now: float) -> bytes:
    """The slot's entry with a current Status, re-encoded only where it went stale."""
    if slot.rendered is not slot.view.render:
        encode_entry(slot, now)
    if now >= slot.status_until:
        state = slot.placed.container.state
        slot.entry = with_status(slot, dumps(container_status(state, now)))
        slot.status_until = status_stale_at(state, now)
    return slot.entry


def entry_chunks(slots: list[Slot], now: float) -> Iterator[bytes]:
    """The JSON array of `slots`' entries, from their encoded pieces, in chunks of about
    `LIST_CHUNK` bytes: a 30,000-container list is 25 MB, which joined in one piece was
    the manager's peak memory."""
    parts: list[bytes] = [b"["]
    size = 1
    lead = 1  # the first entry's leading comma goes
    for slot in slots:
        view = slot.view
        if not view.healthy:
            if slot.rendered is not view.render:
                encode_entry(slot, now)
            piece = with_status(slot, HOST_DOWN)
        elif slot.rendered is view.render and now < slot.status_until:
            piece = slot.entry
        else:
            piece = fresh_entry(slot, now)
        if lead:
            piece, lead = piece[1:], 0
        parts.append(piece)
        size += len(piece)
        if size >= LIST_CHUNK:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(b"]\n")
    yield b"".join(parts)


def entries_response(slots: list[Slot], now: float) -> Response | StreamResponse:
    """One chunk goes with a Content-Length; more are streamed (chunked, as dockerd sends
    a long list) so that no more than a chunk is held at a time."""
    chunks = entry_chunks(slots, now)
    first = next(chunks)
    rest = next(chunks, None)
    if rest is None:
        return Response(200, first, [])

    async def stream() -> AsyncIterator[bytes]:
        yield first
        yield rest
        for chunk in chunks:
            yield chunk

    return StreamResponse(200, stream())


def visible_slots(cluster: Cluster) -> list[Slot]:
    """`Cluster.containers()` newest first, from the kept order."""
    views = cluster.views
    views.engine_views(cluster.all_engines())
    order = views.ordered()
    hidden = views.hidden()
    if not hidden:
        return order
    return [s for s in order if id(s) not in hidden]


async def list_containers(
    ctx: ApiContext, request: Request, params: Params
) -> Response | StreamResponse:
    cluster = ctx.cluster
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
            refs[key] = cluster.find_container(ref).container.created
            filters[key] = [ref]
    # As on an engine: a status filter, a limit or a reference looks at every container.
    show_all = show_all or "status" in filters or limit > 0 or bool(refs)
    ancestors = None
    if "ancestor" in filters:
        ancestors = {id(e): ancestor_ids(e, filters["ancestor"]) for e in cluster.active_engines()}
    chosen = visible_slots(cluster)
    if not show_all:
        chosen = [s for s in chosen if s.running and s.view.healthy]
    if filters:
        chosen = [s for s in chosen if match_list_filters(s.placed, filters, refs, ancestors)]
    if limit > 0:
        chosen = chosen[:limit]
    now = time.time()
    if request.flag("size") and chosen:
        out = [list_entry(s.placed, now) for s in chosen]
        await add_sizes([s.placed for s in chosen], out)
        return json_response(out)
    return entries_response(chosen, now)


async def add_sizes(chosen: list[Placed], out: list[dict[str, Any]]) -> None:
    """Sizes cost the engine a disk walk, so they are fetched only when asked for."""
    sizes: dict[str, dict[str, Any]] = {}
    for engine in {id(p.engine): p.engine for p in chosen}.values():
        try:
            listing = await engine.call("GET", "/containers/json", params={"all": "1", "size": "1"})
        except EngineFailure:
            continue  # sizes are best effort: the list itself is already known
        for item in listing or []:
            sizes[item["Id"]] = item
    for entry in out:
        item = sizes.get(entry["Id"])
        if item:
            entry["SizeRw"] = item.get("SizeRw", 0)
            entry["SizeRootFs"] = item.get("SizeRootFs", 0)
