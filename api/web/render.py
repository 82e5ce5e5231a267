"""Jinja2 rendering with autoescape on, one environment for every page."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.web.paths import TEMPLATE_DIR
from ledger.units import format_quantity

# No inline script anywhere: scripts come from /web/static only (and so may the CSP say).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def tonnes(grams: int | None) -> str:
    """Grams as tonnes with up to six decimals (exact: 1 g = 0.000001 t)."""
    if grams is None:
        return ""
    t = Decimal(int(grams)) / Decimal(1_000_000)
    text = f"{t:,.6f}".rstrip("0").rstrip(".")
    return f"{text} t"


_env = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["tonnes"] = tonnes
_env.filters["quantity"] = format_quantity


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    html = _env.get_template(template).render({"request": request, **context})
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
