"""``reserve bundle balances|trace|releases DIR``: an auditor's own answers from an export
bundle, offline, with only the core install (issue #10).

Decision: an answer from a bundle nobody verified would prove nothing, so every command
takes ``--trust`` (as ``verify-bundle``) and verifies the whole bundle first (manifest,
signatures, chain, rules, checkpoints, projections); the answers are the verifier's own
replay (:mod:`ledger.bundle_queries`), printed only if verification passed. A failed
verification is exit 1 and no answer.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from ledger.config import Settings
from ledger.units import format_quantity
from ledger.views import quantities_out


def add_parser(sub: Any) -> None:
    """Register the ``bundle`` group on the ``reserve`` parser's subcommands."""
    grp = sub.add_parser(
        "bundle", help="answers from a verified export bundle, offline (balances, trace, releases)"
    )
    gsub = grp.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")

    def common(name: str, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = gsub.add_parser(
            name, help=help_, description=help_ + " The bundle is verified first."
        )
        sp.add_argument("dir", metavar="DIR", help="the export bundle")
        sp.add_argument(
            "--trust",
            required=True,
            help="the log key, obtained out of band: 64 hex digits, a note verifier key, "
            "or a file holding one or a PEM key",
        )
        sp.add_argument("--jobs", type=int, default=1, help="processes for signature checks")
        sp.add_argument("--format", choices=["table", "json", "csv"], default="table")
        return sp

    sp = common("balances", "Balances now, or just after a seq, or as recorded by a time.")
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--as-of-seq", type=int, metavar="N", help="just after entry N")
    when.add_argument("--as-of", metavar="TIME", help="as recorded by the log at TIME (RFC 3339)")
    sp.add_argument("--owner")
    sp.add_argument("--material")
    sp.add_argument("--site")
    sp.add_argument("--lot")
    sp.add_argument(
        "--owner-key", metavar="FILE",
        help="an owner-scoped bundle (issue #14): that owner's key file; balances now only",
    )  # fmt: skip
    sp.set_defaults(fn=cmd_balances)

    sp = common("trace", "Where every gram of a lot went.")
    sp.add_argument("lot", metavar="LOT")
    sp.set_defaults(fn=cmd_trace)

    sp = common("releases", "Every release order with its approvals, cap and executions.")
    sp.set_defaults(fn=cmd_releases)


def _answers(a: argparse.Namespace, **kw: Any) -> Any:
    from cli.trust import trusted_key
    from ledger.bundle import Bundle
    from ledger.bundle_queries import BundleAnswers
    from ledger.verify import verify_history

    root = Path(a.dir)
    b = Bundle(root)
    trusted = trusted_key(a.trust, bundle_dir=root)
    answers = BundleAnswers(**kw)
    b.check_files()
    report = verify_history(
        b.rows(),
        b.checkpoints(),
        trusted_log_key=trusted,
        projections=b.projections(),
        jobs=a.jobs,
        expected_size=b.manifest.get("size"),
        observer=answers,
    )
    print(
        f"verified bundle: size {report.size} root {report.root.hex()} log {report.log_id}",
        file=sys.stderr,
    )
    return answers


def _emit(fmt: str, headers: list[str], rows: list[list[Any]], doc: Any, *, quantities: int = 0) -> None:
    """One answer in ``fmt``. Quantities (integer grams in ``rows``; the ``quantities``
    columns ending ``headers``, where given) come out as the API gives them (issue #12): the
    table shows the display unit; CSV has the display string and the exact integer beside it
    (``quantity``, ``quantity_g``); JSON is ``doc`` in the shape of ``ledger.views``."""
    first = len(headers) - quantities
    if fmt == "json":
        print(json.dumps(quantities_out(doc), indent=1))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        names = [h.lower().replace(" ", "_") for h in headers]
        w.writerow([*names[:first], *(n for q in names[first:] for n in (q, f"{q}_g"))])
        w.writerows(
            [*row[:first], *(x for g in row[first:] for x in (format_quantity(g), g))] for row in rows
        )
    else:
        shown = [[*row[:first], *(format_quantity(g) for g in row[first:])] for row in rows]
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *shown, strict=False)]
        for row in [headers, *shown]:
            print("  ".join(str(x).ljust(n) for x, n in zip(row, widths, strict=False)).rstrip())


