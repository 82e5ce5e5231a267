"""The log's HTTP client for witnesses (urllib: no extra dependency)."""

from __future__ import annotations

import urllib.error
import urllib.request

from ledger.witnessing import WitnessAnswer

TIMEOUT = 10.0


class UrllibWitnessTransport:
    """Implements :class:`ledger.witnessing.WitnessTransport` over HTTP(S)."""

    def __init__(self, timeout: float = TIMEOUT):
        self.timeout = timeout

    def add_checkpoint(self, url: str, body: bytes) -> WitnessAnswer:
        if not url.startswith(("http://", "https://")):
            raise ValueError("a witness URL is http:// or https://")
        req = urllib.request.Request(  # noqa: S310 - scheme checked above
            url.rstrip("/") + "/add-checkpoint",
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return WitnessAnswer(resp.status, resp.headers.get("Content-Type", ""), resp.read(65536))
        except urllib.error.HTTPError as exc:
            return WitnessAnswer(exc.code, exc.headers.get("Content-Type", ""), exc.read(65536))
