"""The one place ledger errors become HTTP: RFC 9457 problem details.

Each error class (and each reducer rule) has a stable ``type`` URI; ``detail`` is the
error's public message, which never holds a secret; 4xx are the caller's mistakes, 5xx
only ours, and a 5xx never says more than that something failed on our side.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import errors as E

PROBLEM_BASE = "https://reserve-ledger.example/problems/"
MEDIA_TYPE = "application/problem+json"

STATUS: dict[type[E.LedgerError], int] = {
    E.InvalidEntry: 422,
    E.SignatureInvalid: 422,
    E.KeyNotAuthorised: 403,
    E.Rejected: 409,
    E.NotFound: 404,
    E.Conflict: 409,
    E.Unauthenticated: 401,
    E.Forbidden: 403,
    E.InvalidProof: 422,
    E.VerificationFailed: 409,
    E.ConfigError: 503,
    E.StorageError: 503,
    E.KeystoreError: 500,
}
TITLES = {
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Refused by the ledger's rules",
    422: "Invalid request",
    500: "Internal error",
    503: "Service unavailable",
}

log = structlog.get_logger("api")


def status_for(exc: E.LedgerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem(status: int, type_: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + type_,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def outcome_pending(exc: E.OutcomePending) -> JSONResponse:
    """202, not 5xx: the write may still be appended (issue #8, item 2). With an
    Idempotency-Key the caller fetches the outcome at ``Location``."""
    body: dict[str, Any] = {"outcome": "pending", "detail": exc.public_message}
    headers = None
    if exc.idempotency_key is not None:
        url = "/entries/outcome/" + quote(exc.idempotency_key, safe="")
        body["outcome_url"] = url
        headers = {"Location": url, "Retry-After": "1"}
    return JSONResponse(body, status_code=202, headers=headers)


def ledger_problem(exc: E.LedgerError) -> JSONResponse:
    if isinstance(exc, E.OutcomePending):
        return outcome_pending(exc)
    status = status_for(exc)
    if status >= 500:
        # Our fault: say so, and keep the details in our log (never a secret there either).
        log.error("server_error", error_class=type(exc).__name__, code=exc.code)
        return problem(
            status, exc.code, "the service could not complete this request; try again later"
        )
    type_ = f"rule/{exc.rule}" if isinstance(exc, E.Rejected) else exc.code
    return problem(status, type_, exc.public_message, field=exc.field, seq=exc.seq)


def install(app: FastAPI) -> None:
    @app.exception_handler(E.LedgerError)
    async def _ledger(request: Request, exc: E.LedgerError) -> JSONResponse:
        return ledger_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return problem(
            422, "invalid-request", str(first.get("msg", "invalid request")), field=field or None
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "http", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected", error_class=type(exc).__name__)
        return problem(
            500, "internal", "the service could not complete this request; try again later"
        )
