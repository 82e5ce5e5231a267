"""A real browser for the web pages' tests (issue #13).

Playwright's Python package drives Debian's Chromium (``/usr/bin/chromium``), which the
test set-up installs with ``apt-get`` when it is missing (as ``tests/softhsm.py`` does for
SoftHSM2); Playwright's own browser builds are never downloaded. The service runs in a
thread (uvicorn) on a free loopback port over one copy of the API scenario; every request
the browser makes is recorded, so a test can assert none left for another host.
Screenshots go to ``artefacts/web/`` (git-ignored), kept as test artefacts.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.apt import apt_install

ARTEFACTS = Path(__file__).resolve().parent.parent / "artefacts" / "web"


def chromium_path() -> str:
    """Debian's Chromium, installed here if missing (root and apt-get needed)."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and os.path.exists(candidate):
            return candidate
    apt_install("chromium", present=lambda: os.path.exists("/usr/bin/chromium"))
    if not os.path.exists("/usr/bin/chromium"):
        pytest.fail("apt-get could not install chromium")
    return "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` on a free loopback port in a thread; yields its base URL, stops it after."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Browser:
    """One Chromium for a test module; a context per person (their own IndexedDB)."""

    base: str
    browser: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught errors in any page's script

    def person(self) -> Any:
        ctx = self.browser.new_context(
            base_url=self.base, viewport={"width": 1024, "height": 1366}, accept_downloads=True
        )
        ctx.on("request", lambda req: self.requests.append(req.url))
        ctx.on("page", lambda page: page.on("pageerror", lambda exc: self.errors.append(str(exc))))
        ctx.set_default_timeout(30_000)  # a loaded 2-core CI machine
        return ctx

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the service (data: and blob: URLs stay in the page)."""
        ours = urlsplit(self.base).netloc
        return [
            u
            for u in self.requests
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != ours
        ]


@contextmanager
def chromium(base: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=exe,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield Browser(base=base, browser=browser)
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def sign_in_with_token(page: Any, token: str) -> None:
    """What the sign-in page does once it holds a token (key login's or the demo's):
    the page cookie from POST /web/session, the token kept for the scripts' API calls."""
    page.goto("/")
    status = page.evaluate(
        """async (tok) => {
            const r = await fetch('/web/session', {method: 'POST', headers: {Authorization: 'Bearer ' + tok}});
            sessionStorage.setItem('reserve.token', tok);
            return r.status;
        }""",
        token,
    )
    assert status == 200, status
