"""Every method and path of the Docker API shoal serves, and the handler of each.

Within a first path segment the first matching row wins, so literal paths come before
the `{name:.*}` patterns that could also match them. HEAD falls back to the GET row.
"""

from __future__ import annotations

from typing import Final

from shoal.api.http import Request, Response, error_response
from shoal.api.primary import (
    build,
    container_create,
    container_list,
    containers,
    events,
    execs,
    image_list,
    images,
    networks,
    plugins,
    swarm,
    system,
    volumes,
)
from shoal.api.primary.context import ApiContext, Handler, Params


async def not_implemented(ctx: ApiContext, request: Request, params: Params) -> Response:
    """A Docker endpoint shoal does not serve yet: a clear 501, never a hang."""
    return error_response(501, f"{request.method} {request.path} is not supported by shoal yet")


C = "/containers/{name:.*}"
ROUTES: Final[tuple[tuple[str, str, Handler], ...]] = (
    ("GET", "/_ping", system.ping),
    ("HEAD", "/_ping", system.ping),
    ("GET", "/version", system.version),
    ("GET", "/info", system.info),
    ("GET", "/events", events.events),
    ("GET", "/system/df", system.system_df),
    # containers
    ("GET", "/containers/json", container_list.list_containers),
    ("GET", "/containers/ps", container_list.list_containers),
    ("POST", "/containers/create", container_create.create_container),
    ("POST", "/containers/prune", containers.prune_containers),
    ("POST", "/commit", containers.commit_container),
    ("GET", f"{C}/json", containers.inspect_container),
    ("POST", f"{C}/start", containers.start_container),
    ("POST", f"{C}/stop", containers.pass_through_refresh),
    ("POST", f"{C}/kill", containers.pass_through_refresh),
    ("POST", f"{C}/restart", containers.pass_through_refresh),
    ("POST", f"{C}/pause", containers.pass_through_refresh),
    ("POST", f"{C}/unpause", containers.pass_through_refresh),
    ("POST", f"{C}/update", containers.update_container),
    ("POST", f"{C}/wait", containers.pass_through_refresh),
    ("GET", f"{C}/logs", containers.pass_through),
    ("GET", f"{C}/top", containers.pass_through),
    ("GET", f"{C}/stats", containers.pass_through),
    ("GET", f"{C}/changes", containers.pass_through),
    ("GET", f"{C}/export", containers.pass_through),
    ("GET", f"{C}/archive", containers.pass_through),
    ("HEAD", f"{C}/archive", containers.pass_through),
    ("PUT", f"{C}/archive", containers.pass_through),
    ("POST", f"{C}/resize", containers.pass_through),
    ("POST", f"{C}/copy", containers.pass_through),
    ("POST", f"{C}/rename", containers.rename_container),
    ("POST", f"{C}/attach", containers.attach_container),
    ("GET", f"{C}/attach/ws", containers.attach_container),
    ("POST", f"{C}/exec", containers.create_exec),
    ("DELETE", C, containers.remove_container),
    # execs
    ("POST", "/exec/{id}/start", execs.start_exec),
    ("POST", "/exec/{id}/resize", execs.exec_pass_through),
    ("GET", "/exec/{id}/json", execs.exec_pass_through),
    # images
    ("GET", "/images/json", image_list.list_images),
    ("POST", "/images/create", images.create_image),
    ("POST", "/images/load", images.load_images),
    ("POST", "/images/prune", images.prune_images),
    ("GET", "/images/get", images.save_images),
    ("GET", "/images/search", images.on_any_engine),
    ("GET", "/images/viz", not_implemented),
    ("GET", "/images/{name:.*}/json", images.on_image_holder),
    ("GET", "/images/{name:.*}/history", images.on_image_holder),
    ("GET", "/images/{name:.*}/get", images.on_image_holder),
    ("POST", "/images/{name:.*}/push", images.push_image),
    ("POST", "/images/{name:.*}/tag", images.tag_image),
    ("DELETE", "/images/{name:.*}", images.remove_image),
    ("GET", "/distribution/{name:.*}/json", images.on_any_engine),
    ("POST", "/auth", images.on_any_engine),
    # build
    ("POST", "/build", build.build_image),
    ("POST", "/build/prune", build.prune_build_cache),
    ("POST", "/build/cancel", build.cancel_build),
    ("POST", "/session", build.buildkit),
    ("POST", "/grpc", build.buildkit),
    # networks
    ("GET", "/networks", networks.list_networks),
    ("POST", "/networks/create", networks.create_network),
    ("POST", "/networks/prune", networks.prune_networks),
    ("POST", "/networks/{id:.*}/connect", networks.connect_network),
    ("POST", "/networks/{id:.*}/disconnect", networks.disconnect_network),
    ("GET", "/networks/{id:.*}", networks.inspect_network),
    ("DELETE", "/networks/{id:.*}", networks.remove_network),
    # volumes
    ("GET", "/volumes", volumes.list_volumes),
    ("POST", "/volumes/create", volumes.create_volume),
    ("POST", "/volumes/prune", volumes.prune_volumes),
    ("GET", "/volumes/{name:.*}", volumes.inspect_volume),
    ("DELETE", "/volumes/{name:.*}", volumes.remove_volume),
    # managed plugins: installed on every node, changed where they are
    ("GET", "/plugins", plugins.list_plugins),
    ("GET", "/plugins/privileges", images.on_any_engine),
    ("POST", "/plugins/pull", plugins.pull_plugin),
    ("POST", "/plugins/create", plugins.create_plugin),
    ("GET", "/plugins/{name:.*}/json", plugins.inspect_plugin),
    ("POST", "/plugins/{name:.*}/enable", plugins.enable_plugin),
    ("POST", "/plugins/{name:.*}/disable", plugins.disable_plugin),
    ("POST", "/plugins/{name:.*}/set", plugins.set_plugin),
    ("POST", "/plugins/{name:.*}/upgrade", plugins.upgrade_plugin),
    ("POST", "/plugins/{name:.*}/push", plugins.push_plugin),
    ("DELETE", "/plugins/{name:.*}", plugins.remove_plugin),
    # swarm mode: passed to the engine a client made a swarm manager, if any
    *swarm.ROUTES,
)
