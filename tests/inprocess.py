"""For tests that call ``cli.main.main`` in this process: ``main`` configures structlog
(cached loggers), which would stop later tests' ``structlog.testing.capture_logs`` from
seeing events of loggers first used after it. Import :func:`reset_structlog` into the
test module; it is autouse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
