"""Who may see and do what (DESIGN.md, "Who may do and see what"), in one place.

The API declares the roles of each route, then calls these functions, which enforce
the same thing again with the resource in hand; no route checks scope inline. Writes are
also checked by the reducer (the rules refuse an out-of-scope movement whoever submits
it); this module guards reads, which the reducer never sees.

A site outside the caller's scope is answered exactly as a site that does not exist:
the same :class:`NotFound`, with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import Forbidden, NotFound
from ledger.kinds.base import CLEARANCE_ORDER
from ledger.records import SiteRec
from ledger.state import KeyRecord

OPERATOR = "operator"
OFFICIAL = "official"
MINISTER = "minister"
AUDITOR = "auditor"
ADMIN = "security_admin"
ALL_ROLES = (OPERATOR, OFFICIAL, MINISTER, AUDITOR, ADMIN)


@dataclass(frozen=True)
class Principal:
    """The caller, as the token and the key registry describe them."""

    user: str
    roles: frozenset[str]
    sites: frozenset[str]
    owners: frozenset[str]
    clearance: str

    @classmethod
    def from_keys(cls, user: str, keys: Iterable[KeyRecord]) -> Principal:
        """The union of the user's active keys' roles and scopes (the registry, not the
        token, is the authority on scope)."""
        active = [k for k in keys if k.user == user and k.revoked_seq is None]
        clearance = max(
            (k.clearance for k in active), key=CLEARANCE_ORDER.__getitem__, default="NONE"
        )
        return cls(
            user=user,
            roles=frozenset(r for k in active for r in k.roles),
            sites=frozenset(s for k in active for s in k.sites),
            owners=frozenset(o for k in active for o in k.owners),
            clearance=clearance,
        )

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


def require_role(p: Principal, *roles: str, what: str) -> None:
    if not p.has(*roles):
        raise Forbidden(f"{what} needs one of the roles: {', '.join(roles)}")


def site_in_scope(p: Principal, site: SiteRec) -> bool:
    """Operators see their own sites; officials and ministers the sites holding stock for
    their owners; auditors every site; security admins every site (they register them),
    by code only."""
    if p.has(AUDITOR, ADMIN):
        return True
    if p.has(OPERATOR) and site.code in p.sites:
        return True
    return p.has(OFFICIAL, MINISTER) and bool(p.owners & ({site.custodian, *site.owners}))


def visible_sites(p: Principal, sites: Iterable[SiteRec]) -> list[SiteRec]:
    """Listings silently leave out what the caller may not see."""
    return [s for s in sites if site_in_scope(p, s)]


def require_site(p: Principal, site: SiteRec | None, code: str) -> SiteRec:
    if site is None or not site_in_scope(p, site):
        raise NotFound(f"no site '{code}'")
    return site


def require_stock_reader(p: Principal) -> None:
    require_role(p, OPERATOR, OFFICIAL, MINISTER, AUDITOR, what="reading stock")


def holding_visible(p: Principal, owner: str, site: str) -> bool:
    """Operators see their sites' stock (every owner's); officials and ministers their
    owners' stock (at every site, by code); auditors everything."""
    if p.has(AUDITOR):
        return True
    return (p.has(OPERATOR) and site in p.sites) or (
        p.has(OFFICIAL, MINISTER) and owner in p.owners
    )


@dataclass(frozen=True)
class StockScope:
    """The holdings a caller may see: those of ``owners`` or at ``sites`` (either)."""

    owners: frozenset[str]
    sites: frozenset[str]


def stock_scope(p: Principal) -> StockScope | None:
    """:func:`holding_visible` as a filter a query can carry (``None``: everything), so a
    read never fetches what the caller may not see (issue #8 item 7: no timing oracle)."""
    require_stock_reader(p)
    if p.has(AUDITOR):
        return None
    return StockScope(
        owners=p.owners if p.has(OFFICIAL, MINISTER) else frozenset(),
        sites=p.sites if p.has(OPERATOR) else frozenset(),
    )


def owner_scope(p: Principal) -> frozenset[str] | None:
    """Owners an aggregate may cover (``None``: all). Aggregates are for officials,
    ministers and auditors."""
    require_role(p, OFFICIAL, MINISTER, AUDITOR, what="aggregate reports")
    return None if p.has(AUDITOR) else p.owners


def require_reveal(p: Principal, site: SiteRec | None, code: str) -> SiteRec:
    """Opening a sealed location: in scope, cleared at or above the site's
    classification, and never an auditor or an admin (DESIGN.md roles table)."""
    site = require_site(p, site, code)
    if not p.has(OPERATOR, OFFICIAL, MINISTER):
        raise Forbidden("your role never opens site locations")
    if CLEARANCE_ORDER.get(p.clearance, 0) < CLEARANCE_ORDER[site.classification]:
        raise Forbidden(f"opening this location needs clearance {site.classification}")
    return site


def bundle_scope(p: Principal, owner: str | None) -> str | None:
    """Which bundle an auditor may export (issue #14): an auditor whose keys are scoped to
    owners gets only those owners' scoped bundles; an unscoped auditor any bundle. An
    owner out of scope gets the answer of one that does not exist."""
    require_role(p, AUDITOR, what="export bundles")
    if not p.owners:
        return owner
    if owner is None:
        raise Forbidden("an auditor scoped to owners exports only their bundles: add ?owner=CODE")
    if owner not in p.owners:
        raise NotFound(f"no owner {owner}")
    return owner


def require_full_log(p: Principal, *, what: str) -> None:
    """The whole log's entries (leaves, export, owner commitments) are for unscoped
    auditors: an auditor scoped to owners reads only their scoped bundles (issue #14)."""
    require_role(p, AUDITOR, what=what)
    if p.owners:
        raise Forbidden(f"an auditor scoped to owners may not {what}: fetch GET /log/bundle?owner=CODE")


def scope_key_access(p: Principal, owner: str) -> str:
    """Who may fetch an owner's scoped-audit key file from the service (issue #14, "given
    to the owner's auditors ... through the key registry"): an auditor whose keys are
    scoped to that owner. An unscoped auditor is refused (it gets every owner's key file
    out of band, from the server's administrator); another owner answers as one that
    does not exist, like a scoped bundle."""
    require_role(p, AUDITOR, what="fetch an owner's scoped-audit key")
    if not p.owners:
        raise Forbidden("only an auditor scoped to the owner fetches its key here; full auditors get key files out of band")
    if owner not in p.owners:
        raise NotFound(f"no owner {owner}")
    return owner
