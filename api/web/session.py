"""Who is looking at a page: the same bearer token as the API, carried by a cookie.

The browser gets its token by key login (``/auth/challenge`` + ``/auth/token``) or, on a
demo ledger with ``RESERVE_UNSAFE_DEMO_LOGIN=1``, by demo login; it keeps it in
``sessionStorage`` for the API calls its scripts make and hands it once to
``POST /web/session``, which checks it exactly as the API does (``api.deps.principal``)
and sets it as an ``HttpOnly``, ``SameSite=Strict`` cookie so that plain page loads carry
it. Pages only read; every write goes to the JSON API with the token in the
``Authorization`` header, never in a cookie, so a cookie cannot be used for a forged
write (no CSRF surface).

Role checks are the API's own: a page names the API route whose data it shows, and the
roles that route declares (``x-roles``, enforced by ``api.deps.roles``) are the page's.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from api.audit import refusal_event
from api.deps import principal, services
from api.services import Services
from ledger.errors import Unauthenticated
from ledger.policy import Principal

COOKIE = "reserve_session"
router = APIRouter(include_in_schema=False)


class PageRefused(Exception):
    """A page the caller may not see: rendered as HTML (not a problem document), and
    recorded in the access log like every refused API request (issue #4)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def api_roles(app: FastAPI, method: str, path: str) -> tuple[str, ...]:
    """The roles the JSON API route ``method path`` declares and enforces (its ``x-roles``
    in the OpenAPI document, which ``api.deps.roles`` writes from the same tuple)."""
    op = app.openapi().get("paths", {}).get(path, {}).get(method.lower())
    if op is None:
        raise LookupError(f"no API route {method} {path}")  # a page wired to a missing route
    return tuple(op.get("x-roles", ()))


async def page_principal(request: Request, svc: Services = Depends(services)) -> Principal:
    """The signed-in caller of a page (the cookie's token, checked by the API's own
    dependency), or :class:`PageRefused` (401: back to the sign-in page)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise PageRefused(401, "unauthenticated", "sign in first")
    creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    try:
        return await principal(request, creds, svc)
    except Unauthenticated:
        raise PageRefused(401, "unauthenticated", "your session ended: sign in again") from None


def require(app: FastAPI, p: Principal, method: str, path: str) -> None:
    """Refuse the page unless the caller holds a role of API route ``method path``."""
    allowed = api_roles(app, method, path)
    if not p.has(*allowed):
        raise PageRefused(403, "forbidden", "your role does not give access to this page")


def may(app: FastAPI, p: Principal, method: str, path: str) -> bool:
    return p.has(*api_roles(app, method, path))


@router.post("/web/session")
async def open_session(
    request: Request,
    p: Principal = Depends(principal),
) -> JSONResponse:
    """Turn a valid bearer token into the page cookie (same lifetime as the token)."""
    auth = request.headers.get("authorization", "")
    token = auth.split(" ", 1)[1] if " " in auth else ""
    exp = getattr(request.state, "token_exp", None)
    resp = JSONResponse({"user": p.user, "roles": sorted(p.roles), "home": "/web/home"})
    resp.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        # The cookie lives as long as the token (an absolute time would be read as seconds).
        max_age=max(0, int(exp) - int(time.time())) if exp else None,
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@router.post("/web/logout")
async def close_session() -> Response:
    resp = JSONResponse({"signed_out": True})
    resp.delete_cookie(COOKIE, path="/")
    return resp


def install(app: FastAPI) -> None:
    """HTML answers for refused pages; ledger errors inside a page become a page too."""
    from api.web.render import render

    @app.exception_handler(PageRefused)
    async def _refused(request: Request, exc: PageRefused) -> Response:
        svc: Services = request.app.state.services
        refusal_event(svc, request, exc.status, exc.code)
        if exc.status == 401:
            return RedirectResponse("/?signin=required", status_code=303)
        return render(request, "refused.html", {"message": exc.message}, status=exc.status)
