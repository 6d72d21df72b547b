"""Router: patterns, variables, the method/segment index, 404/405 and HEAD fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from shoal.api.http import Hijack, Request, Response, StreamResponse, json_response, make_request
from shoal.api.router import RouteHandler, Router, compile_pattern


def named(name: str) -> RouteHandler:
    async def handler(request: Request, params: dict[str, str]) -> Response:
        return json_response({"route": name, "params": params})

    return handler


def router() -> Router:
    r = Router()
    r.add("GET", "/_ping", named("ping"))
    r.add("GET", "/containers/json", named("ps"))
    r.add("GET", "/containers/{name:.*}/json", named("inspect"))
    r.add("POST", "/containers/{name:.*}/start", named("start"))
    r.add("DELETE", "/containers/{name:.*}", named("rm"))
    r.add("POST", "/exec/{id}/start", named("exec-start"))
    r.add("GET", "/images/{name:.*}/json", named("image-inspect"))
    r.add("HEAD", "/containers/{name:.*}/archive", named("archive-head"))
    r.add("GET", "/containers/{name:.*}/archive", named("archive-get"))
    r.add("GET", "/{anything}/wild", named("wild"))
    return r


async def call(r: Router, method: str, target: str) -> tuple[int, dict[str, object]]:
    response = await r(make_request(method, target))
    assert isinstance(response, Response)
    return response.status, json.loads(response.body)


@pytest.mark.parametrize(
    ("method", "target", "route", "params"),
    [
        ("GET", "/_ping", "ping", {}),
        ("GET", "/v1.41/_ping", "ping", {}),
        ("GET", "/containers/json", "ps", {}),
        ("GET", "/containers/abc/json", "inspect", {"name": "abc"}),
        ("GET", "/v1.24/containers/node-0/c1/json", "inspect", {"name": "node-0/c1"}),
        ("POST", "/containers/node-0/c1/start", "start", {"name": "node-0/c1"}),
        ("DELETE", "/containers/node-0/c1", "rm", {"name": "node-0/c1"}),
        ("POST", "/exec/0123abc/start", "exec-start", {"id": "0123abc"}),
        (
            "GET",
            "/images/localhost:5000/busybox:latest/json",
            "image-inspect",
            {"name": "localhost:5000/busybox:latest"},
        ),
        ("HEAD", "/containers/c/archive?path=/etc", "archive-head", {"name": "c"}),
        ("HEAD", "/_ping", "ping", {}),  # HEAD falls back to GET
        ("GET", "/x/wild", "wild", {"anything": "x"}),
    ],
)
async def test_routes(method: str, target: str, route: str, params: dict[str, str]) -> None:
    status, body = await call(router(), method, target)
    assert status == 200
    assert body == {"route": route, "params": params}


async def test_plain_variable_does_not_cross_slashes() -> None:
    status, body = await call(router(), "POST", "/exec/a/b/start")
    assert status == 404
    assert body == {"message": "page not found"}


async def test_unknown_path_is_404() -> None:
    for target in ("/nope", "/system/df", "/containers", "/", "/v1.41", "/_ping/extra"):
        status, body = await call(router(), "GET", target)
        assert (status, body) == (404, {"message": "page not found"}), target


async def test_known_path_wrong_method_is_405() -> None:
    response = await router()(make_request("POST", "/_ping"))
    assert isinstance(response, Response)
    assert response.status == 405
    assert ("Allow", "GET, HEAD") not in response.headers
    assert ("Allow", "GET") in response.headers
    response = await router()(make_request("PUT", "/containers/c/archive"))
    assert isinstance(response, Response)
    assert response.status == 405
    assert ("Allow", "DELETE, GET, HEAD") in response.headers


async def test_first_registered_match_wins() -> None:
    r = Router()
    r.add("GET", "/containers/json", named("ps"))
    r.add("GET", "/containers/{name:.*}", named("catch-all"))
    assert (await call(r, "GET", "/containers/json"))[1]["route"] == "ps"
    assert (await call(r, "GET", "/containers/json/x"))[1]["route"] == "catch-all"


async def test_route_handler_can_return_any_response_kind() -> None:
    async def stream(request: Request, params: dict[str, str]) -> StreamResponse:
        async def gen() -> AsyncIterator[bytes]:
            yield b""

        return StreamResponse(200, gen(), [])

    async def hijack(request: Request, params: dict[str, str]) -> Hijack:
        async def run(*args: object) -> None:
            return None

        return Hijack(run)

    r = Router()
    r.add("GET", "/logs", stream)
    r.add("POST", "/attach", hijack)
    assert isinstance(await r(make_request("GET", "/logs")), StreamResponse)
    assert isinstance(await r(make_request("POST", "/attach")), Hijack)


def test_compile_pattern() -> None:
    assert compile_pattern("/a/{x}/b").fullmatch("/a/1/b") is not None
    assert compile_pattern("/a/{x}/b").fullmatch("/a/1/2/b") is None
    m = compile_pattern("/v{version:[0-9]+.[0-9]{1,2}}/x").fullmatch("/v1.41/x")
    assert m is not None and m.group("version") == "1.41"
    assert compile_pattern("/a.b").fullmatch("/axb") is None  # literals are escaped
    with pytest.raises(ValueError):
        compile_pattern("no-slash")
    with pytest.raises(ValueError):
        compile_pattern("/a/{x")
    with pytest.raises(ValueError):
        compile_pattern("/a/{x}/{x}")
    with pytest.raises(ValueError):
        compile_pattern("/a/{1bad}")
