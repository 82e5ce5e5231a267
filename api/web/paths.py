"""Where the pages live: one place, so the API's route matrix can tell pages from API
routes (tests/test_api_matrix.py) and the static files are found installed or not."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"
# Pages are "/" and everything under "/web/" (HTML for people; the API stays JSON).
WEB_PREFIX = "/web/"


def is_web_path(path: str) -> bool:
    return path == "/" or path.startswith(WEB_PREFIX) or path == WEB_PREFIX.rstrip("/")
