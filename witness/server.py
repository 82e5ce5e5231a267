"""``POST /add-checkpoint`` on the standard library's threading HTTP server.

Thin on purpose: the body goes to :meth:`ledger.witness.Witness.add_checkpoint`; a
:class:`ledger.witness.WitnessError` becomes the status the spec names for it (its
``status``), with the witness's size as ``text/x.tlog.size`` on a 409. Anything else is a
500 that says nothing more (and is logged by class name only).
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from ledger.witness import (
    MAX_BODY_BYTES,
    SIZE_CONTENT_TYPE,
    OldSizeMismatch,
    Witness,
    WitnessError,
)

log = structlog.get_logger("reserve.witness")


def make_server(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one) answering for ``witness``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "reserve-witness"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # structured events below instead of the stdlib's access lines

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(404, b"not found\n")

        def do_POST(self) -> None:
            if self.path != "/add-checkpoint":
                self._answer(404, b"not found\n")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._answer(411, b"Content-Length required\n")
                return
            if not 0 <= length <= MAX_BODY_BYTES:
                self._answer(413, b"request body is too large\n")
                return
            body = self.rfile.read(length)
            try:
                line = witness.add_checkpoint(body)
            except OldSizeMismatch as exc:
                log.info("witness_conflict", known_size=exc.known_size)
                self._answer(exc.status, f"{exc.known_size}\n".encode(), SIZE_CONTENT_TYPE)
                return
            except WitnessError as exc:
                log.info("witness_refused", status=exc.status, reason=exc.code)
                self._answer(exc.status, (exc.public_message + "\n").encode())
                return
            except Exception as exc:
                log.error("witness_unexpected", error_class=type(exc).__name__)
                self._answer(500, b"internal error\n")
                return
            log.info("witness_cosigned")
            self._answer(200, line.encode())

    return ThreadingHTTPServer((host, port), Handler)
