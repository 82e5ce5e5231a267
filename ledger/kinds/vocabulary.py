"""One vocabulary for people and programs (issue #12): every field a person sends has
one name, one meaning and one example, whether it is typed as a CLI flag (``--to-site``)
or sent as an API field (``to_site``). The names are the entry kinds' own field names
(they are signed, so they are the ones that cannot change); a flag is the field name
with ``-`` for ``_``.

The API's request schemas (``ledger.kinds.requests``), the CLI's flags (``cli/stock.py``,
``cli/release.py``) and the README's table all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class Term:
    """What a field means (``description``), what a person writes in it (``example``,
    in the request form: quantities with a unit, times in RFC 3339), the CLI flags it
    had before issue #12 (kept as deprecated aliases for one release), and whether an
    absent value means "now" (times of events)."""

    description: str
    example: Any
    old_flags: tuple[str, ...] = ()
    default_now: bool = False
    default_empty: bool = False  # free text the kind requires but may be empty: optional


# Examples are made up (codes of no real site, no real location): the OpenAPI document is
# public, and a site's code is itself scoped (DESIGN.md, "Who may do and see what").
QTY_WORDS = 'a decimal number and a mass unit (g, kg, t, lb), e.g. "12.5 t"; never a bare number'
TIME_WORDS = "RFC 3339 time; an offset is converted to UTC (e.g. 2026-11-29T11:00:00+01:00)"

TERMS: Final[dict[str, Term]] = {
    # -- where and whose ----------------------------------------------------------------
    "site": Term("code of the site where it happens", "SITE-0A1B"),
    "owner": Term("code of the owner whose stock it is", "JP-RESERVE"),
    "lot": Term("code of the lot", "NDPR-2025-001"),
    "material": Term("code of the material", "NDPR-OXIDE"),
    "to_site": Term("code of the destination site of a transfer", "SITE-0C2D", old_flags=("--to",)),
    "lot_out": Term("code of the lot that leaves (rotation) or is produced (conversion)", "NDPR-2019-004"),
    "lot_in": Term("code of the lot that comes in (rotation) or is consumed (conversion)", "NDPR-2025-001"),
    # -- how much -----------------------------------------------------------------------
    "quantity": Term(f"mass moved or asked for: {QTY_WORDS}", "12.5 t", old_flags=("--qty",)),
    "quantity_in": Term(f"mass consumed from lot_in: {QTY_WORDS}", "10 t", old_flags=("--qty-in",)),
    "quantity_out": Term(f"mass produced into lot_out: {QTY_WORDS}", "8.2 t", old_flags=("--qty-out",)),
    "book": Term(f"the quantity the counter saw on the books: {QTY_WORDS}", "38 t"),
    "counted": Term(f"the quantity physically counted: {QTY_WORDS}", "37.998 t"),
    "annual_quantity": Term(
        f"the annual quantity the target's days of cover are counted against: {QTY_WORDS}",
        "1200 t",
        old_flags=("--annual",),
    ),
    "cap": Term(f"at most this quantity: {QTY_WORDS}", "20 t"),
    "net_mass": Term(f"a container's net mass: {QTY_WORDS}", "250 kg"),
    # -- when ---------------------------------------------------------------------------
    "occurred_at": Term(
        f"when it happened: {TIME_WORDS}; default now", "2026-11-29T10:00:00Z", old_flags=("--at",), default_now=True
    ),
    "observed_at": Term(f"when the price was observed: {TIME_WORDS}; default now", "2026-11-29T08:00:00Z", default_now=True),
    "valid_from": Term(f"start of the validity window: {TIME_WORDS}; default now", "2026-11-29T12:00:00Z",
                       old_flags=("--from",), default_now=True),
    "valid_to": Term(f"end of the target's validity: {TIME_WORDS}", "2027-12-31T23:59:59Z", old_flags=("--to",)),
    "valid_until": Term(f"end of the order's validity window: {TIME_WORDS}", "2027-01-31T00:00:00Z"),
    "due_at": Term(f"when the loan must be returned: {TIME_WORDS}", "2027-06-30T00:00:00Z", old_flags=("--due",)),
    "effective_at": Term(f"when the policy takes effect (in the future): {TIME_WORDS}", "2026-12-01T00:00:00Z"),
    # -- who and why (free text) --------------------------------------------------------
    "supplier": Term("who supplied the material", "Lynas Rare Earths"),
    "accepted_purity": Term(
        "purity accepted at receipt: a percentage (99.5 or 99.5%) or a fraction (0.995)",
        "99.5",
        old_flags=("--purity",),
    ),
    "purity_deviation_reason": Term(
        "why the accepted purity differs from the lot's assay beyond the policy's tolerance (optional otherwise)",
        "re-assayed at receipt by SGS",
    ),
    "reference": Term("the delivery note, purchase order or transfer reference", "PO-JP-0042"),
    "transfer": Term("entry id of the dispatch that opened the transfer", "3f2a91c07d4e4b0a9c1e5d6f7a8b9c0d"),
    "shortfall_reason": Term(
        "why less arrived than was dispatched (optional; needed for a shortfall)", "one drum damaged", default_empty=True
    ),
    "order": Term("entry id of the ministerial order executed", "9c1e5d6f7a8b9c0d3f2a91c07d4e4b0a"),
    "recipient": Term("the company or body the stock goes to", "Shin-Etsu Magnetics"),
    "borrower": Term("the company the stock is lent to", "Shin-Etsu Magnetics"),
    "premium_pct": Term("the loan premium, percent of the quantity", "2.5", old_flags=("--premium",)),
    "loan": Term("entry id of the loan (its stock.loan_out)", "7a8b9c0d3f2a91c07d4e4b0a9c1e5d6f"),
    "buyer": Term("the buyer of the stock", "Hitachi Metals"),
    "tender_ref": Term("reference of the tender the sale followed", "TENDER-2026-07", old_flags=("--tender",)),
    "counterparty": Term("who takes the old stock and supplies the new", "Lynas Rare Earths"),
    "processor": Term("who processes the material", "Solvay La Rochelle"),
    "reverses": Term("entry id of the movement reversed", "0d3f2a91c07d4e4b0a9c1e5d6f7a8b9c"),
    "reason": Term("why (free text, kept in the log)", "entered twice by mistake"),
    # -- reference data -----------------------------------------------------------------
    "code": Term("the code it is known by (capitals, digits, '.', '_', '-')", "NDPR-2025-002"),
    "name": Term("its name", "Neodymium-praseodymium oxide"),
    "country": Term("ISO 3166-1 two-letter country code", "JP"),
    "form": Term("physical form of the material", "oxide"),
    "base_unit": Term("the unit quantities are kept in (grams)", "g"),
    "grade_basis": Term("what purity is relative to, e.g. TREO", "TREO"),
    "origin": Term("ISO 3166-1 two-letter code of the country of origin", "AU"),
    "purity": Term("certified assay: a percentage (99.5 or 99.5%) or a fraction (0.995)", "99.5"),
    "basis": Term(
        "a lot: what its purity is relative to (e.g. TREO); a target: what its annual quantity "
        "measures (consumption or net_imports)",
        "TREO",
    ),
    "certificate_sha256": Term("SHA-256 of the assay certificate, 64 lowercase hex digits", "ab" * 32),
    "containers": Term("the lot's containers", []),
    "id": Term("the container's code", "NDPR-2025-002-C1"),
    "type": Term("the container's type", "drum"),
    "days_of_cover": Term("days of the annual quantity to hold", 90, old_flags=("--days",)),
    # -- releases -----------------------------------------------------------------------
    "index": Term("code of the price index", "FASTMARKETS-NDPR"),
    "value": Term("the observed price, an exact decimal", "142.5"),
    "currency": Term("ISO 4217 currency code", "USD"),
    "source": Term("where the price was read", "Fastmarkets daily assessment"),
    "regime": Term("the release regime", "emergency_release"),
    "purpose": Term("what the released stock is for", "keep magnet lines running during the export ban"),
    "evidence": Term(
        "the evidence the regime needs: the recipient's exhaustion declaration, and for an emergency "
        "release or a price-spike sale also the crisis price observation or an override",
        [
            {"type": "exhaustion_declaration", "document_sha256": "ee" * 32},
            {"type": "override", "reason": "export ban: no price index published this week"},
        ],
    ),
    "document_sha256": Term("SHA-256 of the recipient's signed exhaustion declaration", "ee" * 32),
    "observation": Term("entry id of the price.observed entry at or above the crisis threshold",
                        "c07d4e4b0a9c1e5d6f7a8b9c0d3f2a91"),
    "request": Term("entry id of the release request", "4e4b0a9c1e5d6f7a8b9c0d3f2a91c07d"),
    "comment": Term("a comment shown with the approval", "supply contracts checked"),
    "sites": Term("codes of the sites (eligible for an order; in a key's scope)", ["SITE-0A1B"]),
    "report_to": Term("the parliament or committee the order is reported to", "Diet committee on economy"),
    "confirm_override": Term("the minister confirms the request's emergency override", False),
    "quorum": Term("approvals needed before an order", 2),
    "crisis_index": Term("code of the price index the crisis threshold is on", "FASTMARKETS-NDPR"),
    "crisis_currency": Term("ISO 4217 currency of the crisis threshold", "USD"),
    "crisis_threshold": Term("the crisis price, an exact decimal", "140"),
    "count_tolerance_pct": Term("a count difference beyond this percent needs a second officer", "0.5",
                                old_flags=("--count-tolerance",)),
    "assay_tolerance_pct": Term("percentage points a receipt's purity may differ from the lot's assay", "0.5"),
    "regimes": Term("the release regimes open under the policy", ["emergency_release"]),
    # -- keys and sites -----------------------------------------------------------------
    "user": Term("the user's name (lowercase)", "olga"),
    "public_key": Term(
        "the user's Ed25519 public key, 64 hex digits; omit for a custodial key (embedded only)",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",  # RFC 8032 section 7.1, test 1
    ),
    "roles": Term("the user's roles", ["operator"]),
    "owners": Term("codes of owners (a site's; in a key's scope)", ["JP-RESERVE"]),
    "clearance": Term("the highest classification of site locations the user may see", "NONE"),
    "custody": Term(
        '"self": the user holds the key (never on the server); "server": a custodial key the embedded service holds',
        "self",
    ),
    "key_id": Term("the key's id (SHA-256 of its public key)", "0f" * 32),
    "classification": Term("the site's classification", "SECRET"),
    "custodian": Term("code of the owner that runs the site", "JP-RESERVE"),
    "location": Term(
        "the site's real location: name, address, latitude, longitude[, notes]; sealed, never logged",
        {"name": "Example depot", "address": "1 Example Road, Exampletown", "latitude": 0.5, "longitude": 0.5},
    ),
}


def term(name: str) -> Term:
    """The term for field ``name``; a field without one is a defect a test catches."""
    return TERMS[name]


def flag(name: str) -> str:
    """The CLI flag of field ``name``: ``to_site`` -> ``--to-site``."""
    return "--" + name.replace("_", "-")
