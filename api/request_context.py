"""Request id, request log line, latency metric and the last-resort 500, as a plain ASGI
middleware (issue #11). Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs
each request through an extra task and memory stream; at 50 clients per worker that cost
showed in every route's latency, ``/health`` included."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, metrics

log = structlog.get_logger("api")


class RequestContext:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # built outside the handlers: still a problem, with an id
            log.error("unexpected", error_class=type(exc).__name__)
            if not started:
                response = errors.problem(
                    500, "internal", "the service could not complete this request; try again later"
                )
                await response(scope, receive, send_with_id)
            status = 500
        route = getattr(scope.get("route"), "path", "unmatched")  # the template, never the path
        elapsed = time.perf_counter() - start
        metrics.observe_request(route, scope["method"], status, elapsed)
        log.info("request", method=scope["method"], route=route, status=status, ms=round(elapsed * 1000, 2))
