"""Creating a scheduled container on an engine: retries, pulls and the in-flight records.

Kept apart from the cluster's indexes and listeners so each module stays small.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.cluster.client import json_objects
from shoal.cluster.engine import Engine
from shoal.cluster.errors import (
    EngineConnectionError,
    EngineError,
    EngineFailure,
    ImagePullFailed,
    is_image_missing,
)
from shoal.cluster.index import Placed
from shoal.scheduler.labels import AFFINITIES_LABEL, go_json_list, parse_label_list

log = logging.getLogger("shoal.cluster.cluster")

#: Classic Swarm's answer to a create whose chosen engine cannot be reached.
CANNOT_CONNECT = "Cannot connect to the docker engine endpoint"


@dataclass(slots=True)
class PendingCreate:
    """A create in flight: concurrent schedules must see its name, ports and resources."""

    name: str
    engine: Engine
    config: dict[str, Any]
    swarm_id: str

    @property
    def display_name(self) -> str:
        """Unnamed creates are keyed by swarm ID; they have no name to reserve."""
        return "" if self.name.startswith("\0") else self.name


@dataclass(slots=True)
class Created(Placed):
    """A container just created, with the engine's warnings about its config."""

    warnings: list[str] = field(default_factory=list)


async def create_on_first(
    tried: Sequence[Engine],
    pending: PendingCreate,
    config: dict[str, Any],
    name: str | None,
    auth: str | None,
) -> Created:
    """Create on each ranked engine in turn until one succeeds; the last failure if none.

    `pending` follows the engine being tried, so concurrent schedules count it there."""
    last: Exception | None = None
    for engine in tried:
        pending.engine = engine
        try:
            return await create_on(engine, config, name, auth)
        except EngineFailure as exc:
            last = exc
            if isinstance(exc, EngineConnectionError):
                log.warning("Engine %s unreachable for a create: %s", engine.name, exc)
                last = EngineConnectionError(CANNOT_CONNECT)
            elif isinstance(exc, EngineError) and exc.status in (400, 409):
                raise
            if engine is not tried[-1]:
                log.warning("Failed to create container: %s, retrying", exc,
                            extra=engine.log_fields)
    assert last is not None
    raise last


async def create_on(
    engine: Engine, config: dict[str, Any], name: str | None, auth: str | None
) -> Created:
    """One create on one engine: CPU shares scaled to its CPUs, the image pulled if missing."""
    body = dict(config)
    host_config = dict(body.get("HostConfig") or {})
    cpus = int(host_config.get("CpuShares") or 0)
    if cpus and engine.specs.cpus:
        # Classic Swarm reads CpuShares as a CPU count and sends real shares.
        host_config["CpuShares"] = -(-cpus * 1024 // engine.specs.cpus)
    body["HostConfig"] = host_config
    params = {"name": name} if name else None
    try:
        created = await engine.call("POST", "/containers/create", params=params, body=body)
    except EngineError as exc:
        if not is_image_missing(exc) or not body.get("Image"):
            raise
        try:
            await pull_on(engine, str(body["Image"]), auth)
        except EngineError as pulled:
            raise ImagePullFailed(pulled.status, pulled.message) from exc
        created = await engine.call("POST", "/containers/create", params=params, body=body)
    container = await engine.refresh_container(created["Id"])
    if container is None:
        raise EngineError(500, "Container created but refresh didn't report it back")
    return Created(engine, container, [str(w) for w in created.get("Warnings") or []])

async def pull_on(engine: Engine, image: str, auth: str | None) -> None:
    """Pull quietly on one engine, draining the progress stream to its end."""
    repo, tag = split_image(image)
    headers = {"X-Registry-Auth": auth} if auth else None
    result = await engine.call(
        "POST",
        "/images/create",
        params={"fromImage": repo, "tag": tag},
        headers=headers,
        timeout=None,
    )
    # The progress stream arrives whole; a failed pull ends with an error message.
    messages = result if isinstance(result, list) else [result]
    if isinstance(result, str):
        messages = [m async for m in json_objects(_once(result.encode()))]
    for message in messages:
        if isinstance(message, dict) and message.get("error"):
            raise EngineError(404, str(message["error"]))
    await engine.refresh_images()


def with_affinities(config: dict[str, Any], affinities: Sequence[str]) -> dict[str, Any]:
    """`config` with extra affinity rules in its labels, for the scheduler's eyes only."""
    if not affinities:
        return config
    labels = dict(config.get("Labels") or {})
    rules = [*parse_label_list(labels.get(AFFINITIES_LABEL)), *affinities]
    labels[AFFINITIES_LABEL] = go_json_list(rules)
    return {**config, "Labels": labels}


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def split_image(image: str) -> tuple[str, str]:
    """`repo[:tag][@digest]` into the fromImage/tag pair of a pull."""
    if "@" in image:
        repo, _, digest = image.partition("@")
        return repo, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"
