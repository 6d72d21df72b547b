"""The primary handler: the Docker Engine API served over the whole cluster."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Final

from shoal.api.http import Hijack, Request, Response, StreamResponse, error_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.errors import ANSWERED, answer_for
from shoal.api.primary.routes import ROUTES
from shoal.api.router import Route, Router
from shoal.telemetry import NO_TELEMETRY, UNKNOWN_ROUTE, ApiTelemetry

log = logging.getLogger(__name__)

#: Methods counted by name on unmatched paths; any other is "other" (bounded labels).
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: The status counted for a hijacked request: the engine's own answer is spliced through.
HIJACK_STATUS: Final = 101
#: The status counted for a request whose client went away (nginx's convention).
GONE_STATUS: Final = 499


class PrimaryHandler:
    """Routes a request, answers its failure through the error map, and stamps every answer
    with the engine-style version headers. Each request is reported to `telemetry` by its
    route template."""

    def __init__(self, ctx: ApiContext, telemetry: ApiTelemetry = NO_TELEMETRY) -> None:
        self.ctx = ctx
        self.telemetry = telemetry
        self.router = Router()
        for method, pattern, handler in ROUTES:
            self.router.add(method, pattern, functools.partial(handler, ctx))

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        started = time.perf_counter()
        found = self.router.match(request.method, request.path)
        if found is None:
            route = UNKNOWN_ROUTE
            method = request.method if request.method in KNOWN_METHODS else "other"
        else:
            route, method = found[0].template, request.method
        try:
            response = await self._answer(request, found)
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            self.telemetry.api_request(route, method, failure_status(exc), elapsed)
            raise
        if isinstance(response, Hijack):
            response = Hijack(functools.partial(self._hijacked, response))
            status = HIJACK_STATUS
        else:
            status = response.status
        self.telemetry.api_request(route, method, status, time.perf_counter() - started)
        return response

    async def _answer(
        self, request: Request, found: tuple[Route, dict[str, str]] | None
    ) -> Response | StreamResponse | Hijack:
        try:
            if found is None:
                response: Response | StreamResponse | Hijack = self.router.unmatched(request)
            else:
                response = await found[0].handler(request, found[1])
        except ANSWERED as exc:
            status, message = answer_for(exc)
            log.debug("%s %s: %s (status %d)", request.method, request.path, message, status)
            response = error_response(status, message)
        if not isinstance(response, Hijack) and not any(
            k == "Api-Version" for k, _ in response.headers
        ):
            response.headers.append(("Api-Version", self.ctx.api_version()))
        return response

    async def _hijacked(
        self,
        inner: Hijack,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Runs a hijacked stream, counted as open while it runs."""
        self.telemetry.api_hijack(1)
        try:
            await inner.run(request, reader, writer)
        finally:
            self.telemetry.api_hijack(-1)


def failure_status(exc: BaseException) -> int:
    """The status counted for a request whose handler raised (HTTPError never gets here:
    it is answered above): the server's 500, or the client gone."""
    if isinstance(exc, ConnectionError | asyncio.CancelledError):
        return GONE_STATUS
    return 500
