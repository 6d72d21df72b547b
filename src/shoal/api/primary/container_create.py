"""`POST /containers/create`: the body checked as dockerd checks it, then scheduled, with
classic Swarm's second chance when the chosen node lacks the image."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.validation import CONTAINER_CREATE, read_body
from shoal.cluster.cluster import Cluster, Created
from shoal.cluster.errors import EngineError, is_image_missing
from shoal.scheduler.labels import build_container_config, rules_from_config

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
LEGACY_HOST_FIELDS = ("Memory", "MemorySwap", "CpuShares", "Cpuset")


def image_retry_affinity(cluster: Cluster, config: dict[str, Any], exc: EngineError) -> str | None:
    """Classic Swarm's second chance for a create whose image is missing on the chosen node
    (cluster/swarm/cluster.go, `CreateContainer`): when some node holds the image and no
    hard `node==` constraint pins the container, a hard `image==<image>` affinity for the
    scheduler (never stored in the container); else None."""
    image = str(config.get("Image") or "")
    if not image or not is_image_missing(exc):
        return None
    if any(
        c.replace(" ", "").startswith("node==") and not c.replace(" ", "").startswith("node==~")
        for c in rules_from_config(config, "constraint")
    ):
        return None
    if not any(e.image_index.find(image) is not None for e in cluster.healthy_engines()):
        return None
    return f"image=={image}"


def check_body(body: dict[str, Any]) -> None:
    """Move the pre-1.18 host fields into HostConfig (types were checked on decoding)."""
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


async def create_container(ctx: ApiContext, request: Request, params: Params) -> Response:
    body = await read_body(request, CONTAINER_CREATE)
    name = request.arg("name")
    if name and not NAME_RE.match(name):
        raise HTTPError(
            400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    check_body(body)
    try:
        config = build_container_config(body)
    except (ValueError, TypeError) as exc:
        raise HTTPError(500, str(exc)) from None
    auth = request.headers.get("X-Registry-Auth")
    created = await create_with_image_retry(ctx.cluster, config, name, auth)
    return json_response({"Id": created.container.id, "Warnings": created.warnings}, 201)


async def create_with_image_retry(
    cluster: Cluster, config: dict[str, Any], name: str | None, auth: str | None
) -> Created:
    try:
        return await cluster.create_container(copy.deepcopy(config), name, auth)
    except EngineError as exc:
        affinity = image_retry_affinity(cluster, config, exc)
        if affinity is None:
            raise
        log.info("Create failed (%s); retrying where the image %s is", exc, config["Image"])
        return await cluster.create_container(
            copy.deepcopy(config), name, auth, affinities=[affinity]
        )
