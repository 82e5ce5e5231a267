"""Sealed site locations: the ``site_locations`` table (DESIGN.md, Secrets).

Each row is one version of a site's location opening, sealed by a
:class:`ledger.locations.Sealer` (AES-256-GCM in ``keys.sealing``)::

    plaintext = JCS({"location": {...the Location...}, "salt": base64(salt)})
    aad       = AAD_DOMAIN || JCS({"commitment": ..., "site": ..., "version": ...})

The associated data binds the row's site, version and commitment, so a ciphertext copied
to another site's row, another version, or beside another commitment does not open. The
plaintext's ``location`` member is exactly ``location_bytes(location)`` (a member of a
canonical object is canonical), so the opening is (salt, those bytes).

Rows are written only inside an append, by the ``also`` callback that
:func:`seal_location` returns, in the same transaction as the ``site.registered`` or
``site.relocated`` entry that commits to them: either both are stored or neither. The
table is append-only (triggers, migration 0002); a relocation adds a version, the old
ones stay and still open.

This module imports no cryptography: the sealer is passed in. Nothing here logs, raises
or ``repr``s a location or a salt.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any, Final

import structlog
from sqlalchemy import Connection, func, insert, select

from ledger.canonical import canonical
from ledger.entries import decode_leaf
from ledger.errors import InvalidEntry, KeystoreError, NotFound, VerificationFailed
from ledger.kinds.stock import SiteRegistered, SiteRelocated
from ledger.locations import (
    SALT_LEN,
    Location,
    Opening,
    Sealer,
    commitment,
    location_bytes,
    parse_location,
    verify_opening,
)
from ledger.store.schema import entries, site_locations
from ledger.timefmt import now

__all__ = [
    "AAD_DOMAIN",
    "location_history",
    "open_location",
    "seal_location",
    "sealed_aad",
]

log = structlog.get_logger("ledger.locations")

AAD_DOMAIN: Final = b"reserve-ledger/site-location/v1\n"
# Same words as keys.sealing (which ledger may not import) for every failure to open.
_OPEN_FAILED: Final = "sealed location cannot be opened with this key"
_COMMITTING_KINDS: Final = ("site.registered", "site.relocated")


def sealed_aad(*, site: str, version: int, commitment: str) -> bytes:
    """The associated data a row's ciphertext is bound to."""
    return AAD_DOMAIN + canonical({"commitment": commitment, "site": site, "version": version})


def _plaintext(salt: bytes, loc_bytes: bytes) -> bytes:
    return canonical(
        {"location": json.loads(loc_bytes), "salt": base64.b64encode(salt).decode("ascii")}
    )


def _decode_plaintext(plaintext: bytes) -> tuple[bytes, Location]:
    """(salt, location) from an opened plaintext; VerificationFailed if it is not one.

    Errors are raised outside the handlers: a chained decoder error would hold the text.
    """
    doc: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        doc = json.loads(plaintext)
    if not isinstance(doc, dict) or set(doc) != {"location", "salt"}:
        raise VerificationFailed("the sealed opening is malformed")
    salt: bytes | None = None
    if isinstance(doc["salt"], str):
        with contextlib.suppress(binascii.Error, ValueError):
            salt = base64.b64decode(doc["salt"], validate=True)
    if salt is None or len(salt) != SALT_LEN:
        raise VerificationFailed("the sealed opening is malformed")
    loc: Location | None = None
    with contextlib.suppress(InvalidEntry):
        loc = parse_location(canonical(doc["location"]))
    if loc is None or _plaintext(salt, location_bytes(loc)) != plaintext:
        raise VerificationFailed("the sealed opening is malformed")
    return salt, loc


def _require_committing_entry(
    conn: Connection, *, site: str, commitment: str, first_seq: int
) -> None:
    """The append this row rides on must hold an entry committing ``site`` to
    ``commitment``: a sealed location never exists without its signed commitment."""
    rows = conn.execute(
        select(entries.c.leaf)
        .where(entries.c.seq >= first_seq, entries.c.kind.in_(_COMMITTING_KINDS))
        .order_by(entries.c.seq)
    )
    for row in rows:
        leaf, _ = decode_leaf(bytes(row.leaf))
        body = leaf.entry
        if (
            isinstance(body, SiteRegistered)
            and body.code == site
            and body.location_commitment == commitment
        ) or (
            isinstance(body, SiteRelocated)
            and body.site == site
            and body.location_commitment == commitment
        ):
            return
    raise InvalidEntry(
        f"no entry of this append commits site {site} to the sealed location",
        field="location_commitment",
    )


