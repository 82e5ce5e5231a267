"""Writing an owner-scoped bundle (``reserve export --owner``, ``GET /log/bundle?owner=``;
issue #14). The layout is described in :mod:`ledger.bundle`.

Which leaves are given in full, for owner ``X``:

1. every leaf whose owner commitment names ``X`` (under any epoch of its secret): the
   entries that touch it (``ledger.rules.owners.owners_touched``);
2. every leaf that touches :data:`~ledger.rules.owners.EVERY` owner (genesis, log key
   rotations, keys of no owner or site, materials, prices), also from before ``X`` was
   registered: the replay needs them and they hold nothing of another owner;
3. support: the registrations of the lots ``X``'s entries move, of the keys that
   signed them, and of the other owners they name (a site ``X`` shares, a key scoped to
   several owners): the replay refuses without them, so leaving one out cannot go unseen;
4. every v1 leaf (written before the log switched to v2): without a commitment nothing
   could show it is not ``X``'s, so a history begun before issue #14 is given in full up
   to the switch (README).

Every other leaf is withheld: its rest hash and commitment only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, select

from ledger import bundle
from ledger.checkpoint import note_verifier_key
from ledger.entries import Leaf
from ledger.errors import ConfigError, NotFound
from ledger.kinds.keys import KeyRegistered
from ledger.kinds.stock import LotRegistered, OwnerRegistered
from ledger.owner_scope import names, rest_hash
from ledger.owner_scope_verify import owner_balances
from ledger.rules.owners import EVERY, owners_touched
from ledger.state import KeyRecord
from ledger.store import owner_scope, projections
from ledger.store.audit import db_checkpoints, db_rows
from ledger.store.owner_scope import OwnerKeyring
from ledger.store.schema import checkpoints, log_state
from ledger.store.witnesses import cosigned_note

_DECODER = msgspec.json.Decoder(Leaf)
_LOT_FIELDS = ("lot", "lot_in", "lot_out")
_OWNER_FIELDS = ("owner", "owners", "custodian")


class _KeysView:
    """:class:`ledger.rules.owners.OwnerLookup` over the key registry, enough to tell
    whether an entry touches every owner (a key's scope never changes once registered)."""

    def __init__(self, keys: dict[str, KeyRecord]):
        self._keys = keys

    def key(self, key_id: str) -> KeyRecord | None:
        return self._keys.get(key_id)

    def get(self, table: str, key: Any) -> Any:
        return None


def _plan(conn: Connection, size: int, secrets: list[bytes], log_id: str) -> bytearray:
    """One flag per seq: 1 to give the leaf in full, 0 to withhold it."""
    full = bytearray(size)
    lot_seq: dict[str, int] = {}
    key_seq: dict[str, int] = {}
    owner_seq: dict[str, int] = {}
    lots_used: set[str] = set()
    owners_named: set[str] = set()
    signers: set[str] = set()
    view = _KeysView(projections.read_keys(conn))
    for seq, row in enumerate(db_rows(conn, upto=size)):
        body = _DECODER.decode(row.line)
        entry = body.entry
        if isinstance(entry, LotRegistered):
            lot_seq.setdefault(entry.code, seq)
        elif isinstance(entry, KeyRegistered):
            key_seq.setdefault(entry.public_key, seq)
        elif isinstance(entry, OwnerRegistered):
            owner_seq.setdefault(entry.code, seq)
        c = row.commitment
        if c is None or names(c, secrets, log_id=log_id, seq=seq) or owners_touched(entry, view) is EVERY:
            full[seq] = 1
            signers.update(s.pub for s in body.sigs)
            lots_used.update(v for f in _LOT_FIELDS if isinstance(v := getattr(entry, f, None), str))
            for f in _OWNER_FIELDS:
                v = getattr(entry, f, None)
                owners_named.update([v] if isinstance(v, str) else v if isinstance(v, (list, tuple)) else ())
    for lot in lots_used:
        if lot in lot_seq:
            full[lot_seq[lot]] = 1
    for pub in signers:
        if pub in key_seq:
            full[key_seq[pub]] = 1
    for code in owners_named:
        if code in owner_seq:
            full[owner_seq[code]] = 1
    return full


def export_owner_bundle(
    engine: Engine, owner: str, out: Path, *, keyring: OwnerKeyring | None
) -> tuple[int, bytes, int]:
    """Write ``owner``'s scoped bundle to ``out``; return (size, root, entries given)."""
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty")
    given = 0
    # One transaction: the plan, the leaves, the checkpoints and the balances are of one
    # snapshot of the log (the balances are those at the bundle's last checkpoint).
    with engine.begin() as conn:
        head = conn.execute(select(log_state)).first()
        if head is None:
            raise ConfigError("the database holds no log: run 'reserve init' first")
        if owner_scope.enabled_from(conn) is None:
            # 404 over the API, not 503: the service is fine, the bundle does not exist.
            raise NotFound("no owner-scoped bundles: owner-scoped audit is not enabled on this log")
        epochs = owner_scope.read_secrets(conn, owner, keyring=keyring).get(owner)
        if not epochs:
            raise NotFound(f"no owner {owner}")
        size = int(head.size)
        log_id = str(head.log_id)
        full = _plan(conn, size, [e.secret for e in epochs], log_id)
        out.mkdir(parents=True, exist_ok=True)
        with (out / bundle.ENTRIES).open("wb") as f, (out / bundle.COMMITMENTS).open("w") as cf:
            for seq, row in enumerate(db_rows(conn, upto=size)):
                if seq == 0:
                    (out / "genesis.json").write_bytes(row.line + b"\n")
                if full[seq]:
                    f.write(row.line + b"\n")
                    given += 1
                else:
                    stub = {"seq": seq, "withheld": rest_hash(row.line).hex()}
                    f.write(json.dumps(stub, separators=(",", ":")).encode() + b"\n")
                if row.commitment is not None:
                    cf.write(json.dumps({"seq": seq, "commitment": row.commitment.hex()}) + "\n")
        with (out / bundle.CHECKPOINTS).open("w") as f:
            for cp_size, note in db_checkpoints(conn, upto=size):
                f.write(json.dumps({"size": cp_size, "note": note}) + "\n")
        (out / "checkpoint.note").write_text(cosigned_note(conn, size) if size else "")
        (out / "log.vkey").write_text(
            note_verifier_key(key_name=log_id, public_key=bytes.fromhex(head.log_key)) + "\n"
        )
        held = owner_balances(projections.read_table(conn, "balances"), owner)
        (out / bundle.OWNER_BALANCES).write_text(
            json.dumps(
                {
                    "owner": owner,
                    "balances": [
                        {"site": site, "lot": lot, "material": rec.material, "quantity": rec.quantity}
                        for (site, lot), rec in sorted(held.items())
                    ],
                },
                indent=1,
            )
        )
        root_row = conn.execute(select(checkpoints.c.root).where(checkpoints.c.size == size)).first()
        root = bytes(root_row.root) if root_row else b""
    files = {p.name: bundle.file_sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {
        "format": bundle.FORMAT,
        "log_id": log_id,
        "size": size,
        "scope": {"owner": owner},
        "files": files,
    }
    tmp = out / (bundle.MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / bundle.MANIFEST)
    return size, root, given
