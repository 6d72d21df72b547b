"""Method + path -> route handler, with `{var}` and `{var:regex}` path patterns."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shoal.api.http import Hijack, Request, Response, StreamResponse, error_response

RouteHandler = Callable[[Request, dict[str, str]], Awaitable[Response | StreamResponse | Hijack]]


@dataclass(frozen=True, slots=True)
class Route:
    """One registered route; `regex` must match the whole path.

    `template` is the pattern without its regexes (`/containers/{name}/json`): a bounded
    label for metrics, never the raw path.
    """

    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: RouteHandler
    template: str = ""


def route_template(pattern: str) -> str:
    """`/containers/{name:.*}/json` -> `/containers/{name}/json`."""
    return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", pattern)


_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(?:[^{}]|\{[^{}]*\})*)?\}")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """`/containers/{name:.*}/json` -> a regex with named groups; `{x}` is `[^/]+`."""
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {pattern!r}")
    out: list[str] = []
    names: set[str] = set()
    i = 0
    while (start := pattern.find("{", i)) >= 0:
        out.append(re.escape(pattern[i:start]))
        depth, end = 0, start
        while end < len(pattern):
            if pattern[end] == "{":
                depth += 1
            elif pattern[end] == "}":
                depth -= 1
                if depth == 0:
                    break
            end += 1
        else:
            raise ValueError(f"unbalanced braces in route pattern {pattern!r}")
        name, colon, regex = pattern[start + 1 : end].partition(":")
        if not name.isidentifier() or name in names:
            raise ValueError(f"bad variable {name!r} in route pattern {pattern!r}")
        names.add(name)
        out.append(f"(?P<{name}>{regex if colon else '[^/]+'})")
        i = end + 1
    out.append(re.escape(pattern[i:]))
    return re.compile("".join(out))


def _first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path[1:end] if end >= 0 else path[1:]


class Router:
    """A Handler that routes on method and path (the path without its /vX.Y prefix).

    Routes are indexed by method and literal first path segment, so a request tries only
    the few routes that could match. Within a bucket the first registered match wins;
    routes starting with a variable are tried after those with a literal first segment.
    HEAD falls back to the GET route (the server drops the body).
    """

    def __init__(self) -> None:
        self._by_segment: dict[str, dict[str, list[Route]]] = {}
        self._wildcard: dict[str, list[Route]] = {}

    def add(self, method: str, pattern: str, handler: RouteHandler) -> None:
        """Register `handler` for `method` and `pattern`."""
        method = method.upper()
        route = Route(
            method, pattern, compile_pattern(pattern), handler, route_template(pattern)
        )
        first = _first_segment(pattern)
        if "{" in first:
            self._wildcard.setdefault(method, []).append(route)
        else:
            self._by_segment.setdefault(method, {}).setdefault(first, []).append(route)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and path variables for `method` and `path`, or None."""
        found = self._match(method, path, _first_segment(path))
        if found is None and method == "HEAD":
            found = self._match("GET", path, _first_segment(path))
        return found

    def _match(self, method: str, path: str, segment: str) -> tuple[Route, dict[str, str]] | None:
        by_segment = self._by_segment.get(method)
        if by_segment is not None:
            for route in by_segment.get(segment, ()):
                m = route.regex.fullmatch(path)
                if m is not None:
                    return route, m.groupdict()
        for route in self._wildcard.get(method, ()):
            m = route.regex.fullmatch(path)
            if m is not None:
                return route, m.groupdict()
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """Methods that have a route matching `path`."""
        segment = _first_segment(path)
        methods = set(self._by_segment) | set(self._wildcard)
        return sorted(m for m in methods if self._match(m, path, segment) is not None)

    def unmatched(self, request: Request) -> Response:
        """The answer to a request no route matched: 405 with Allow, or 404."""
        allowed = self.allowed_methods(request.path)
        if allowed:
            response = error_response(405, "method not allowed")
            response.headers.append(("Allow", ", ".join(allowed)))
            return response
        return error_response(404, "page not found")

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        found = self.match(request.method, request.path)
        if found is None:
            return self.unmatched(request)
        route, params = found
        return await route.handler(request, params)
