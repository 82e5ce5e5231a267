"""Reference data rules: owners, materials, lots, sites (with location commitments),
targets. Who may register what follows DESIGN.md's roles table."""

from __future__ import annotations

from ledger.kinds.stock import (
    LotRegistered,
    MaterialRegistered,
    OwnerRegistered,
    SiteRegistered,
    SiteRelocated,
    TargetSet,
)
from ledger.records import LotRec, MaterialRec, OwnerRec, SiteRec, TargetRec
from ledger.reducer import Context, Signers, require_role, rule
from ledger.rules.common import need, refuse, require_owner_scope
from ledger.state import Change, Put, StateView
from ledger.timefmt import parse_time


def _unique(state: StateView, table: str, code: str, ctx: Context, what: str) -> None:
    if state.get(table, code) is not None:
        raise refuse(f"{what}-exists", f"{what} '{code}' is already registered", ctx, "entry.code")


@rule(OwnerRegistered)
def owner_registered(
    state: StateView, body: OwnerRegistered, signers: Signers, ctx: Context
) -> list[Change]:
    require_role(signers, "security_admin", ctx, what="register owners")
    _unique(state, "owners", body.code, ctx, "owner")
    return [Put("owners", body.code, OwnerRec(body.code, body.name, body.country, ctx.seq))]


@rule(MaterialRegistered)
def material_registered(
    state: StateView, body: MaterialRegistered, signers: Signers, ctx: Context
) -> list[Change]:
    require_role(signers, "security_admin", ctx, what="register materials")
    _unique(state, "materials", body.code, ctx, "material")
    rec = MaterialRec(body.code, body.name, body.form, body.base_unit, body.grade_basis, ctx.seq)
    return [Put("materials", body.code, rec)]


@rule(LotRegistered)
def lot_registered(
    state: StateView, body: LotRegistered, signers: Signers, ctx: Context
) -> list[Change]:
    if not {"operator", "official"} & set(signers.author.roles):
        raise refuse("role", "only an operator or an official registers lots", ctx, "entry.author")
    _unique(state, "lots", body.code, ctx, "lot")
    need(state, "materials", body.material, ctx, what="material", field="entry.material")
    ids = [c.id for c in body.containers]
    if len(set(ids)) != len(ids):
        raise refuse(
            "containers", "each container id appears once in a lot", ctx, "entry.containers"
        )
    rec = LotRec(
        code=body.code,
        material=body.material,
        origin=body.origin,
        supplier=body.supplier,
        purity=body.purity,
        basis=body.basis,
        certificate_sha256=body.certificate_sha256,
        containers=tuple((c.id, c.type, c.net_mass) for c in body.containers),
        registered_seq=ctx.seq,
    )
    return [Put("lots", body.code, rec)]


@rule(SiteRegistered)
def site_registered(
    state: StateView, body: SiteRegistered, signers: Signers, ctx: Context
) -> list[Change]:
    require_role(signers, "security_admin", ctx, what="register sites")
    _unique(state, "sites", body.code, ctx, "site")
    need(state, "owners", body.custodian, ctx, what="owner", field="entry.custodian")
    if not body.owners or len(set(body.owners)) != len(body.owners):
        raise refuse(
            "site-owners",
            "list the owners the site holds stock for, each once",
            ctx,
            "entry.owners",
        )
    for owner in body.owners:
        need(state, "owners", owner, ctx, what="owner", field="entry.owners")
    rec = SiteRec(
        code=body.code,
        classification=body.classification,
        custodian=body.custodian,
        owners=tuple(body.owners),
        location_commitment=body.location_commitment,
        registered_seq=ctx.seq,
        commitment_seq=ctx.seq,
        last_count_at=None,
    )
    return [Put("sites", body.code, rec)]


@rule(SiteRelocated)
def site_relocated(
    state: StateView, body: SiteRelocated, signers: Signers, ctx: Context
) -> list[Change]:
    require_role(signers, "security_admin", ctx, what="relocate sites")
    site: SiteRec = need(state, "sites", body.site, ctx, what="site", field="entry.site")
    if site.location_commitment == body.location_commitment:
        raise refuse(
            "same-location",
            "the new commitment equals the current one",
            ctx,
            "entry.location_commitment",
        )
    rec = SiteRec(
        code=site.code,
        classification=site.classification,
        custodian=site.custodian,
        owners=site.owners,
        location_commitment=body.location_commitment,
        registered_seq=site.registered_seq,
        commitment_seq=ctx.seq,
        last_count_at=site.last_count_at,
    )
    return [Put("sites", site.code, rec)]


@rule(TargetSet)
def target_set(state: StateView, body: TargetSet, signers: Signers, ctx: Context) -> list[Change]:
    require_owner_scope(signers, "official", body.owner, ctx)
    need(state, "owners", body.owner, ctx, what="owner", field="entry.owner")
    need(state, "materials", body.material, ctx, what="material", field="entry.material")
    if parse_time(body.valid_from) >= parse_time(body.valid_to):
        raise refuse("validity", "valid_from must be before valid_to", ctx, "entry.valid_to")
    rec = TargetRec(
        owner=body.owner,
        material=body.material,
        days_of_cover=body.days_of_cover,
        annual_quantity=body.annual_quantity,
        basis=body.basis,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        set_seq=ctx.seq,
    )
    return [Put("targets", (body.owner, body.material), rec)]
