"""``/docs`` without a CDN (issue #13): Swagger UI's files come from the installed
``fastapi-offline`` package (Swagger UI 5, which reads the OpenAPI 3.1 document FastAPI
writes) and are served by this service, so a ministry network without internet still gets
its API console. Only its static files are used, not its app class. ``/redoc`` is gone:
ReDoc's script loads its logo from its vendor's CDN whatever the page says.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

ASSETS = "/docs/assets"
# Defence in depth: the browser is told to load nothing from anywhere but here (Swagger
# UI's start-up script is inline).
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _local_only(resp: HTMLResponse) -> HTMLResponse:
    resp.headers["Content-Security-Policy"] = CSP
    return resp


def _assets_dir() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:  # a dev/ops install (pyproject): say so, fetch nothing
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def _missing(openapi_url: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>API docs</title><p>The API console's files are not installed "
        "on this server (pip install fastapi-offline). The OpenAPI document is at "
        f'<a href="{openapi_url}">{openapi_url}</a>.</p>'
    )


def install(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    assets = _assets_dir()
    openapi_url = app.openapi_url or "/openapi.json"

    # Plain routes, as FastAPI adds its own docs routes (not API operations).
    async def swagger_ui(request: Request) -> HTMLResponse:
        if assets is None:
            return _missing(openapi_url)
        return _local_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - API",
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                oauth2_redirect_url="/docs/oauth2-redirect",
                # Swagger UI would otherwise ask validator.swagger.io about the document.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    async def swagger_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", swagger_redirect, include_in_schema=False)
    if assets is not None:
        app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")
