"""`GET /images/json`: one list for the cluster, an image held by several nodes shown once."""

from __future__ import annotations

import fnmatch
from typing import Any

from shoal.api.http import HTTPError, Request, Response, json_response
from shoal.api.primary.context import ApiContext, Params
from shoal.api.primary.filters import match_labels, parse_filters
from shoal.cluster.cluster import Cluster
from shoal.cluster.records import Image

IMAGE_FILTERS = frozenset({"dangling", "label", "reference", "before", "since", "node"})


def add_counts(a: Any, b: Any) -> Any:
    """Engines report -1 for "not computed"; a sum only where both counted."""
    if isinstance(a, int) and isinstance(b, int) and a >= 0 and b >= 0:
        return a + b
    return a


def created_of(cluster: Cluster, key: str, ref: str) -> int:
    """The `Created` of the image a `before`/`since` filter names, with the engine's text."""
    for engine in cluster.active_engines():
        for image in engine.images:
            if image.matches(ref):
                return int(image.summary.get("Created") or 0)
    raise HTTPError(400, f"Invalid filter: 'type'='{key}': no such image found: '{ref}'")


def image_matches_filters(image: Image, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            if values[0] not in ("true", "false", "1", "0"):
                raise HTTPError(400, "Invalid filter: 'type'='dangling'")
            if (not image.repo_tags) != (values[0] in ("true", "1")):
                return False
        elif key == "label":
            if not match_labels(image.summary.get("Labels") or {}, values):
                return False
        elif key == "reference":
            names = image.repo_tags + [t.rsplit(":", 1)[0] for t in image.repo_tags]
            names += image.repo_digests
            if not any(fnmatch.fnmatchcase(n, v) for n in names for v in values):
                return False
    return True


def _within_bounds(image: Image, bounds: dict[str, int]) -> bool:
    created = int(image.summary.get("Created") or 0)
    if "before" in bounds and not created < bounds["before"]:
        return False
    return not ("since" in bounds and not created > bounds["since"])


def _merge_into(entry: dict[str, Any], image: Image) -> None:
    for key, values in (("RepoTags", image.repo_tags), ("RepoDigests", image.repo_digests)):
        for value in values:
            if value not in entry[key]:
                entry[key].append(value)
    entry["Containers"] = add_counts(entry.get("Containers"), image.summary.get("Containers"))


def merged_images(
    cluster: Cluster, show_all: bool, filters: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Images grouped by ID across nodes, their tags and digests joined."""
    for key in filters:
        if key not in IMAGE_FILTERS:
            raise HTTPError(400, f"invalid filter '{key}'")
    engines = cluster.active_engines()
    if "node" in filters:
        wanted = set(filters["node"])
        engines = [e for e in engines if e.name in wanted or e.id in wanted]
    bounds = {
        key: created_of(cluster, key, filters[key][0])
        for key in ("before", "since")
        if filters.get(key)
    }
    merged: dict[str, dict[str, Any]] = {}
    for engine in engines:
        for image in engine.images:
            if not show_all and not image.repo_tags and not image.repo_digests:
                continue
            if not image_matches_filters(image, filters) or not _within_bounds(image, bounds):
                continue
            entry = merged.get(image.id)
            if entry is None:
                entry = dict(image.summary)
                entry["RepoTags"] = list(image.repo_tags)
                entry["RepoDigests"] = list(image.repo_digests)
                merged[image.id] = entry
            else:
                _merge_into(entry, image)
    out = sorted(merged.values(), key=lambda i: i.get("Created", 0), reverse=True)
    for entry in out:
        if not entry["RepoTags"]:
            entry["RepoTags"] = None if not show_all else ["<none>:<none>"]
        if not entry["RepoDigests"]:
            entry["RepoDigests"] = None if not show_all else ["<none>@<none>"]
    return out


async def list_images(ctx: ApiContext, request: Request, params: Params) -> Response:
    filters = parse_filters(request.arg("filters"))
    legacy = request.arg("filter")
    if legacy:
        filters.setdefault("reference", []).append(legacy)
    return json_response(merged_images(ctx.cluster, request.flag("all"), filters))