def _scoped_balances(a: argparse.Namespace, scope: str) -> list[Any]:
    """An owner-scoped bundle's balances: the scoped verifier's own replay of the owner's
    holdings at the bundle's checkpoint (``ledger.owner_bundle``), printed only if it
    verified. No ``--as-of``: the scoped replay keeps only the end state."""
    from cli.files import read_text
    from cli.trust import trusted_key
    from ledger.errors import ConfigError
    from ledger.owner_bundle import verify_owner_bundle
    from ledger.report_rows import BalanceRow

    if a.owner_key is None:
        raise ConfigError(f"this bundle is scoped to owner {scope}: give its key file with --owner-key FILE")
    if a.as_of_seq is not None or a.as_of is not None:
        raise ConfigError("--as-of and --as-of-seq are not available on an owner-scoped bundle")
    if a.owner is not None and a.owner != scope:
        raise ConfigError(f"this bundle is scoped to owner {scope}, not {a.owner}")
    root = Path(a.dir)
    rep = verify_owner_bundle(
        root, owner=scope, key_file=read_text(a.owner_key, what="owner key file", stdin_ok=False),
        trusted_log_key=trusted_key(a.trust, bundle_dir=root),
    )  # fmt: skip
    print(
        f"verified {scope}'s scoped bundle: size {rep.size} root {rep.root.hex()} log {rep.log_id}",
        file=sys.stderr,
    )
    return [
        BalanceRow(r.account, scope, site, r.material, lot, r.quantity)
        for (site, lot), r in sorted(rep.balances.items())
        if (a.site is None or site == a.site)
        and (a.material is None or r.material == a.material)
        and (a.lot is None or lot == a.lot)
    ]


def cmd_balances(a: argparse.Namespace, s: Settings) -> int:
    from ledger.bundle import Bundle
    from ledger.report_rows import as_builtins

    scope = Bundle(Path(a.dir)).scope
    if scope is not None:
        rows = _scoped_balances(a, scope)
    else:
        ans = _answers(a, as_of_seq=a.as_of_seq, as_of=a.as_of)
        rows = ans.balances(owner=a.owner, site=a.site, material=a.material, lot=a.lot)
    _emit(
        a.format,
        ["OWNER", "SITE", "MATERIAL", "LOT", "QUANTITY"],
        [[r.owner, r.site, r.material, r.lot, r.quantity] for r in rows],
        [as_builtins(r) for r in rows],
        quantities=1,
    )
    return 0


def cmd_trace(a: argparse.Namespace, s: Settings) -> int:
    from ledger.report_rows import as_builtins

    t = _answers(a, lot=a.lot).trace()
    if a.format == "table":
        print(
            f"lot {t.lot} ({t.material}): {format_quantity(t.held)} held; "
            f"postings balance: {'yes' if t.balanced else 'NO'}"
        )
    headers = ["SEQ", "N", "RECORDED", "KIND", "ACCOUNT", "DELTA", "BALANCE"]
    rows = [[g.seq, g.n, g.recorded_at, g.kind, g.account, g.delta, g.balance_after] for g in t.legs]
    doc = as_builtins(t)
    _emit(a.format, headers, rows, doc, quantities=2)
    if a.format == "table":
        print()
        _emit("table", ["ACCOUNT", "NOW"], [[d.account, d.quantity] for d in t.distribution], None, quantities=1)
    return 0


def cmd_releases(a: argparse.Namespace, s: Settings) -> int:
    rel = _answers(a).releases()
    headers = [
        "ORDER", "SEQ", "OWNER", "MATERIAL", "REGIME", "APPROVALS", "QUORUM",
        "VALID UNTIL", "EXECUTIONS", "REVOKED", "CAP", "EXECUTED", "REMAINING",
    ]  # fmt: skip
    rows = [
        [
            o["id"], o["seq"], o["owner"], o["material"], o["regime"],
            ",".join(x["user"] for x in o["approvals"]), o["quorum"], o["valid_until"],
            len(o["executions"]), "-" if o["revoked_seq"] is None else o["revoked_seq"],
            o["cap"], o["executed"], o["remaining"],
        ]
        for o in rel["orders"]
    ]  # fmt: skip
    _emit(a.format, headers, rows, rel, quantities=3)
    return 0
