"""The primary handler: the Docker Engine API served over the whole cluster."""

from __future__ import annotations

from shoal.api.http import Hijack, Request, Response, StreamResponse, error_response
from shoal.api.primary import build, containers, execs, images, networks, system, volumes
from shoal.api.primary.context import ApiContext
from shoal.api.router import Router

#: Docker endpoints shoal does not serve yet: a clear 501, never a hang.
NOT_IMPLEMENTED = [
    ("GET", "/images/viz"),
    ("GET", "/distribution/{name:.*}/json"),
]


class PrimaryHandler:
    """Routes a request and stamps every answer with the engine-style version headers."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.router = Router()
        for module in (system, containers, execs, images, build, networks, volumes):
            module.register(self.router, ctx)
        for method, pattern in NOT_IMPLEMENTED:
            self.router.add(method, pattern, self._not_implemented)

    async def _not_implemented(self, request: Request, params: dict[str, str]) -> Response:
        return error_response(
            501, f"{request.method} {request.path} is not supported by shoal yet"
        )

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        response = await self.router(request)
        if not isinstance(response, Hijack) and not any(
            k == "Api-Version" for k, _ in response.headers
        ):
            response.headers.append(("Api-Version", self.ctx.api_version()))
        return response
