"""The swappable handler every listener shares: primary router, replica proxy, or none."""

from __future__ import annotations

from typing import Final

from shoal.api.http import Handler, Hijack, Request, Response, StreamResponse, error_response

CORS_HEADERS: Final = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept"),
    ("Access-Control-Allow-Methods", "GET, POST, DELETE, PUT, OPTIONS, HEAD"),
)


class Dispatcher:
    """Calls the current handler; `set_handler` swaps it without disturbing requests in flight.

    A request reads `handler` once, so one already running finishes on the old handler.
    """

    def __init__(self, handler: Handler | None = None, *, cors: bool = False) -> None:
        self.handler = handler
        self.cors = cors

    def set_handler(self, handler: Handler | None) -> None:
        """Swap the handler (a single assignment: atomic on the event loop)."""
        self.handler = handler

    async def __call__(self, request: Request) -> Response | StreamResponse | Hijack:
        if self.cors:
            if request.method == "OPTIONS":
                return Response(200, b"", list(CORS_HEADERS), content_type=None)
            response = await self._call(request)
            if not isinstance(response, Hijack):
                response.headers = [*response.headers, *CORS_HEADERS]
            return response
        return await self._call(request)

    async def _call(self, request: Request) -> Response | StreamResponse | Hijack:
        handler = self.handler
        if handler is None:
            return error_response(500, "No dispatcher defined")
        return await handler(request)
