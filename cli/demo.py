"""``reserve demo``: a realistic year of a joint strategic reserve, on made-up sites.

Two owners (Japan's national reserve and a joint EU stock) hold rare earths, gallium and
magnesium in sites run by custodians in two countries; a year of receipts, a transfer
with a shortfall, counts and a rotation. Then the release side (issue #5): release
policies signed by the security admin and each owner's minister, and under ministerial
orders (request, quorum of approvals, order) a full emergency release of NdPr oxide to a
magnet maker whose own inventory is exhausted, a sale of magnesium, a gallium loan that
comes back in two parts, and one loan left overdue. The locations are fictitious and are
sealed like real ones. Re-running the command adds nothing twice.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime, timedelta

from ledger.locations import Location
from ledger.service import Ledger, new_body
from ledger.store.projections import read_table
from ledger.timefmt import format_time

# user, roles, sites, owners, clearance
DEMO_USERS = [
    ("olga", ["operator"], ["SITE-7F3K"], [], "SECRET"),
    ("omar", ["operator"], ["SITE-2B9Q", "SITE-5M1D"], [], "RESTRICTED"),
    ("oscar", ["operator"], ["SITE-7F3K"], [], "NONE"),
    ("fiona", ["official"], [], ["JP-RESERVE"], "NONE"),
    ("felix", ["official"], [], ["JP-RESERVE", "EU-JOINT"], "NONE"),
    ("fumio", ["official"], [], ["JP-RESERVE"], "NONE"),
    ("frida", ["official"], [], ["EU-JOINT"], "CONFIDENTIAL"),
    ("mina", ["minister"], [], ["JP-RESERVE"], "CONFIDENTIAL"),
    ("marc", ["minister"], [], ["EU-JOINT"], "CONFIDENTIAL"),
    ("audrey", ["auditor"], [], [], "NONE"),
]
OWNERS = [
    ("JP-RESERVE", "Japan national stockpile", "JP"),
    ("EU-JOINT", "EU joint critical raw materials stock", "BE"),
]
MATERIALS = [
    ("NDPR-OXIDE", "Neodymium-praseodymium oxide", "oxide", "TREO"),
    ("DY-METAL", "Dysprosium metal", "metal", "metal basis"),
    ("TB4O7", "Terbium oxide", "oxide", "TREO"),
    ("GA-METAL", "Gallium metal", "metal", "metal basis"),
    ("MG-INGOT", "Magnesium ingot", "metal", "metal basis"),
]
# code, classification, custodian, owners, made-up location
SITES = [
    (
        "SITE-7F3K",
        "SECRET",
        "JP-RESERVE",
        ["JP-RESERVE", "EU-JOINT"],
        Location(
            name="Demo depot Kita",
            address="1-1 Example-cho, Demo City, JP",
            latitude=35.0001,
            longitude=139.0001,
        ),
    ),
    (
        "SITE-2B9Q",
        "CONFIDENTIAL",
        "EU-JOINT",
        ["EU-JOINT", "JP-RESERVE"],
        Location(
            name="Demo bunker Est",
            address="Strada Exemplu 1, Demo Town, RO",
            latitude=45.0001,
            longitude=25.0001,
        ),
    ),
    (
        "SITE-5M1D",
        "RESTRICTED",
        "EU-JOINT",
        ["EU-JOINT"],
        Location(
            name="Demo warehouse Sud",
            address="Rue Exemple 1, Demo Ville, FR",
            latitude=44.0001,
            longitude=4.0001,
        ),
    ),
]
# code, material, origin, supplier, purity
LOTS = [
    ("LOT-NDPR-2025-01", "NDPR-OXIDE", "AU", "Lynas Rare Earths", "99.5"),
    ("LOT-NDPR-2025-02", "NDPR-OXIDE", "AU", "Lynas Rare Earths", "99.7"),
    ("LOT-DY-2025-01", "DY-METAL", "VN", "Demo Metals JSC", "99.9"),
    ("LOT-TB-2025-01", "TB4O7", "MY", "Demo Separation Sdn Bhd", "99.99"),
    ("LOT-GA-2025-01", "GA-METAL", "DE", "Demo Gallium GmbH", "99.9999"),
    ("LOT-MG-2025-01", "MG-INGOT", "NO", "Demo Magnesium AS", "99.8"),
    ("LOT-DY-2025-02", "DY-METAL", "VN", "Demo Metals JSC", "99.95"),
]


def run_demo(led: Ledger) -> int:
    """Write the scenario (once); return the log size."""
    with led.engine.connect() as conn:
        if read_table(conn, "owners"):
            return _size(led)
    for code, name, country in OWNERS:
        led.act("admin", "owner.registered", code=code, name=name, country=country)
    for code, name, form, basis in MATERIALS:
        led.act(
            "admin",
            "material.registered",
            code=code,
            name=name,
            form=form,
            base_unit="g",
            grade_basis=basis,
        )
    for code, classification, custodian, owners, location in SITES:
        led.register_site(
            admin="admin",
            code=code,
            classification=classification,
            custodian=custodian,
            owners=owners,
            location=location,
        )
    # Keys after the owners and sites their scopes name (issue #12).
    registered = {k.user for k in led.registered_keys()}
    for user, roles, sites, owners, clearance in DEMO_USERS:
        if user not in registered:
            led.register_key(
                admin="admin",
                user=user,
                roles=roles,
                sites=sites,
                owners=owners,
                clearance=clearance,
            )
    for code, material, origin, supplier, purity in LOTS:
        basis = next(m[3] for m in MATERIALS if m[0] == material)
        led.act(
            "olga",
            "lot.registered",
            code=code,
            material=material,
            origin=origin,
            supplier=supplier,
            purity=purity,
            basis=basis,
            certificate_sha256=hashlib.sha256(f"assay certificate {code}".encode()).hexdigest(),
            containers=[
                {"id": f"{code}-D{i}", "type": "drum", "net_mass": 250_000} for i in range(1, 4)
            ],
        )
    now = datetime.now(UTC)
    start = now - timedelta(days=330)
    for owner, material, days, annual in (
        ("JP-RESERVE", "NDPR-OXIDE", 60, 30_000_000_000),
        ("JP-RESERVE", "DY-METAL", 60, 900_000_000),
        ("EU-JOINT", "GA-METAL", 90, 40_000_000_000),
        ("EU-JOINT", "NDPR-OXIDE", 30, 25_000_000_000),
    ):
        who = "fiona" if owner == "JP-RESERVE" else "frida"
        led.act(
            who,
            "target.set",
            owner=owner,
            material=material,
            days_of_cover=days,
            annual_quantity=annual,
            basis="consumption",
            valid_from=format_time(start),
            valid_to=format_time(now + timedelta(days=365)),
        )
    _year_of_movements(led, start)
    _releases(led)
    return _size(led)


def _year_of_movements(led: Ledger, start: datetime) -> None:
    rng = random.Random(7)  # noqa: S311 - a repeatable demo, not a secret

    def day(d: int) -> str:
        return format_time(start + timedelta(days=d, hours=rng.randint(8, 17)))

    def act(user: str, kind: str, **fields: object) -> str:
        res = led.act(user, kind, **fields)
        return led.entry_ref(str(res.first_seq))

    # Deliveries through the year.
    receipts = [
        (
            "olga",
            "SITE-7F3K",
            "JP-RESERVE",
            "LOT-NDPR-2025-01",
            400_000_000,
            "Lynas Rare Earths",
            "99.5",
        ),
        (
            "olga",
            "SITE-7F3K",
            "JP-RESERVE",
            "LOT-DY-2025-01",
            12_000_000,
            "Demo Metals JSC",
            "99.9",
        ),
        (
            "omar",
            "SITE-2B9Q",
            "EU-JOINT",
            "LOT-GA-2025-01",
            80_000_000,
            "Demo Gallium GmbH",
            "99.9999",
        ),
        (
            "omar",
            "SITE-2B9Q",
            "JP-RESERVE",
            "LOT-NDPR-2025-01",
            150_000_000,
            "Lynas Rare Earths",
            "99.5",
        ),
        (
            "omar",
            "SITE-5M1D",
            "EU-JOINT",
            "LOT-MG-2025-01",
            900_000_000,
            "Demo Magnesium AS",
            "99.8",
        ),
        (
            "olga",
            "SITE-7F3K",
            "EU-JOINT",
            "LOT-TB-2025-01",
            3_000_000,
            "Demo Separation Sdn Bhd",
            "99.99",
        ),
    ]
    d = 5
    for user, site, owner, lot, qty, supplier, purity in receipts:
        for part in range(4):
            act(
                user,
                "stock.receipt",
                site=site,
                owner=owner,
                lot=lot,
                quantity=qty // 4,
                occurred_at=day(d),
                supplier=supplier,
                accepted_purity=purity,
                reference=f"DN-{lot[-7:]}-{part + 1}",
            )
            d += 4
    # A transfer from Japan to the EU bunker, with a small shortfall in transit.
    t = act(
        "olga",
        "stock.dispatch",
        site="SITE-7F3K",
        owner="JP-RESERVE",
        lot="LOT-NDPR-2025-01",
        quantity=50_000_000,
        occurred_at=day(d),
        to_site="SITE-2B9Q",
        reference="TR-2025-001",
    )
    act(
        "omar",
        "stock.arrival",
        site="SITE-2B9Q",
        transfer=t,
        quantity=49_998_000,
        occurred_at=day(d + 12),
        shortfall_reason="one drum damaged at the port; 2 kg swept and recorded as loss",
    )
    # Quarterly counts, within tolerance.
    d += 20
    for _ in range(3):
        _count(led, "olga", "SITE-7F3K", "JP-RESERVE", "LOT-NDPR-2025-01", rng, day(d))
        d += 45
    # A rotation to a better lot.
    act(
        "olga",
        "stock.receipt",
        site="SITE-7F3K",
        owner="JP-RESERVE",
        lot="LOT-DY-2025-02",
        quantity=1,
        occurred_at=day(d),
        supplier="Demo Metals JSC",
        accepted_purity="99.95",
        reference="DN-SAMPLE",
    )
    act(
        "olga",
        "stock.rotation",
        site="SITE-7F3K",
        owner="JP-RESERVE",
        lot_out="LOT-DY-2025-01",
        lot_in="LOT-DY-2025-02",
        quantity=2_000_000,
        occurred_at=day(d + 1),
        counterparty="Demo Metals JSC",
    )


def _count(
    led: Ledger, user: str, site: str, owner: str, lot: str, rng: random.Random, at: str
) -> None:
    from ledger.store.reports import balances

    with led.engine.begin() as conn:
        rows = balances(conn, owner=owner, site=site, lot=lot)
    book = rows[0].quantity if rows else 0
    counted = book - rng.randint(0, book // 2000)  # within the 0.5 % tolerance
    led.act(
        user,
        "stock.count",
        site=site,
        owner=owner,
        lot=lot,
        book=book,
        counted=counted,
        occurred_at=at,
    )


# owner, material, quorum, crisis index, threshold (USD), open regimes, co-signing minister
POLICIES = [
    (
        "JP-RESERVE",
        "NDPR-OXIDE",
        2,
        "FASTMARKETS-NDPR-CIF",
        "95",
        ["emergency_release", "price_spike_sale"],
        "mina",
    ),
    ("EU-JOINT", "GA-METAL", 1, "LME-GA-99.99", "1200", ["loan", "ordinary_sale"], "marc"),
    ("EU-JOINT", "MG-INGOT", 1, "LME-MG-99.8", "6", ["ordinary_sale"], "marc"),
]
REPORT_TO = {
    "JP-RESERVE": "House of Representatives, Committee on Economy, Trade and Industry",
    "EU-JOINT": "European Parliament, Committee on Industry, Research and Energy",
}


def _releases(led: Ledger) -> None:
    """Policies, then each release, sale and loan under its own ministerial order."""

    def now() -> str:
        return format_time(datetime.now(UTC))

    def later(**delta: float) -> str:
        return format_time(datetime.now(UTC) + timedelta(**delta))

    def act(user: str, kind: str, **fields: object) -> str:
        return led.entry_ref(str(led.act(user, kind, **fields).first_seq))

    effective = []
    for owner, material, quorum, index, threshold, regimes, minister in POLICIES:
        effective.append(later(seconds=5))  # a policy takes effect only at a future time
        body = new_body(
            "policy.set",
            "admin",
            owner=owner,
            material=material,
            quorum=quorum,
            crisis_index=index,
            crisis_currency="USD",
            crisis_threshold=threshold,
            count_tolerance_pct="0.5",
            regimes=regimes,
            effective_at=effective[-1],
        )
        led.submit(body, [led.signer_for("admin"), led.signer_for(minister)])
    while now() <= max(effective):
        time.sleep(0.1)

    def authorised(
        owner: str,
        material: str,
        quantity: int,
        recipient: str,
        regime: str,
        sites: list[str],
        chain: tuple[str, list[str], str],
        purpose: str,
        **evidence: object,
    ) -> str:
        requester, approvers, minister = chain
        req = act(
            requester,
            "release.requested",
            owner=owner,
            material=material,
            quantity=quantity,
            recipient=recipient,
            regime=regime,
            purpose=purpose,
            **evidence,
        )
        for a in approvers:
            act(a, "release.approved", request=req)
        return act(
            minister,
            "release.ordered",
            request=req,
            cap=quantity,
            valid_from=now(),
            valid_until=later(days=14),
            sites=sites,
            regime=regime,
            report_to=REPORT_TO[owner],
        )

    # A full emergency release: the NdPr price has reached the crisis threshold and a
    # magnet maker's own inventory is exhausted (both, as the seed's rule asks).
    declaration = hashlib.sha256(
        b"Demo Magnetics KK: declaration of exhausted inventory"
    ).hexdigest()
    crisis_price = act(
        "fumio",
        "price.observed",
        index="FASTMARKETS-NDPR-CIF",
        material="NDPR-OXIDE",
        value="131.5",
        currency="USD",
        observed_at=now(),
        source="Fastmarkets daily assessment (demo figure)",
    )
    emergency = authorised(
        "JP-RESERVE",
        "NDPR-OXIDE",
        20_000_000,
        "Demo Magnetics KK",
        "emergency_release",
        ["SITE-7F3K", "SITE-2B9Q"],
        ("fumio", ["fiona", "felix"], "mina"),
        "keep the motor-magnet lines running through the export restrictions",
        evidence=[
            {"type": "exhaustion_declaration", "document_sha256": declaration},
            {"type": "price_observation", "observation": crisis_price},
        ],
    )
    for user, site, qty in (("olga", "SITE-7F3K", 12_000_000), ("omar", "SITE-2B9Q", 8_000_000)):
        act(
            user,
            "stock.release",
            site=site,
            owner="JP-RESERVE",
            lot="LOT-NDPR-2025-01",
            quantity=qty,
            occurred_at=now(),
            order=emergency,
            recipient="Demo Magnetics KK",
        )
    # An ordinary sale of magnesium ingot.
    sale = authorised(
        "EU-JOINT",
        "MG-INGOT",
        100_000_000,
        "Demo Die-casting SpA",
        "ordinary_sale",
        ["SITE-5M1D"],
        ("frida", ["felix"], "marc"),
        "rotation of ageing magnesium stock by tender",
        evidence={
            "type": "exhaustion_declaration",
            "document_sha256": hashlib.sha256(
                b"Demo Die-casting SpA: declaration of exhausted inventory"
            ).hexdigest(),
        },
    )
    act(
        "omar",
        "stock.sale",
        site="SITE-5M1D",
        owner="EU-JOINT",
        lot="LOT-MG-2025-01",
        quantity=100_000_000,
        occurred_at=now(),
        buyer="Demo Die-casting SpA",
        tender_ref="EU-TENDER-2025-17",
        order=sale,
    )
    # A gallium loan that comes back in two parts.
    lend = authorised(
        "EU-JOINT",
        "GA-METAL",
        5_000_000,
        "Demo Semiconductors SA",
        "loan",
        ["SITE-2B9Q"],
        ("frida", ["felix"], "marc"),
        "bridge a wafer maker's supply gap",
    )
    loan = act(
        "omar",
        "stock.loan_out",
        site="SITE-2B9Q",
        owner="EU-JOINT",
        lot="LOT-GA-2025-01",
        quantity=5_000_000,
        occurred_at=now(),
        borrower="Demo Semiconductors SA",
        due_at=later(days=60),
        premium_pct="2.5",
        order=lend,
    )
    for qty in (3_000_000, 2_000_000):
        act(
            "omar",
            "stock.loan_return",
            site="SITE-2B9Q",
            loan=loan,
            quantity=qty,
            occurred_at=now(),
        )
    # A loan still out, due two seconds after it is made: overdue once the demo is done.
    short = authorised(
        "EU-JOINT",
        "GA-METAL",
        1_000_000,
        "Demo Optics BV",
        "loan",
        ["SITE-2B9Q"],
        ("frida", ["felix"], "marc"),
        "lens-coating trial",
    )
    act(
        "omar",
        "stock.loan_out",
        site="SITE-2B9Q",
        owner="EU-JOINT",
        lot="LOT-GA-2025-01",
        quantity=1_000_000,
        occurred_at=now(),
        borrower="Demo Optics BV",
        due_at=later(seconds=2),
        premium_pct="3",
        order=short,
    )


def _size(led: Ledger) -> int:
    from ledger.store.log import head

    return int(head(led.engine).size)
