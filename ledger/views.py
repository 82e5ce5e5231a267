"""JSON views of the registry projections, one shape for every reader.

The API's registry routes (``api/routes/registry.py``) and the local ``reserve`` command
both render these, so a client sees the same fields whether it reads the database on
the server or the service over HTTP. Scope filtering is not done here (``ledger.policy``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
