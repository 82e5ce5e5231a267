"""``reserve`` commands of the stock domain: reference data, movements and reports.

Quantities are typed as decimal strings with a unit ("12.5 t") and converted exactly
(``ledger.units``). A transfer, loan or movement may be named by its entry id or by the
``seq`` the CLI printed when it was recorded. A location is never typed on the command
line (it would land in shell history): it is read from a JSON file or standard input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import TYPE_CHECKING, Any

from cli.files import read_bytes, read_json
from ledger.config import Settings
from ledger.errors import ConfigError, InvalidEntry
from ledger.timefmt import now
from ledger.units import format_quantity, parse_quantity

if TYPE_CHECKING:
    from ledger.service import Ledger
    from ledger.store.log import AppendResult


def _qty(text: str, field: str, *, allow_zero: bool = False) -> int:
    value = parse_quantity(text, field=field)
    if value == 0 and not allow_zero:
        raise InvalidEntry("a movement moves a positive quantity", field=field)
    return value


def _done(kind: str, res: AppendResult) -> int:
    print(f"recorded {kind} at seq {res.first_seq}")
    return 0


def _read_file(path: str, what: str) -> bytes:
    return read_bytes(path, what=what)


def _containers(path: str | None) -> list[dict[str, Any]]:
    """The ``--containers`` file: a JSON list of objects, masses as "250 kg"."""
    if not path:
        return []
    containers = read_json(path, what="containers")
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        raise ConfigError('the containers file holds a JSON list of objects: [{"id","type","net_mass"}]')
    for c in containers:
        if isinstance(c.get("net_mass"), str):
            c["net_mass"] = _qty(c["net_mass"], "containers.net_mass")
    return containers


# -- reference data -------------------------------------------------------------------


def owner_add(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "owner.registered",
        led.act(user, "owner.registered", code=a.code, name=a.name, country=a.country),
    )


def material_add(led: Ledger, a: argparse.Namespace, user: str) -> int:
    res = led.act(
        user,
        "material.registered",
        code=a.code,
        name=a.name,
        form=a.form,
        base_unit="g",
        grade_basis=a.grade_basis,
    )
    return _done("material.registered", res)


def lot_add(led: Ledger, a: argparse.Namespace, user: str) -> int:
    containers = _containers(a.containers)
    res = led.act(
        user,
        "lot.registered",
        code=a.code,
        material=a.material,
        origin=a.origin,
        supplier=a.supplier,
        purity=a.purity,
        basis=a.basis,
        certificate_sha256=hashlib.sha256(_read_file(a.certificate, "certificate")).hexdigest(),
        containers=containers,
    )
    return _done("lot.registered", res)


def site_add(led: Ledger, a: argparse.Namespace, user: str) -> int:
    from ledger.locations import parse_location

    location = parse_location(_read_file(a.location_file, "location"))
    owners = _csv(a.owners) or [a.custodian]
    res = led.register_site(
        admin=user,
        code=a.code,
        classification=a.classification,
        custodian=a.custodian,
        owners=owners,
        location=location,
    )
    return _done("site.registered", res)


def site_relocate(led: Ledger, a: argparse.Namespace, user: str) -> int:
    from ledger.locations import parse_location

    location = parse_location(_read_file(a.location_file, "location"))
    return _done("site.relocated", led.relocate_site(admin=user, code=a.code, location=location))


def target_set(led: Ledger, a: argparse.Namespace, user: str) -> int:
    res = led.act(
        user,
        "target.set",
        owner=a.owner,
        material=a.material,
        days_of_cover=a.days,
        annual_quantity=_qty(a.annual, "annual_quantity"),
        basis=a.basis,
        valid_from=a.valid_from,
        valid_to=a.valid_to,
    )
    return _done("target.set", res)


# -- movements ------------------------------------------------------------------------


def _at(a: argparse.Namespace) -> str:
    return a.at or now()


def receive(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.receipt",
        led.act(
            user,
            "stock.receipt",
            site=a.site,
            owner=a.owner,
            lot=a.lot,
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
            supplier=a.supplier,
            accepted_purity=a.purity,
            reference=a.reference,
        ),
    )


def dispatch(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.dispatch",
        led.act(
            user,
            "stock.dispatch",
            site=a.site,
            owner=a.owner,
            lot=a.lot,
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
            to_site=a.to,
            reference=a.reference,
        ),
    )


def arrive(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.arrival",
        led.act(
            user,
            "stock.arrival",
            site=a.site,
            transfer=led.entry_ref(a.transfer),
            quantity=_qty(a.qty, "quantity", allow_zero=True),
            occurred_at=_at(a),
            shortfall_reason=a.shortfall_reason,
        ),
    )


def loan(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.loan_out",
        led.act(
            user,
            "stock.loan_out",
            site=a.site,
            owner=a.owner,
            lot=a.lot,
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
            borrower=a.borrower,
            due_at=a.due,
            premium_pct=a.premium,
            order=led.entry_ref(a.order),
        ),
    )


def release(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.release",
        led.act(
            user,
            "stock.release",
            site=a.site,
            owner=a.owner,
            lot=a.lot,
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
            order=led.entry_ref(a.order),
            recipient=a.recipient,
        ),
    )


def give_back(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.loan_return",
        led.act(
            user,
            "stock.loan_return",
            site=a.site,
            loan=led.entry_ref(a.loan),
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
        ),
    )


def sell(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.sale",
        led.act(
            user,
            "stock.sale",
            site=a.site,
            owner=a.owner,
            lot=a.lot,
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
            buyer=a.buyer,
            tender_ref=a.tender,
            order=led.entry_ref(a.order),
        ),
    )


def rotate(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.rotation",
        led.act(
            user,
            "stock.rotation",
            site=a.site,
            owner=a.owner,
            lot_out=a.lot_out,
            lot_in=a.lot_in,
            quantity=_qty(a.qty, "quantity"),
            occurred_at=_at(a),
            counterparty=a.counterparty,
        ),
    )


def convert(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.conversion",
        led.act(
            user,
            "stock.conversion",
            site=a.site,
            owner=a.owner,
            lot_in=a.lot_in,
            quantity_in=_qty(a.qty_in, "quantity_in"),
            lot_out=a.lot_out,
            quantity_out=_qty(a.qty_out, "quantity_out"),
            occurred_at=_at(a),
            processor=a.processor,
        ),
    )


def count(led: Ledger, a: argparse.Namespace, user: str) -> int:
    from ledger.service import new_body

    body = new_body(
        "stock.count",
        user,
        site=a.site,
        owner=a.owner,
        lot=a.lot,
        book=_qty(a.book, "book", allow_zero=True),
        counted=_qty(a.counted, "counted", allow_zero=True),
        occurred_at=_at(a),
    )
    signers = [led.signer_for(user)] + (
        [led.signer_for(a.second_officer)] if a.second_officer else []
    )
    return _done("stock.count", led.submit(body, signers))


def reverse(led: Ledger, a: argparse.Namespace, user: str) -> int:
    return _done(
        "stock.reversal",
        led.act(
            user,
            "stock.reversal",
            site=a.site,
            reverses=led.entry_ref(a.ref),
            occurred_at=_at(a),
            reason=a.reason,
        ),
    )


# -- reading --------------------------------------------------------------------------


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = (
        [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
        if rows
        else [len(h) for h in headers]
    )
    for row in [headers, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False)).rstrip())


def list_reference(engine: Any, table: str) -> int:
    from ledger.store.projections import read_table

    with engine.connect() as conn:
        rows = read_table(conn, table)
    if table == "owners":
        _print_table(
            ["CODE", "NAME", "COUNTRY"], [[r.code, r.name, r.country] for r in rows.values()]
        )
    elif table == "materials":
        _print_table(
            ["CODE", "NAME", "FORM", "GRADE BASIS"],
            [[r.code, r.name, r.form, r.grade_basis] for r in rows.values()],
        )
    elif table == "lots":
        _print_table(
            ["CODE", "MATERIAL", "ORIGIN", "PURITY", "BASIS"],
            [[r.code, r.material, r.origin, r.purity + "%", r.basis] for r in rows.values()],
        )
    else:  # sites: codes only, never a location
        _print_table(
            ["CODE", "CLASSIFICATION", "CUSTODIAN", "OWNERS", "LAST COUNT"],
            [
                [r.code, r.classification, r.custodian, ",".join(r.owners), r.last_count_at or "-"]
                for r in rows.values()
            ],
        )
    return 0


def show_balances(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import reports

    with engine.begin() as conn:
        seq = a.as_of_seq
        if a.as_of is not None:
            seq = reports.seq_at_time(conn, a.as_of)
        rows = reports.balances(
            conn, owner=a.owner, site=a.site, material=a.material, lot=a.lot, as_of_seq=seq
        )
    _print_table(
        ["OWNER", "SITE", "MATERIAL", "LOT", "QUANTITY"],
        [[r.owner, r.site, r.material, r.lot, format_quantity(r.quantity)] for r in rows],
    )
    return 0


def show_trace(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import reports

    with engine.begin() as conn:
        t = reports.trace_lot(conn, a.lot)
    print(
        f"lot {t.lot} ({t.material}): {format_quantity(t.held)} held; postings balance: {'yes' if t.balanced else 'NO'}"
    )
    _print_table(
        ["SEQ", "RECORDED", "KIND", "ACCOUNT", "DELTA", "BALANCE"],
        [
            [leg.seq, leg.recorded_at, leg.kind, leg.account, leg.delta, leg.balance_after]
            for leg in t.legs
        ],
    )
    print()
    _print_table(
        ["ACCOUNT", "NOW"], [[d.account, format_quantity(d.quantity)] for d in t.distribution]
    )
    return 0


def show_cover(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import reports

    with engine.begin() as conn:
        rows = reports.cover(conn, owners=_csv(a.owner) or None, at=a.at or now())
    _print_table(
        ["OWNER", "MATERIAL", "HELD", "ANNUAL", "DAYS HELD", "TARGET DAYS", "SHORTFALL"],
        [
            [
                r.owner,
                r.material,
                format_quantity(r.held),
                format_quantity(r.annual_quantity),
                r.days_held,
                r.target_days,
                format_quantity(r.shortfall),
            ]
            for r in rows
        ],
    )
    return 0


def show_crma(engine: Any, a: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ledger.store import reports

    with engine.begin() as conn:
        rep = reports.crma_report(conn, owners=_csv(a.owner) or None, year=a.year)
    print(json.dumps(asdict(rep), indent=2, default=str))
    return 0


def show_loans(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import reports

    with engine.begin() as conn:
        if a.overdue:
            rows: list[Any] = list(reports.overdue_loans(conn, now=now()))
        else:
            from ledger.store.projections import read_table

            rows = sorted(read_table(conn, "loans").values(), key=lambda r: r.lent_seq)
    _print_table(
        ["LOAN", "OWNER", "SITE", "LOT", "BORROWER", "OUTSTANDING", "DUE"],
        [
            [
                r.id[:12],
                r.owner,
                r.site,
                r.lot,
                r.borrower,
                format_quantity(r.outstanding),
                r.due_at,
            ]
            for r in rows
        ],
    )
    return 0


# -- wiring ---------------------------------------------------------------------------



def register(sub: Any, *, writer: Any, reader: Any) -> None:
    """Add the stock commands to the top-level parser. ``writer(fn)`` and ``reader(fn)``
    wrap a handler with the acting user's ledger, or a read-only engine."""

    def acting(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--as", dest="as_user", metavar="USER", help="whose key signs (or RESERVE_USER)"
        )
        return sp

    def group(name: str, help_: str) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        return p.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

    g = group("owner", "owners of stock")
    sp = acting(g.add_parser("add", help="register an owner (security admin)"))
    (
        sp.add_argument("code"),
        sp.add_argument("--name", required=True),
        sp.add_argument("--country", required=True),
    )
    sp.set_defaults(fn=writer(owner_add))
    g.add_parser("list", help="owners").set_defaults(
        fn=reader(lambda e, a: list_reference(e, "owners"))
    )

    g = group("material", "materials")
    sp = acting(g.add_parser("add", help="register a material (security admin)"))
    sp.add_argument("code"), sp.add_argument("--name", required=True)
    sp.add_argument(
        "--form", required=True, choices=["oxide", "metal", "alloy", "concentrate", "compound"]
    )
    sp.add_argument("--grade-basis", required=True, help="what purity is relative to, e.g. TREO")
    sp.set_defaults(fn=writer(material_add))
    g.add_parser("list", help="materials").set_defaults(
        fn=reader(lambda e, a: list_reference(e, "materials"))
    )

    g = group("lot", "lots")
    sp = acting(g.add_parser("add", help="register a lot (operator or official)"))
    sp.add_argument("code")
    for opt in ("--material", "--origin", "--supplier", "--purity", "--basis"):
        sp.add_argument(opt, required=True)
    sp.add_argument(
        "--certificate", required=True, help="assay certificate file (its SHA-256 is recorded)"
    )
    sp.add_argument("--containers", help='JSON file: [{"id","type","net_mass": "250 kg"}]')
    sp.set_defaults(fn=writer(lot_add))
    g.add_parser("list", help="lots").set_defaults(
        fn=reader(lambda e, a: list_reference(e, "lots"))
    )

    g = group("site", "warehouse sites (codes only; locations are sealed)")
    sp = acting(g.add_parser("add", help="register a site (security admin)"))
    sp.add_argument("code")
    sp.add_argument(
        "--classification", required=True, choices=["RESTRICTED", "CONFIDENTIAL", "SECRET"]
    )
    sp.add_argument("--custodian", required=True)
    sp.add_argument("--owners", help="owners it holds stock for (default: the custodian)")
    sp.add_argument(
        "--location-file",
        required=True,
        help="JSON {name,address,latitude,longitude[,notes]} or - for stdin",
    )
    sp.set_defaults(fn=writer(site_add))
    sp = acting(g.add_parser("relocate", help="commit to a new location (security admin)"))
    sp.add_argument("code"), sp.add_argument("--location-file", required=True)
    sp.set_defaults(fn=writer(site_relocate))
    g.add_parser("list", help="sites by code").set_defaults(
        fn=reader(lambda e, a: list_reference(e, "sites"))
    )

    g = group("target", "stock targets")
    sp = acting(g.add_parser("set", help="set a target in days of cover (official)"))
    for opt in ("--owner", "--material", "--annual"):
        sp.add_argument(opt, required=True)
    sp.add_argument("--days", type=int, required=True)
    sp.add_argument("--basis", choices=["consumption", "net_imports"], default="consumption")
    sp.add_argument("--from", dest="valid_from", required=True)
    sp.add_argument("--to", dest="valid_to", required=True)
    sp.set_defaults(fn=writer(target_set))

    g = group("stock", "record stock movements (operators)")

    def mv(
        name: str, fn: Any, help_: str, *opts: str, owner_lot: bool = True
    ) -> argparse.ArgumentParser:
        sp = acting(g.add_parser(name, help=help_, description=help_))
        sp.add_argument("--site", required=True)
        if owner_lot:
            sp.add_argument("--owner", required=True)
        for opt in opts:
            sp.add_argument(opt, required=True)
        sp.add_argument("--at", help="when it happened (RFC 3339 UTC, default now)")
        sp.set_defaults(fn=writer(fn))
        return sp

    mv(
        "receive",
        receive,
        "a receipt from a supplier",
        "--lot",
        "--qty",
        "--supplier",
        "--purity",
        "--reference",
    )
    mv("dispatch", dispatch, "send stock to another site", "--lot", "--qty", "--to", "--reference")
    sp = mv("arrive", arrive, "record a transfer's arrival", "--transfer", "--qty", owner_lot=False)
    sp.add_argument("--shortfall-reason", default="")
    mv(
        "release",
        release,
        "hand stock over to the recipient of an emergency-release order",
        "--lot",
        "--qty",
        "--order",
        "--recipient",
    )
    mv(
        "loan",
        loan,
        "lend stock under a loan order",
        "--lot",
        "--qty",
        "--order",
        "--borrower",
        "--due",
        "--premium",
    )
    mv("return", give_back, "record lent stock coming back", "--loan", "--qty", owner_lot=False)
    mv(
        "sell",
        sell,
        "a sale under a sale order",
        "--lot",
        "--qty",
        "--order",
        "--buyer",
        "--tender",
    )
    mv(
        "rotate",
        rotate,
        "rotate old stock for new of equal or better grade",
        "--lot-out",
        "--lot-in",
        "--qty",
        "--counterparty",
    )
    mv(
        "convert",
        convert,
        "process one lot into another",
        "--lot-in",
        "--qty-in",
        "--lot-out",
        "--qty-out",
        "--processor",
    )
    sp = mv("count", count, "a stock count", "--lot", "--book", "--counted")
    sp.add_argument("--second-officer", help="co-signing officer, needed beyond the tolerance")
    sp = mv(
        "reverse",
        reverse,
        "reverse an earlier movement (within 30 days)",
        "--reason",
        owner_lot=False,
    )
    sp.add_argument("ref", help="seq or entry id of the movement")

    sp = sub.add_parser("balances", help="balances now or as of a past seq or time")
    for opt in ("--owner", "--site", "--material", "--lot"):
        sp.add_argument(opt)
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--as-of-seq", type=int)
    when.add_argument("--as-of", help="RFC 3339 UTC time (as recorded by the log)")
    sp.set_defaults(fn=reader(show_balances))
    sp = sub.add_parser("trace", help="where every gram of a lot went")
    sp.add_argument("lot")
    sp.set_defaults(fn=reader(show_trace))
    sp = sub.add_parser("cover", help="stock against target, in days of cover")
    sp.add_argument("--owner"), sp.add_argument("--at")
    sp.set_defaults(fn=reader(show_cover))
    report = sub.add_parser("report", help="reports").add_subparsers(
        dest="report", required=True, metavar="REPORT"
    )
    sp = report.add_parser("crma", help="EU CRMA Art. 22 aggregate (no site named)")
    sp.add_argument("--owner"), sp.add_argument("--year", type=int, default=int(now()[:4]))
    sp.set_defaults(fn=reader(show_crma))
    sp = sub.add_parser("loans", help="open loans")
    sp.add_argument("--overdue", action="store_true")
    sp.set_defaults(fn=reader(show_loans))


def writer_factory(ledger_for: Any, acting_user: Any) -> Any:
    def writer(fn: Any) -> Any:
        def run(args: argparse.Namespace, settings: Settings) -> int:
            return int(fn(ledger_for(settings), args, acting_user(args, settings)))

        return run

    return writer


def reader_factory(engine_for: Any) -> Any:
    def reader(fn: Any) -> Any:
        def run(args: argparse.Namespace, settings: Settings) -> int:
            return int(fn(engine_for(settings), args))

        return run

    return reader
