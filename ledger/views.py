"""JSON views of the registry projections, one shape for every reader.

The API's registry routes (``api/routes/registry.py``) and the local ``reserve`` command
both render these, so a client sees the same fields whether it reads the database on
the server or the service over HTTP. Scope filtering is not done here (``ledger.policy``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ledger.records import LoanRec, LotRec, MaterialRec, OwnerRec
from ledger.state import KeyRecord
from ledger.units import format_quantity


def owner_view(r: OwnerRec) -> dict[str, Any]:
    return {"code": r.code, "name": r.name, "country": r.country, "registered_seq": r.registered_seq}


def material_view(r: MaterialRec) -> dict[str, Any]:
    return {
        "code": r.code,
        "name": r.name,
        "form": r.form,
        "base_unit": r.base_unit,
        "grade_basis": r.grade_basis,
        "registered_seq": r.registered_seq,
    }


def lot_view(r: LotRec) -> dict[str, Any]:
    return {
        "code": r.code,
        "material": r.material,
        "origin": r.origin,
        "supplier": r.supplier,
        "purity": r.purity,
        "basis": r.basis,
        "certificate_sha256": r.certificate_sha256,
        "containers": [{"id": c[0], "type": c[1], "net_mass_g": c[2]} for c in r.containers],
        "registered_seq": r.registered_seq,
    }


def key_view(k: KeyRecord) -> dict[str, Any]:
    """A registered key: its public half and its scope (never anything secret)."""
    return {
        "key_id": k.key_id,
        "user": k.user,
        "public_key": k.public_key,
        "roles": list(k.roles),
        "sites": list(k.sites),
        "owners": list(k.owners),
        "clearance": k.clearance,
        "custody": k.custody,
        "registered_seq": k.registered_seq,
        "revoked_seq": k.revoked_seq,
    }


def users_view(keys: Iterable[KeyRecord]) -> list[dict[str, Any]]:
    """One row per user: the roles and scope of their latest active key (else latest key)."""
    by_user: dict[str, list[KeyRecord]] = {}
    for k in sorted(keys, key=lambda k: (k.user, k.registered_seq)):
        by_user.setdefault(k.user, []).append(k)
    out = []
    for user, recs in sorted(by_user.items()):
        active = [r for r in recs if r.revoked_seq is None]
        latest = (active or recs)[-1]
        out.append(
            {
                "user": user,
                "roles": list(latest.roles),
                "sites": list(latest.sites),
                "owners": list(latest.owners),
                "clearance": latest.clearance,
                "active_keys": len(active),
                "keys": len(recs),
            }
        )
    return out


def loan_view(r: LoanRec) -> dict[str, Any]:
    return {
        "id": r.id,
        "owner": r.owner,
        "site": r.site,
        "lot": r.lot,
        "material": r.material,
        "borrower": r.borrower,
        "quantity_g": r.quantity,
        "outstanding_g": r.outstanding,
        "outstanding": format_quantity(r.outstanding),
        "due_at": r.due_at,
        "premium_pct": r.premium_pct,
        "lent_seq": r.lent_seq,
    }


# Keys under which the read models give a quantity in grams (issue #12). Each is shown as
# ``{"<key>": "378.686774 t", "<key>_g": 378686774}``: the display string under the name,
# the exact integer beside it with ``_g``; a key already ending in ``_g`` gains its display
# sibling. Entries served as signed (``/log/...``) keep their grams: they are the log.
GRAM_KEYS: Final = frozenset({
    "quantity", "quantity_in", "quantity_out", "book", "counted", "annual_quantity", "cap",
    "net_mass", "outstanding", "held", "required", "shortfall", "executed", "remaining",
    "quantity_requested", "loan_outstanding", "on_loan", "delta", "balance_after",
})
# The CRMA aggregate reports decimal tonnes by name; each gains the same pair.
TONNE_KEYS: Final = {"tonnes_held": "held", "tonnes": "quantity", "annual_consumption_tonnes": "annual_consumption"}


def jsonable(value: Any) -> Any:
    """A read model as JSON for the API and the CLI alike: exact decimals as strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def quantities_out(doc: Any) -> Any:
    """``doc`` (a JSON document of a read) with every quantity in display units beside
    its exact integer, in the one shape of :data:`GRAM_KEYS`. Idempotent."""
    if isinstance(doc, list | tuple):
        return [quantities_out(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for k, v in doc.items():
        grams = isinstance(v, int) and not isinstance(v, bool)
        if k in GRAM_KEYS and (grams or v is None):
            out[k] = format_quantity(v) if v is not None else None
            out[f"{k}_g"] = v
        elif k.endswith("_g") and k[:-2] in GRAM_KEYS and (grams or v is None):
            out[k] = v
            if not isinstance(doc.get(k[:-2]), str):
                out[k[:-2]] = format_quantity(v) if v is not None else None
        elif k in TONNE_KEYS and isinstance(v, str | Decimal):
            out[k] = str(v)
            name = TONNE_KEYS[k]
            try:
                exact = Decimal(v) * 1_000_000
            except InvalidOperation:
                exact = Decimal("NaN")
            if exact.is_finite() and exact == exact.to_integral_value():
                out[name] = format_quantity(int(exact))
                out[f"{name}_g"] = int(exact)
        else:
            out[k] = quantities_out(v)
    return out
