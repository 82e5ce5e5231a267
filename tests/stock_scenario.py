"""A small, realistic stock history, reusable by any test that needs one.

``build_scenario(led)`` registers two owners, three materials, users, two sites and
six lots, then records every kind of movement but a release: receipts, a transfer that
arrives short, a sale, a loan and a partial return, a rotation, a conversion, a stock
count within tolerance, and targets. The sale and the loan each execute a ministerial
order (issue #5): a release policy for JP NDPR (quorum 1), a request by fiona, felix's
approval and mina's order. It returns the
important entry ids and the balances every account should end with, so tests can
check against numbers written down by hand rather than against the code under test.

Quantities are grams. ``clock`` gives every ``occurred_at`` (default: the real clock;
pass the log's own clock when the test backdates the log). Movements are recorded in
``occurred_at`` order, so nothing is dated before a site's last count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from ledger import timefmt
from ledger.records import CONVERSION, LOANS, LOSS, ROTATION, TRANSIT, holding, virtual
from ledger.service import Ledger, new_body
from ledger.store.schema import entries
from ledger.timefmt import format_time, parse_time

JP = "JP-RESERVE"
EU = "EU-JOINT"
SITE_A = "SITE-7F3K"  # custodian JP-RESERVE
SITE_B = "SITE-2B9Q"  # custodian EU-JOINT
SITES = (SITE_A, SITE_B)

NDPR = "NDPR-OXIDE"
DY = "DY-METAL"
GA = "GA-METAL"

LOT_NDPR_1 = "NDPR-2025-001"  # 99.50 % TREO
LOT_NDPR_2 = "NDPR-2025-002"  # 99.70 % TREO, rotated in
LOT_DY_1 = "DY-2025-001"
LOT_GA_4N = "GA-2025-4N"  # 99.99 %, partly upgraded to ...
LOT_GA_6N = "GA-2025-6N"  # ... 99.9999 %
LOT_GA_SPARE = "GA-2025-SPARE"  # registered, never moved

SUPPLIER_NDPR = "Lynas Rare Earths"
SUPPLIER_DY = "Shenghe Resources"
SUPPLIER_GA = "Umicore"
BUYER = "Shin-Etsu Chemical"
BORROWER = "Proterial Ltd"

USERS: list[tuple[str, list[str], list[str], list[str], str]] = [
    # user, roles, sites, owners, clearance
    ("olga", ["operator"], [SITE_A], [], "SECRET"),
    ("omar", ["operator"], [SITE_B], [], "RESTRICTED"),
    ("fiona", ["official"], [], [JP], "NONE"),
    ("elena", ["official"], [], [EU], "NONE"),
    ("felix", ["official"], [], [JP], "NONE"),
    ("mina", ["minister"], [], [JP], "CONFIDENTIAL"),
]

COMMITMENT = "ab" * 32  # a dummy: sealing locations is tested elsewhere


def _cert(n: int) -> str:
    return f"{n:02x}" * 32


def _shift(t: str, **delta: float) -> str:
    return format_time(parse_time(t) + timedelta(**delta))


def build_scenario(led: Ledger, *, clock: Callable[[], str] = timefmt.now) -> dict[str, Any]:
    """Record the scenario on an initialised ledger (genesis only, ``admin`` key)."""
    act = led.act

    # -- reference data ----------------------------------------------------------------
    act("admin", "owner.registered", code=JP, name="JOGMEC national reserve", country="JP")
    act("admin", "owner.registered", code=EU, name="EU joint stockpile", country="EU")
    act(
        "admin",
        "material.registered",
        code=NDPR,
        name="Neodymium-praseodymium oxide",
        form="oxide",
        base_unit="g",
        grade_basis="TREO",
    )
    act(
        "admin",
        "material.registered",
        code=DY,
        name="Dysprosium metal",
        form="metal",
        base_unit="g",
        grade_basis="TREM",
    )
    act(
        "admin",
        "material.registered",
        code=GA,
        name="Gallium metal",
        form="metal",
        base_unit="g",
        grade_basis="Ga",
    )
    act(
        "admin",
        "site.registered",
        code=SITE_A,
        classification="SECRET",
        custodian=JP,
        owners=[JP, EU],
        location_commitment=COMMITMENT,
    )
    act(
        "admin",
        "site.registered",
        code=SITE_B,
        classification="CONFIDENTIAL",
        custodian=EU,
        owners=[EU, JP],
        location_commitment=COMMITMENT,
    )
    # Keys after the sites and owners their scopes name (issue #12).
    for user, roles, sites, owners, clearance in USERS:
        led.register_key(
            admin="admin", user=user, roles=roles, sites=sites, owners=owners, clearance=clearance
        )
    lots = [
        (LOT_NDPR_1, NDPR, "AU", SUPPLIER_NDPR, "99.50", "TREO"),
        (LOT_NDPR_2, NDPR, "AU", SUPPLIER_NDPR, "99.70", "TREO"),
        (LOT_DY_1, DY, "CN", SUPPLIER_DY, "99.90", "TREM"),
        (LOT_GA_4N, GA, "DE", SUPPLIER_GA, "99.99", "Ga"),
        (LOT_GA_6N, GA, "DE", SUPPLIER_GA, "99.9999", "Ga"),
        (LOT_GA_SPARE, GA, "DE", SUPPLIER_GA, "99.99", "Ga"),
    ]
    for i, (code, material, origin, supplier, purity, basis) in enumerate(lots):
        act(
            "olga",
            "lot.registered",
            code=code,
            material=material,
            origin=origin,
            supplier=supplier,
            purity=purity,
            basis=basis,
            certificate_sha256=_cert(i + 1),
            containers=[{"id": f"{code}-C1", "type": "drum", "net_mass": 250_000}],
        )

    ids: dict[str, str] = {}  # name -> entry id (the service draws ids: read back by seq)
    seqs: dict[str, int] = {}  # name -> seq

    def record(name: str, actor: str, kind: str, **fields: Any) -> None:
        fields.setdefault("occurred_at", clock())
        seqs[name] = act(actor, kind, **fields).first_seq

    # -- movements ----------------------------------------------------------------------
    record(
        "receipt_ndpr_a",
        "olga",
        "stock.receipt",
        site=SITE_A,
        owner=JP,
        lot=LOT_NDPR_1,
        quantity=50_000_000,
        supplier=SUPPLIER_NDPR,
        accepted_purity="99.50",
        reference="PO-JP-2025-0001",
    )
    record(
        "receipt_dy",
        "olga",
        "stock.receipt",
        site=SITE_A,
        owner=EU,
        lot=LOT_DY_1,
        quantity=2_000_000,
        supplier=SUPPLIER_DY,
        accepted_purity="99.90",
        reference="PO-EU-2025-0007",
    )
    record(
        "receipt_ga",
        "omar",
        "stock.receipt",
        site=SITE_B,
        owner=EU,
        lot=LOT_GA_4N,
        quantity=3_000_000,
        supplier=SUPPLIER_GA,
        accepted_purity="99.99",
        reference="PO-EU-2025-0008",
    )
    record(
        "receipt_ndpr_b",
        "omar",
        "stock.receipt",
        site=SITE_B,
        owner=JP,
        lot=LOT_NDPR_1,
        quantity=10_000_000,
        supplier=SUPPLIER_NDPR,
        accepted_purity="99.50",
        reference="PO-JP-2025-0002",
    )
    record(
        "dispatch",
        "olga",
        "stock.dispatch",
        site=SITE_A,
        owner=JP,
        lot=LOT_NDPR_1,
        quantity=12_000_000,
        to_site=SITE_B,
        reference="TR-2025-0001",
    )
    ids["dispatch"] = _entry_id(led, seqs["dispatch"])
    record(
        "arrival",
        "omar",
        "stock.arrival",
        site=SITE_B,
        transfer=ids["dispatch"],
        quantity=11_998_500,
        shortfall_reason="one drum seal damaged in transit; spill recovered as waste",
    )
    # -- the orders the sale and the loan execute (issue #5) -------------------------------
    # A policy takes effect only at a future time: wait (on the scenario's clock) for it.
    policy_at = clock()
    effective = _shift(policy_at, seconds=0.3)
    policy = new_body(
        "policy.set",
        "admin",
        owner=JP,
        material=NDPR,
        quorum=1,
        crisis_index="FASTMARKETS-NDPR-CIF",
        crisis_currency="USD",
        crisis_threshold="95",
        count_tolerance_pct="0.5",
        regimes=["ordinary_sale", "loan"],
        effective_at=effective,
    )
    seqs["policy"] = led.submit(policy, [led.signer_for("admin"), led.signer_for("mina")]).first_seq
    start = clock()
    while start <= effective:
        time.sleep(0.02)
        start = clock()
    for name, regime, quantity, recipient in (
        ("sale", "ordinary_sale", 5_000_000, BUYER),
        ("loan", "loan", 3_000_000, BORROWER),
    ):
        req = act(
            "fiona",
            "release.requested",
            owner=JP,
            material=NDPR,
            quantity=quantity,
            recipient=recipient,
            regime=regime,
            purpose=f"{regime.replace('_', ' ')} to {recipient}",
            # issue #12: every sale to a company carries its exhaustion declaration
            **(
                {"evidence": {"type": "exhaustion_declaration", "document_sha256": "de" * 32}}
                if regime == "ordinary_sale"
                else {}
            ),
        )
        seqs[f"{name}_request"] = req.first_seq
        request_id = _entry_id(led, req.first_seq)
        seqs[f"{name}_approval"] = act("felix", "release.approved", request=request_id).first_seq
        order = act(
            "mina",
            "release.ordered",
            request=request_id,
            cap=quantity,
            valid_from=start,
            valid_until=_shift(start, days=400),
            sites=[SITE_A],
            regime=regime,
            report_to="House of Councillors, Committee on Economy and Industry",
        )
        seqs[f"{name}_order"] = order.first_seq
        ids[f"{name}_order"] = _entry_id(led, order.first_seq)
    record(
        "sale",
        "olga",
        "stock.sale",
        site=SITE_A,
        owner=JP,
        lot=LOT_NDPR_1,
        quantity=5_000_000,
        buyer=BUYER,
        tender_ref="JOGMEC-T-2025-17",
        order=ids["sale_order"],
    )
    lent_at = clock()
    record(
        "loan_out",
        "olga",
        "stock.loan_out",
        site=SITE_A,
        owner=JP,
        lot=LOT_NDPR_1,
        quantity=3_000_000,
        borrower=BORROWER,
        occurred_at=lent_at,
        due_at=_shift(lent_at, days=90),
        premium_pct="2.5",
        order=ids["loan_order"],
    )
    ids["loan"] = _entry_id(led, seqs["loan_out"])
    record(
        "loan_return",
        "olga",
        "stock.loan_return",
        site=SITE_A,
        loan=ids["loan"],
        quantity=1_000_000,
    )
    record(
        "rotation",
        "olga",
        "stock.rotation",
        site=SITE_A,
        owner=JP,
        lot_out=LOT_NDPR_1,
        lot_in=LOT_NDPR_2,
        quantity=10_000_000,
        counterparty="Lynas Rare Earths (stock swap)",
    )
    record(
        "conversion",
        "omar",
        "stock.conversion",
        site=SITE_B,
        owner=EU,
        lot_in=LOT_GA_4N,
        quantity_in=1_000_000,
        lot_out=LOT_GA_6N,
        quantity_out=950_000,
        processor="Dowa Metals zone refining",
    )
    record(
        "count",
        "omar",
        "stock.count",
        site=SITE_B,
        owner=EU,
        lot=LOT_GA_4N,
        book=2_000_000,
        counted=1_995_000,  # 0.25 % short, within the 0.5 % tolerance
    )
    set_at = clock()
    valid_from = _shift(set_at, days=-365)
    valid_to = _shift(set_at, days=5 * 365)
    targets = [
        ("fiona", JP, NDPR, 180, 120_000_000, "consumption"),
        ("elena", EU, DY, 90, 8_000_000, "net_imports"),
        ("elena", EU, GA, 30, 20_000_000, "consumption"),
    ]
    for actor, owner, material, days, annual, basis in targets:
        res = act(
            actor,
            "target.set",
            owner=owner,
            material=material,
            days_of_cover=days,
            annual_quantity=annual,
            basis=basis,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        seqs[f"target_{owner}_{material}"] = res.first_seq
    for name, seq in seqs.items():
        ids.setdefault(name, _entry_id(led, seq))

    holdings = {
        (holding(JP, SITE_A), LOT_NDPR_1): 21_000_000,  # 50 - 12 - 5 - 3 + 1 - 10 t
        (holding(JP, SITE_A), LOT_NDPR_2): 10_000_000,
        (holding(JP, SITE_B), LOT_NDPR_1): 21_998_500,  # 10 t + 11.9985 t arrived
        (holding(EU, SITE_A), LOT_DY_1): 2_000_000,
        (holding(EU, SITE_B), LOT_GA_4N): 1_995_000,  # 3 - 1 t converted - 5 kg counted short
        (holding(EU, SITE_B), LOT_GA_6N): 950_000,
    }
    virtual_accounts = {
        (virtual("supplier", SUPPLIER_NDPR), LOT_NDPR_1): -60_000_000,
        (virtual("supplier", SUPPLIER_DY), LOT_DY_1): -2_000_000,
        (virtual("supplier", SUPPLIER_GA), LOT_GA_4N): -3_000_000,
        (TRANSIT, LOT_NDPR_1): 0,
        (LOSS, LOT_NDPR_1): 1_500,
        (LOSS, LOT_GA_4N): 5_000,
        (virtual("buyer", BUYER), LOT_NDPR_1): 5_000_000,
        (LOANS, LOT_NDPR_1): 2_000_000,
        (ROTATION, LOT_NDPR_1): 10_000_000,
        (ROTATION, LOT_NDPR_2): -10_000_000,
        (CONVERSION, LOT_GA_4N): 1_000_000,
        (CONVERSION, LOT_GA_6N): -950_000,
    }
    return {
        "ids": ids,
        "seqs": seqs,
        "holdings": holdings,
        "virtual": virtual_accounts,
        "balances": {**holdings, **virtual_accounts},
        "held": {  # physical holdings per owner and material
            (JP, NDPR): 52_998_500,
            (EU, DY): 2_000_000,
            (EU, GA): 2_945_000,
        },
        "loan": {"id": ids["loan"], "outstanding": 2_000_000, "owner": JP, "site": SITE_A},
        "sites": SITES,
        "owners": (JP, EU),
    }


def _entry_id(led: Ledger, seq: int) -> str:
    with led.engine.connect() as conn:
        return str(
            conn.execute(select(entries.c.entry_id).where(entries.c.seq == seq)).scalar_one()
        )