def seal_location(
    *,
    site: str,
    location: Location,
    sealer: Sealer,
    salt: bytes | None = None,
) -> tuple[str, Callable[[Connection, int], None]]:
    """Commit to ``location`` and prepare its sealed row.

    Returns ``(commitment, also)``: put the commitment in the ``site.registered`` or
    ``site.relocated`` body, and pass ``also`` to :func:`ledger.store.log.append` with
    it. Inside the append transaction ``also`` checks that the appended batch commits
    ``site`` to this commitment, seals the opening for the next version of the site
    (1 for a new site), checks the seal opens again, and inserts the row. Any failure
    (the sealer's included) rolls back the whole append.

    ``salt`` (32 bytes) defaults to ``secrets.token_bytes(32)``; pass one only in tests.
    """
    if salt is None:
        salt = secrets.token_bytes(SALT_LEN)
    loc_bytes = location_bytes(location)
    commit = commitment(salt=salt, location=loc_bytes)
    plaintext = _plaintext(salt, loc_bytes)

    def also(conn: Connection, first_seq: int) -> None:
        _require_committing_entry(conn, site=site, commitment=commit, first_seq=first_seq)
        latest = conn.execute(
            select(func.max(site_locations.c.version)).where(site_locations.c.site == site)
        ).scalar()
        version = int(latest or 0) + 1
        aad = sealed_aad(site=site, version=version, commitment=commit)
        nonce, ciphertext = sealer.seal(plaintext, aad=aad)
        # Fail closed now rather than at the first reveal: a row that cannot be opened
        # would leave a signed commitment nobody can ever prove.
        if not hmac.compare_digest(sealer.open(nonce, ciphertext, aad=aad), plaintext):
            raise KeystoreError("the sealer does not open what it sealed")
        conn.execute(
            insert(site_locations).values(
                site=site,
                version=version,
                commitment=commit,
                key_id=sealer.key_id,
                nonce=nonce,
                ciphertext=ciphertext,
                created_at=now(),
            )
        )
        log.info("location_sealed", site=site, version=version, key_id=sealer.key_id)

    return commit, also


def open_location(
    conn: Connection, *, site: str, sealer: Sealer, version: int | None = None
) -> Opening:
    """Open the sealed location of ``site`` (the latest version unless ``version``).

    Fails closed: no row is :class:`NotFound`; a row sealed under another key, or whose
    nonce, ciphertext, site, version or commitment was changed, is
    :class:`KeystoreError`; an opening that does not match the row's commitment is
    :class:`VerificationFailed`. Callers must write the access log first (DESIGN.md).
    The caller should check ``opening.commitment`` against the signed log as well
    (:func:`ledger.locations.verify_opening`); this checks the table's copy.
    """
    q = select(site_locations).where(site_locations.c.site == site)
    if version is None:
        q = q.order_by(site_locations.c.version.desc()).limit(1)
    else:
        q = q.where(site_locations.c.version == version)
    row = conn.execute(q).first()
    if row is None:
        if version is None:
            raise NotFound(f"no sealed location for site {site}")
        raise NotFound(f"no sealed location version {version} for site {site}")
    if row.key_id != sealer.key_id:  # public names; the AEAD would refuse anyway
        raise KeystoreError(_OPEN_FAILED)
    aad = sealed_aad(site=row.site, version=int(row.version), commitment=row.commitment)
    plaintext = sealer.open(bytes(row.nonce), bytes(row.ciphertext), aad=aad)
    salt, loc = _decode_plaintext(plaintext)
    verify_opening(commitment=row.commitment, salt=salt, location=location_bytes(loc))
    return Opening(
        site=row.site,
        version=int(row.version),
        commitment=row.commitment,
        salt=salt,
        location=loc,
    )


def location_history(conn: Connection, site: str) -> list[tuple[int, str, str]]:
    """(version, commitment, created_at) of every sealed version of ``site``, oldest
    first. No plaintext: no key is needed."""
    rows = conn.execute(
        select(site_locations.c.version, site_locations.c.commitment, site_locations.c.created_at)
        .where(site_locations.c.site == site)
        .order_by(site_locations.c.version)
    )
    return [(int(r.version), str(r.commitment), str(r.created_at)) for r in rows]
