"""``reserve`` commands of the stock domain: reference data, movements and reports.

Quantities are typed as decimal strings with a unit ("12.5 t") and converted exactly
(``ledger.units``). A transfer, loan or movement may be named by its entry id, a unique id
prefix of 8+ characters (issue #12) or by the
``seq`` the CLI printed when it was recorded. A location is never typed on the command
line (it would land in shell history): it is read from a JSON file or standard input.

Movements are table-driven (issue #9 item 7): one :class:`Movement` spec per kind names
its flags, their types and the body fields they fill; one function builds every parser
and one builds every body. Every command calls a :class:`cli.backend.Backend`, so it runs
the same against the local database or, as a client, against the service.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cli.files import read_bytes, read_json
from cli.output import add_format, emit, print_table
from cli.report_opts import add_page_format
from ledger.errors import ConfigError, InvalidEntry
from ledger.refs import FIELD_KINDS
from ledger.timefmt import now
from ledger.units import format_quantity, parse_quantity

if TYPE_CHECKING:
    from cli.backend import Backend, Written

Handler = Callable[["Backend", argparse.Namespace], int]


def _qty(text: str, field: str, *, allow_zero: bool = False) -> int:
    value = parse_quantity(text, field=field)
    if value == 0 and not allow_zero:
        raise InvalidEntry("a movement moves a positive quantity", field=field)
    return value


def done(w: Written) -> int:
    """The one line a write prints: where it was appended, or the proposal it opened."""
    if w.proposal is not None:
        p = w.proposal
        waiting = ", ".join(str(c) for c in p.get("cosigners") or []) or "-"
        print(f"proposed {w.kind}: proposal {p.get('id')} waits for {waiting} (expires {p.get('expires_at', '-')})")
    else:
        print(f"recorded {w.kind} at seq {w.seq}")
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


def csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _act(b: Backend, kind: str, cosigners: list[str] | None = None, /, **fields: Any) -> int:
    from ledger.bodies import new_body

    return done(b.append(new_body(kind, b.acting_user(), **fields), cosigners=cosigners or []))


# -- reference data -------------------------------------------------------------------


def owner_add(b: Backend, a: argparse.Namespace) -> int:
    return _act(b, "owner.registered", code=a.code, name=a.name, country=a.country)


def material_add(b: Backend, a: argparse.Namespace) -> int:
    return _act(
        b, "material.registered", code=a.code, name=a.name, form=a.form, base_unit="g", grade_basis=a.grade_basis
    )


def lot_add(b: Backend, a: argparse.Namespace) -> int:
    return _act(
        b,
        "lot.registered",
        code=a.code,
        material=a.material,
        origin=a.origin,
        supplier=a.supplier,
        purity=a.purity,
        basis=a.basis,
        certificate_sha256=hashlib.sha256(_read_file(a.certificate, "certificate")).hexdigest(),
        containers=_containers(a.containers),
    )


SITE_LOCAL_ONLY = "registering or relocating a site (its location is sealed on the server)"


def site_add(b: Backend, a: argparse.Namespace) -> int:
    from ledger.locations import parse_location

    led = b.local_ledger(SITE_LOCAL_ONLY)
    location = parse_location(_read_file(a.location_file, "location"))
    res = led.register_site(
        admin=b.acting_user(),
        code=a.code,
        classification=a.classification,
        custodian=a.custodian,
        owners=csv_list(a.owners) or [a.custodian],
        location=location,
    )
    print(f"recorded site.registered at seq {res.first_seq}")
    return 0


def site_relocate(b: Backend, a: argparse.Namespace) -> int:
    from ledger.locations import parse_location

    led = b.local_ledger(SITE_LOCAL_ONLY)
    location = parse_location(_read_file(a.location_file, "location"))
    res = led.relocate_site(admin=b.acting_user(), code=a.code, location=location)
    print(f"recorded site.relocated at seq {res.first_seq}")
    return 0


def target_set(b: Backend, a: argparse.Namespace) -> int:
    return _act(
        b,
        "target.set",
        owner=a.owner,
        material=a.material,
        days_of_cover=a.days_of_cover,
        annual_quantity=_qty(a.annual_quantity, "annual_quantity"),
        basis=a.basis,
        valid_from=_time(a.valid_from, "valid_from") if a.valid_from else now(),
        valid_to=_time(a.valid_to, "valid_to"),
    )


# -- movements: one spec each ---------------------------------------------------------

TEXT, QTY, QTY0, REF, TIME = "text", "qty", "qty0", "ref", "time"


def add_field_flag(
    sp: argparse.ArgumentParser, field: str, *, help: str | None = None, **kw: Any
) -> None:
    """The flag of body field ``field`` (issue #12, one vocabulary: ``--to-site`` fills
    ``to_site``), with its old names as deprecated aliases and its help from the
    vocabulary (``ledger.kinds.vocabulary``)."""
    from ledger.kinds.vocabulary import TERMS, flag

    t = TERMS.get(field)
    old = t.old_flags if t else ()
    words = help or (t.description if t else None)
    if old and words is not None:
        words = f"{words} (formerly {', '.join(old)}: deprecated)"
    words = words.replace("%", "%%") if words is not None else None  # argparse formats help with %
    # The old names are marked in the help, not warned about when used: a command's
    # refusal stays one line on stderr (README, exit codes).
    sp.add_argument(flag(field), *old, dest=field, help=words, **kw)


@dataclass(frozen=True)
class Flag:
    """A movement flag filling body ``field`` (the flag is the field's name, ``--to-site``),
    after conversion by ``type`` (text; quantity; quantity that may be zero; entry
    reference by id or seq)."""

    field: str
    type: str = TEXT
    required: bool = True
    default: str | None = None
    help: str | None = None
    positional: bool = False


@dataclass(frozen=True)
class Movement:
    action: str
    kind: str
    help: str
    flags: tuple[Flag, ...]
    owner: bool = True  # takes --owner (movements of one holding)
    cosigner_flag: str | None = None  # a flag naming a co-signer (an officer, a minister)


def _q(field: str = "quantity", type_: str = QTY) -> Flag:
    return Flag(field, type_)


MOVEMENTS: tuple[Movement, ...] = (
    Movement("receive", "stock.receipt", "a receipt from a supplier",
             (Flag("lot"), _q(), Flag("supplier"), Flag("accepted_purity"), Flag("reference"),
              Flag("purity_deviation_reason", required=False))),
    Movement("dispatch", "stock.dispatch", "send stock to another site",
             (Flag("lot"), _q(), Flag("to_site"), Flag("reference"))),
    Movement("arrive", "stock.arrival", "record a transfer's arrival",
             (Flag("transfer", REF), _q(type_=QTY0), Flag("shortfall_reason", required=False, default="")),
             owner=False),
    Movement("release", "stock.release", "hand stock over to the recipient of an emergency-release order",
             (Flag("lot"), _q(), Flag("order", REF), Flag("recipient"))),
    Movement("loan", "stock.loan_out", "lend stock under a loan order",
             (Flag("lot"), _q(), Flag("order", REF), Flag("borrower"), Flag("due_at", TIME), Flag("premium_pct"))),
    Movement("return", "stock.loan_return", "record lent stock coming back",
             (Flag("loan", REF), _q()), owner=False),
    Movement("sell", "stock.sale", "a sale under a sale order",
             (Flag("lot"), _q(), Flag("order", REF), Flag("buyer"), Flag("tender_ref"))),
    Movement("rotate", "stock.rotation", "rotate old stock for new of equal or better grade",
             (Flag("lot_out"), Flag("lot_in"), _q(), Flag("counterparty"))),
    Movement("convert", "stock.conversion", "process one lot into another",
             (Flag("lot_in"), _q("quantity_in"), Flag("lot_out"), _q("quantity_out"), Flag("processor"))),
    Movement("count", "stock.count", "a stock count",
             (Flag("lot"), _q("book", QTY0), _q("counted", QTY0)),
             cosigner_flag="--second-officer"),
    Movement("reverse", "stock.reversal", "reverse an earlier movement (within 30 days)",
             (Flag("reason"),
              Flag("reverses", REF, positional=True, help="seq, entry id or id prefix (8+ characters) of the movement")), owner=False),
)


def _time(value: str, field: str) -> str:
    """A time as the log keeps it: any RFC 3339 offset is converted to UTC (issue #12)."""
    from ledger.kinds.requests import to_utc

    return to_utc(value, field=field)


def movement_body_fields(m: Movement, b: Backend, a: argparse.Namespace) -> dict[str, Any]:
    """The body fields of movement ``m`` from parsed flags ``a``."""
    fields: dict[str, Any] = {"site": a.site}
    if m.owner:
        fields["owner"] = a.owner
    for f in m.flags:
        value = getattr(a, f.field)
        if value is None and not f.required:
            continue
        if f.type in (QTY, QTY0):
            value = _qty(value, f.field, allow_zero=f.type == QTY0)
        elif f.type == REF:
            value = b.entry_ref(value, kinds=FIELD_KINDS.get(f.field, ()))
        elif f.type == TIME:
            value = _time(value, f.field)
        fields[f.field] = value
    fields["occurred_at"] = _time(a.occurred_at, "occurred_at") if a.occurred_at else now()
    return fields


def movement_handler(m: Movement) -> Handler:
    def run(b: Backend, a: argparse.Namespace) -> int:
        cosigner = getattr(a, m.cosigner_flag.lstrip("-").replace("-", "_")) if m.cosigner_flag else None
        return _act(b, m.kind, [cosigner] if cosigner else [], **movement_body_fields(m, b, a))

    return run


def add_movement(g: Any, m: Movement, *, acting: Callable[[argparse.ArgumentParser], Any], wrap: Any) -> None:
    sp: argparse.ArgumentParser = acting(g.add_parser(m.action, help=m.help, description=m.help))
    add_field_flag(sp, "site", required=True)
    if m.owner:
        add_field_flag(sp, "owner", required=True)
    for f in m.flags:
        if f.positional:
            sp.add_argument(f.field, help=f.help)
        else:
            add_field_flag(sp, f.field, required=f.required, default=f.default, help=f.help)
    if m.cosigner_flag:
        sp.add_argument(
            m.cosigner_flag,
            metavar="NAME",
            help="co-signing officer, needed beyond the tolerance: in client mode a proposal "
            "that they sign with their own key",
        )
    add_field_flag(sp, "occurred_at")
    sp.set_defaults(fn=wrap(movement_handler(m)))


# -- reading --------------------------------------------------------------------------


def _dash(v: Any) -> Any:
    return "-" if v is None or v == "" else v


REFERENCE_VIEWS: dict[str, tuple[str, list[str], Callable[[dict[str, Any]], list[Any]]]] = {
    "owners": ("/registry/owners", ["CODE", "NAME", "COUNTRY"], lambda r: [r["code"], r["name"], r["country"]]),
    "materials": (
        "/registry/materials",
        ["CODE", "NAME", "FORM", "GRADE BASIS"],
        lambda r: [r["code"], r["name"], r["form"], r["grade_basis"]],
    ),
    "lots": (
        "/registry/lots",
        ["CODE", "MATERIAL", "ORIGIN", "PURITY", "BASIS"],
        lambda r: [r["code"], r["material"], r["origin"], r["purity"] + "%", r["basis"]],
    ),
    # Sites: codes only, never a location.
    "sites": (
        "/sites",
        ["CODE", "CLASSIFICATION", "CUSTODIAN", "OWNERS", "LAST COUNT"],
        lambda r: [r["code"], r["classification"], r["custodian"], ",".join(r["owners"]), _dash(r["last_count_at"])],
    ),
}


def list_reference(b: Backend, a: argparse.Namespace, table: str) -> int:
    path, headers, row = REFERENCE_VIEWS[table]
    doc = b.read(path)
    return emit(a.format, doc=doc, headers=headers, rows=[row(r) for r in doc[table]])


def show_balances(b: Backend, a: argparse.Namespace) -> int:
    doc = b.read(
        "/balances", owner=a.owner, site=a.site, material=a.material, lot=a.lot, as_of_seq=a.as_of_seq, as_of=a.as_of
    )
    return emit(
        a.format,
        doc=doc,
        headers=["OWNER", "SITE", "MATERIAL", "LOT", "QUANTITY"],
        rows=[[r["owner"], r["site"], r["material"], r["lot"], r["quantity"]] for r in doc["balances"]],
    )


def show_trace(b: Backend, a: argparse.Namespace) -> int:
    from urllib.parse import quote

    doc = b.read(f"/lots/{quote(a.lot, safe='')}/trace")
    headers = ["SEQ", "RECORDED", "KIND", "ACCOUNT", "DELTA", "BALANCE"]
    rows = [
        [x["seq"], x["recorded_at"], x["kind"], x["account"], x["delta_g"], _dash(x.get("balance_after_g"))]
        for x in doc["legs"]
    ]

    def text() -> None:
        held = f"{format_quantity(doc['held_g'])} held; " if "held_g" in doc else ""
        print(f"lot {doc['lot']} ({doc['material']}): {held}postings balance: {'yes' if doc['balanced'] else 'NO'}")
        print_table(headers, rows)
        if doc.get("distribution"):
            print()
            print_table(
                ["ACCOUNT", "NOW"], [[d["account"], format_quantity(d["quantity_g"])] for d in doc["distribution"]]
            )

    return emit(a.format, doc=doc, headers=headers, rows=rows, text=text)


def show_cover(b: Backend, a: argparse.Namespace) -> int:
    doc = b.read("/cover", at=a.at, owner=a.owner)
    wanted = set(csv_list(a.owner))
    rows = [r for r in doc["cover"] if not wanted or r["owner"] in wanted]
    return emit(
        a.format,
        doc={**doc, "cover": rows},
        headers=["OWNER", "MATERIAL", "HELD", "ANNUAL", "DAYS HELD", "TARGET DAYS", "SHORTFALL"],
        rows=[
            [
                r["owner"],
                r["material"],
                format_quantity(r["held"]),
                format_quantity(r["annual_quantity"]),
                r["days_held"],
                r["target_days"],
                format_quantity(r["shortfall"]),
            ]
            for r in rows
        ],
    )


def show_crma(b: Backend, a: argparse.Namespace) -> int:
    from cli.report_pages import CRMA_HEADERS, crma_page, crma_rows

    doc = b.read("/reports/crma", owner=a.owner, year=a.year)
    if a.format in ("md", "html"):  # issue #12: a page to hand on, in tonnes, no site
        print(crma_page(doc, a.format), end="")
        return 0
    return emit(a.format, doc=doc, headers=CRMA_HEADERS, rows=crma_rows(doc))


def show_loans(b: Backend, a: argparse.Namespace) -> int:
    doc = b.read("/loans/overdue" if a.overdue else "/registry/loans")
    return emit(
        a.format,
        doc=doc,
        headers=["LOAN", "OWNER", "SITE", "LOT", "BORROWER", "OUTSTANDING", "DUE"],
        rows=[
            [r["id"][:12], r["owner"], r["site"], r["lot"], r["borrower"], format_quantity(r["outstanding_g"]
             if "outstanding_g" in r else r["outstanding"]), r["due_at"]]
            for r in doc["loans"]
        ],
    )


# -- wiring ---------------------------------------------------------------------------


def register(sub: Any, *, wrap: Any) -> None:
    """Add the stock commands to the top-level parser. ``wrap(fn)`` turns a handler of
    ``(backend, args)`` into the parser's ``fn``."""

    def acting(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--as", dest="as_user", metavar="USER", help="whose key signs (or RESERVE_USER)"
        )
        return sp

    def group(name: str, help_: str) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        return p.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

    def lister(g: Any, table: str, help_: str) -> None:
        sp = add_format(g.add_parser("list", help=help_))
        sp.set_defaults(fn=wrap(lambda b, a: list_reference(b, a, table)))

    g = group("owner", "owners of stock")
    sp = acting(g.add_parser("add", help="register an owner (security admin)"))
    sp.add_argument("code")
    sp.add_argument("--name", required=True)
    sp.add_argument("--country", required=True)
    sp.set_defaults(fn=wrap(owner_add))
    lister(g, "owners", "owners")

    g = group("material", "materials")
    sp = acting(g.add_parser("add", help="register a material (security admin)"))
    sp.add_argument("code")
    sp.add_argument("--name", required=True)
    sp.add_argument(
        "--form", required=True, choices=["oxide", "metal", "alloy", "concentrate", "compound"]
    )
    sp.add_argument("--grade-basis", required=True, help="what purity is relative to, e.g. TREO")
    sp.set_defaults(fn=wrap(material_add))
    lister(g, "materials", "materials")

    g = group("lot", "lots")
    sp = acting(g.add_parser("add", help="register a lot (operator or official)"))
    sp.add_argument("code")
    for opt in ("--material", "--origin", "--supplier", "--purity", "--basis"):
        sp.add_argument(opt, required=True)
    sp.add_argument(
        "--certificate", required=True, help="assay certificate file (its SHA-256 is recorded)"
    )
    sp.add_argument("--containers", help='JSON file: [{"id","type","net_mass": "250 kg"}]')
    sp.set_defaults(fn=wrap(lot_add))
    lister(g, "lots", "lots")

    g = group("site", "warehouse sites (codes only; locations are sealed)")
    sp = acting(g.add_parser("add", help="register a site (security admin; local mode on the server)"))
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
    sp.set_defaults(fn=wrap(site_add))
    sp = acting(g.add_parser("relocate", help="commit to a new location (security admin; local mode)"))
    sp.add_argument("code")
    sp.add_argument("--location-file", required=True)
    sp.set_defaults(fn=wrap(site_relocate))
    lister(g, "sites", "sites by code")

    g = group("target", "stock targets")
    sp = acting(g.add_parser("set", help="set a target in days of cover (official)"))
    for field in ("owner", "material", "annual_quantity", "valid_to"):
        add_field_flag(sp, field, required=True)
    add_field_flag(sp, "days_of_cover", type=int, required=True)
    add_field_flag(sp, "valid_from")
    sp.add_argument("--basis", choices=["consumption", "net_imports"], default="consumption")
    sp.set_defaults(fn=wrap(target_set))

    g = group("stock", "record stock movements (operators)")
    for m in MOVEMENTS:
        add_movement(g, m, acting=acting, wrap=wrap)

    sp = add_format(sub.add_parser("balances", help="balances now or as of a past seq or time"))
    for opt in ("--owner", "--site", "--material", "--lot"):
        sp.add_argument(opt)
    when = sp.add_mutually_exclusive_group()
    when.add_argument("--as-of-seq", type=int)
    when.add_argument("--as-of", help="RFC 3339 UTC time (as recorded by the log)")
    sp.set_defaults(fn=wrap(show_balances))
    sp = add_format(sub.add_parser("trace", help="where every gram of a lot went"))
    sp.add_argument("lot")
    sp.set_defaults(fn=wrap(show_trace))
    sp = add_format(sub.add_parser("cover", help="stock against target, in days of cover"))
    sp.add_argument("--owner")
    sp.add_argument("--at")
    sp.set_defaults(fn=wrap(show_cover))
    report = sub.add_parser("report", help="reports").add_subparsers(
        dest="report", required=True, metavar="REPORT"
    )
    sp = add_page_format(report.add_parser("crma", help="EU CRMA Art. 22 aggregate (no site named)"))
    sp.add_argument("--owner")
    sp.add_argument("--year", type=int, default=int(now()[:4]))
    sp.set_defaults(fn=wrap(show_crma))
    sp = add_format(sub.add_parser("loans", help="open loans"))
    sp.add_argument("--overdue", action="store_true")
    sp.set_defaults(fn=wrap(show_loans))
