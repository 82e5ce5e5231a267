"""Request bodies decoded strictly, at the edge (issue #8 items 3 and 10).

FastAPI reads JSON bodies with the standard library, which accepts what no entry may
hold and fails late: a lone surrogate (``"\\ud800"``) decodes, then breaks the first
UTF-8 encode (a 500); an integer of any size decodes, then overflows a 64-bit column
or loses precision in a client (RFC 8259 section 6: beyond 2^53 numbers are not
interoperable); a decode error is reported with its character offset as the "field".

Every route here reads its body through :class:`StrictJSONRoute`, which decodes with
msgspec (RFC 8259 strict: invalid UTF-8 and unpaired surrogates are errors) and refuses,
with a 422 that names the field, integers beyond +-(2^53 - 1) and nesting deeper than
:data:`MAX_DEPTH`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 32  # far deeper than any entry; a bound on work per request


class BodyRejected(HTTPException):
    """The body is not JSON this service accepts. An ``HTTPException`` because FastAPI
    lets only those out of its body reading unchanged; ``api.errors`` maps it to an RFC
    9457 problem with ``field`` (the JSON path) when there is one."""

    def __init__(self, detail: str, *, field: str | None = None):
        super().__init__(status_code=422, detail=detail)
        self.field = field


def decode_json(raw: bytes) -> Any:
    """The body as JSON, or :class:`BodyRejected`."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec's message names a byte offset, not a field: say what is wrong instead.
        raise BodyRejected(
            "the body is not valid JSON (RFC 8259, UTF-8, no unpaired surrogates)"
        ) from None
    except RecursionError:
        raise BodyRejected(f"the body nests deeper than {MAX_DEPTH} levels") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Refuse integers no JSON client counts exactly, and deep nesting, naming where."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BodyRejected(f"the body nests deeper than {MAX_DEPTH} levels", field=path or None)
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                raise BodyRejected(
                    "integers must be within +-(2^53 - 1) (RFC 8259 section 6)",
                    field=path or None,
                )
        elif isinstance(item, dict):
            for k, v in item.items():
                stack.append((v, f"{path}.{k}" if path else str(k), depth + 1))
        elif isinstance(item, list):
            for i, v in enumerate(item):
                stack.append((v, f"{path}[{i}]", depth + 1))


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose handler reads the body through :class:`StrictJSONRequest`
    (FastAPI's documented way to customise request parsing)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
