"""``/docs`` without a CDN: Swagger UI's files from the installed ``swagger-ui-bundle``
package, served by this service, so a ministry network without internet still gets its
API console (issue #13). ReDoc is not offered: no installed package ships it."""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

ASSETS = "/docs/assets"


def _swagger_dir() -> Path | None:
    try:
        bundle = importlib.import_module("swagger_ui_bundle")
    except ImportError:  # the package is a dev/ops install (pyproject); say so, fetch nothing
        return None
    return Path(str(bundle.swagger_ui_path))


def install(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    assets = _swagger_dir()
    openapi_url = app.openapi_url or "/openapi.json"

    # Plain routes, as FastAPI adds its own docs routes (not API operations).
    async def swagger_ui(request: Request) -> HTMLResponse:
        if assets is None:
            return HTMLResponse(
                "<!doctype html><title>API docs</title><p>Swagger UI is not installed on "
                "this server (pip install swagger-ui-bundle). The OpenAPI document is at "
                f'<a href="{openapi_url}">{openapi_url}</a>.</p>',
                status_code=200,
            )
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # Swagger UI would otherwise ask validator.swagger.io about the document.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def swagger_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", swagger_redirect, include_in_schema=False)

    if assets is not None:
        app.mount(ASSETS, StaticFiles(directory=assets), name="swagger-assets")
