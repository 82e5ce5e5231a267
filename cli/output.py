"""How read commands print: ``--format table|json|csv`` (issue #9), table by default.

A read command hands over the document it read (what ``json`` prints, the same shape the
API returns) and its main table as headers and rows (what ``table`` and ``csv`` print).
Lines around a table (a lot trace's summary, a request's approvals) are table-only.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

FORMATS = ("table", "json", "csv")


def add_format(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    return sp


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = (
        [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
        if rows
        else [len(h) for h in headers]
    )
    for row in [headers, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False)).rstrip())


def emit(
    fmt: str,
    *,
    doc: Any,
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    text: Callable[[], None] | None = None,
) -> int:
    """Print ``doc`` as JSON, the rows as CSV, or (table) ``text()`` if given, else the
    rows as an aligned table."""
    if fmt == "json":
        print(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(headers)
        w.writerows([["" if x is None else x for x in r] for r in rows])
    elif text is not None:
        text()
    else:
        print_table(headers, rows)
    return 0
