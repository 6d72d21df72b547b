"""The primary handler: the Docker Engine API served over the whole cluster."""

from __future__ import annotations

import functools
import logging

from shoal.api.http import Hijack, Request, Response, StreamResponse, error_response
from shoal.api.primary.context import ApiContext
from shoal.api.primary.errors import ANSWERED, answer_for
from shoal.api.primary.routes import ROUTES
from shoal.api.router import Router

log = logging.getLogger(__name__)


class PrimaryHandler:
    """Routes a request, answers its failure through the error map, and stamps every answer
    with the engine-style version headers."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.router = Router()
        for method, pattern, handler in ROUTES:
            self.router.add(method, pattern, functools.partial(handler, ctx))

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        try:
            response = await self.router(request)
        except ANSWERED as exc:
            status, message = answer_for(exc)
            log.debug("%s %s: %s (status %d)", request.method, request.path, message, status)
            response = error_response(status, message)
        if not isinstance(response, Hijack) and not any(
            k == "Api-Version" for k, _ in response.headers
        ):
            response.headers.append(("Api-Version", self.ctx.api_version()))
        return response
