"""Entry kinds of the stock domain: reference data and every kind of movement (issue #3).

Quantities are exact integers in the material's base unit (grams); the CLI and API convert
decimal strings with a unit (``ledger.units``) before anything is signed. Every movement
says when it happened (``occurred_at``); the log adds when it was recorded.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ledger.canonical import MAX_SAFE_INT
from ledger.kinds.base import FREE_TEXT, Body, Code, EntryId, Hex64, Text, Time

# Grams. Marked as quantities so request forms (``ledger.kinds.requests``) take them with a
# unit ("12.5 t") and responses show them in display units (issue #12).
QUANTITY_MARK = {"quantity": True}
Qty = Annotated[int, msgspec.Meta(gt=0, le=MAX_SAFE_INT, extra=QUANTITY_MARK)]
Qty0 = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT, extra=QUANTITY_MARK)]
Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]  # ISO 3166-1 alpha-2
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, extra=FREE_TEXT)]
# A percentage as an exact decimal string, 0 to 100 with up to 6 decimals ("99.95").
PERCENT_PATTERN = r"^(100(\.0{1,6})?|[0-9]{1,2}(\.[0-9]{1,6})?)$"
Percent = Annotated[str, msgspec.Meta(pattern=PERCENT_PATTERN)]
# A purity, kept as a percentage; typed as 99.5, 99.5% or 0.995 (``ledger.units.parse_purity``).
Purity = Annotated[str, msgspec.Meta(pattern=PERCENT_PATTERN, extra={"purity": True})]
Classification = Literal["RESTRICTED", "CONFIDENTIAL", "SECRET"]
Form = Literal["oxide", "metal", "alloy", "concentrate", "compound"]
ContainerType = Literal["drum", "bag", "big_bag", "ingot_bundle", "pallet", "box", "other"]


# -- reference data ------------------------------------------------------------------


class OwnerRegistered(Body, tag="owner.registered", frozen=True):
    """A holder of stock: a national reserve, a joint EU stock, a partner agency."""

    code: Code
    name: Name
    country: Country


class MaterialRegistered(Body, tag="material.registered", frozen=True):
    """A stocked material. ``grade_basis`` says what purity is relative to (for rare-earth
    oxides, total rare-earth oxide: ``TREO``)."""

    code: Code
    name: Name
    form: Form
    base_unit: Literal["g"]
    grade_basis: Name


class Container(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Code
    type: ContainerType
    net_mass: Qty


class LotRegistered(Body, tag="lot.registered", frozen=True):
    """A lot of one material with its origin and certified assay."""

    code: Code
    material: Code
    origin: Country
    supplier: Name
    purity: Purity
    basis: Name
    certificate_sha256: Hex64
    containers: list[Container]


class SiteRegistered(Body, tag="site.registered", frozen=True):
    """A warehouse site, known to the log by code name only. ``location_commitment`` is
    SHA-256 over a random salt and the canonical location (``ledger.locations``); the
    location itself never enters the log."""

    code: Code
    classification: Classification
    custodian: Code
    owners: list[Code]
    location_commitment: Hex64


class SiteRelocated(Body, tag="site.relocated", frozen=True):
    """The site moves: a new commitment; the old one stays in the log, still provable."""

    site: Code
    location_commitment: Hex64


class TargetSet(Body, tag="target.set", frozen=True):
    """Stock to hold, as days of cover over a stated annual quantity."""

    owner: Code
    material: Code
    days_of_cover: Annotated[int, msgspec.Meta(gt=0, le=3650)]
    annual_quantity: Qty
    basis: Literal["consumption", "net_imports"]
    valid_from: Time
    valid_to: Time


# -- movements -----------------------------------------------------------------------


class Receipt(Body, tag="stock.receipt", frozen=True):
    """Material taken into a site from a supplier; ``quantity`` is the weighed net mass."""

    site: Code
    owner: Code
    lot: Code
    quantity: Qty
    occurred_at: Time
    supplier: Name
    accepted_purity: Purity
    reference: Name
    # Why the accepted purity differs from the lot's assay beyond the policy's tolerance
    # (issue #12); required then, optional otherwise.
    purity_deviation_reason: Name | None = None


class Dispatch(Body, tag="stock.dispatch", frozen=True):
    """First half of a transfer: the quantity leaves ``site`` and is in transit. The
    transfer is named by this entry's ``id``."""

    site: Code
    owner: Code
    lot: Code
    quantity: Qty
    occurred_at: Time
    to_site: Code
    reference: Name


class Arrival(Body, tag="stock.arrival", frozen=True):
    """Second half: what arrived at the destination; any shortfall goes to loss."""

    site: Code
    transfer: EntryId
    quantity: Qty0
    occurred_at: Time
    shortfall_reason: Text


class Release(Body, tag="stock.release", frozen=True):
    """Stock handed over to a recipient under a ministerial order (issue #5): an order of
    the ``emergency_release`` regime, naming this recipient."""

    site: Code
    owner: Code
    lot: Code
    quantity: Qty
    occurred_at: Time
    order: EntryId
    recipient: Name


class LoanOut(Body, tag="stock.loan_out", frozen=True):
    """Stock lent to a borrower until ``due_at`` under a ministerial order of the ``loan``
    regime (issue #5); the loan is named by this entry's id."""

    site: Code
    owner: Code
    lot: Code
    quantity: Qty
    occurred_at: Time
    order: EntryId
    borrower: Name
    due_at: Time
    premium_pct: Percent


class LoanReturn(Body, tag="stock.loan_return", frozen=True):
    """Lent stock coming back (to the same owner and lot, at any site of the owner)."""

    site: Code
    loan: EntryId
    quantity: Qty
    occurred_at: Time


class Sale(Body, tag="stock.sale", frozen=True):
    """Stock sold to a buyer under a ministerial order of the ``ordinary_sale`` or
    ``price_spike_sale`` regime (issue #5)."""

    site: Code
    owner: Code
    lot: Code
    quantity: Qty
    occurred_at: Time
    order: EntryId
    buyer: Name
    tender_ref: Name


class Rotation(Body, tag="stock.rotation", frozen=True):
    """Old material out, the same quantity of the same material, equal or better grade, in."""

    site: Code
    owner: Code
    lot_out: Code
    lot_in: Code
    quantity: Qty
    occurred_at: Time
    counterparty: Name


class Conversion(Body, tag="stock.conversion", frozen=True):
    """Processing or upgrading: consumes one lot, produces another (e.g. oxide to metal)."""

    site: Code
    owner: Code
    lot_in: Code
    quantity_in: Qty
    lot_out: Code
    quantity_out: Qty
    occurred_at: Time
    processor: Name


class StockCount(Body, tag="stock.count", frozen=True):
    """A physical count. ``book`` is what the counter saw on the books; the difference
    posts to loss or gain. Beyond the tolerance a second officer co-signs."""

    site: Code
    owner: Code
    lot: Code
    book: Qty0
    counted: Qty0
    occurred_at: Time


class Reversal(Body, tag="stock.reversal", frozen=True):
    """Exactly mirrors one earlier movement, once. Nothing is ever edited."""

    site: Code
    reverses: EntryId
    occurred_at: Time
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, extra=FREE_TEXT)]


STOCK_KINDS = (
    OwnerRegistered
    | MaterialRegistered
    | LotRegistered
    | SiteRegistered
    | SiteRelocated
    | TargetSet
    | Receipt
    | Dispatch
    | Arrival
    | Release
    | LoanOut
    | LoanReturn
    | Sale
    | Rotation
    | Conversion
    | StockCount
    | Reversal
)
