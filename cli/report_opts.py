"""``--report FILE.html`` / ``--report-json FILE`` for the verifying commands (issue #10).

The commands build a ``run(observer)`` callable; this module decides whether to wrap it
in :func:`ledger.audit_report.verify_with_report` (which writes the report also when the
verification fails; the exit code stays 1) or to run it bare.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the report commands need not import the verifier
    from ledger.verify import Report, VerifyObserver

# Checks that only a database has (a bundle carries no columns, tree nodes or head).
DATABASE_ONLY = frozenset({"database-columns", "checkpoint-columns", "tree-nodes", "log-head", "access-log"})


# Reports people hand on (issue #12): the usual three, and as a readable page.
PAGE_FORMATS = ("table", "json", "csv", "md", "html")


def add_page_format(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--format table|json|csv|md|html`` for a report that is also a page to hand on
    (``cli.report_pages``: tonnes, site codes only)."""
    sp.add_argument(
        "--format",
        choices=PAGE_FORMATS,
        default="table",
        help="table (default), json, csv, or a readable page: md (Markdown) or html",
    )
    return sp


def add_report_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write a self-contained HTML verification report (written on failure too)",
    )
    sp.add_argument(
        "--report-json", metavar="FILE", help="also write the verification report as JSON"
    )


def wants_report(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "report", None) or getattr(args, "report_json", None))


def run_verification(
    args: argparse.Namespace,
    run: Callable[[VerifyObserver | None], Report],
    *,
    source: dict[str, Any],
    entry_at: Callable[[int], bytes | None] | None = None,
    skipped: frozenset[str] = frozenset(),
) -> Report:
    """``run(None)`` without report options; otherwise with the report's collector."""
    if not wants_report(args):
        return run(None)
    from ledger.audit_report import verify_with_report

    return verify_with_report(
        run,
        html_path=Path(args.report) if args.report else None,
        json_path=Path(args.report_json) if args.report_json else None,
        source=source,
        entry_at=entry_at,
        skipped=skipped,
    )
