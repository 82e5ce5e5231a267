"""The verification report (issue #10): what was checked, what passed, and for each
failure the entry, the rule and the evidence, as JSON and as a self-contained HTML page.

One entry point for every verifying command (``reserve verify``, ``verify-bundle``, and
``audit sync``): :func:`verify_with_report` runs a verification with a
:class:`~ledger.audit_report.collect.Collector` as its observer and writes the report
whether it passes or fails (a failure is when it matters most), then returns or re-raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ledger.audit_report.build import build_document
from ledger.audit_report.collect import Collector
from ledger.audit_report.html import render
from ledger.errors import ConfigError, VerificationFailed
from ledger.verify import Report, VerifyObserver

__all__ = ["Collector", "build_document", "render", "verify_with_report", "write_report"]


def verify_with_report(
    run: Callable[[VerifyObserver], Report],
    *,
    html_path: Path | None,
    json_path: Path | None,
    source: dict[str, Any],
    entry_at: Callable[[int], bytes | None] | None = None,
    skipped: frozenset[str] = frozenset(),
) -> Report:
    """Run ``run(observer)`` (which must pass the observer to ``verify_history``) and
    write the report to ``html_path`` / ``json_path`` (either may be ``None``).

    ``source`` describes what was verified (``kind``, ``trust``...; an ``access_log``
    entry, if ``run`` puts one there, is reported). ``entry_at(seq)`` returns the stored
    line of an entry, for the evidence of a failure. Raises what ``run`` raises."""
    for path in (html_path, json_path):
        if path is not None and not os.access(path.parent, os.W_OK):
            # Checked first: a failed verification must still leave its report.
            raise ConfigError(f"cannot write the report to {path.name}: directory not writable")
    col = Collector()
    try:
        report = run(col)
    except VerificationFailed as exc:
        write_report(
            build_document(
                col, report=None, failure=exc, source=source, entry_at=entry_at, skipped=skipped
            ),
            html_path=html_path,
            json_path=json_path,
        )
        raise
    write_report(
        build_document(col, report=report, failure=None, source=source, skipped=skipped),
        html_path=html_path,
        json_path=json_path,
    )
    return report


def write_report(doc: dict[str, Any], *, html_path: Path | None, json_path: Path | None) -> None:
    """Write each requested form atomically (a reader never sees half a report)."""
    if json_path is not None:
        _write(json_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    if html_path is not None:
        _write(html_path, render(doc).encode())


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {path.name}") from exc
