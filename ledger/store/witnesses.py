"""The log's witnesses and the cosignatures they returned (tables of migration 0007)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from ledger.cosignature import Cosigner, parse_cosigner_vkey, with_signature_lines
from ledger.errors import ConfigError, Conflict, NotFound
from ledger.store.db import write_transaction
from ledger.store.schema import checkpoints, cosignatures, witnesses
from ledger.timefmt import now


@dataclass(frozen=True)
class WitnessRow:
    name: str
    url: str
    vkey: str

    @property
    def cosigner(self) -> Cosigner:
        return parse_cosigner_vkey(self.vkey)


def add_witness(engine: Engine, *, name: str, url: str, vkey: str) -> WitnessRow:
    """Register a witness; its name must be the name in its verifier key."""
    cosigner = parse_cosigner_vkey(vkey)
    if cosigner.name != name:
        raise ConfigError(f"the verifier key names witness '{cosigner.name}', not '{name}'")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("a witness URL starts with http:// or https://")
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                insert(witnesses).values(
                    name=name, url=url, vkey=cosigner.vkey, added_at=now()
                )
            )
    except IntegrityError:
        raise Conflict(f"a witness named '{name}' or with that key is already registered") from None
    return WitnessRow(name=name, url=url, vkey=cosigner.vkey)


def list_witnesses(conn: Connection) -> list[WitnessRow]:
    rows = conn.execute(select(witnesses).order_by(witnesses.c.name)).all()
    return [WitnessRow(name=r.name, url=r.url, vkey=r.vkey) for r in rows]


def last_cosigned_size(conn: Connection, witness: str) -> int:
    """The largest checkpoint this witness cosigned for us (0: none), where the next
    submission's ``old`` size starts."""
    size = conn.execute(
        select(func.max(cosignatures.c.size)).where(cosignatures.c.witness == witness)
    ).scalar_one()
    return int(size or 0)


def store_cosignature(engine: Engine, *, size: int, witness: str, line: str, timestamp: int) -> None:
    """Keep a verified cosignature beside its checkpoint (once per checkpoint and witness)."""
    try:
        with write_transaction(engine) as conn:
            exists = conn.execute(
                select(cosignatures.c.size).where(
                    cosignatures.c.size == size, cosignatures.c.witness == witness
                )
            ).first()
            if exists is None:
                conn.execute(
                    insert(cosignatures).values(
                        size=size, witness=witness, line=line.rstrip("\n"), timestamp=timestamp
                    )
                )
    except IntegrityError:
        return  # a concurrent feeder stored the same cosignature first


def latest_checkpoint(conn: Connection) -> tuple[int, str] | None:
    row = conn.execute(
        select(checkpoints.c.size, checkpoints.c.note).order_by(checkpoints.c.size.desc()).limit(1)
    ).first()
    return (int(row.size), str(row.note)) if row is not None else None


def cosigned_note(conn: Connection, size: int | None = None) -> str:
    """The checkpoint note (the newest, or at ``size``) with every stored cosignature line
    appended: still one valid C2SP signed note, now with several signatures."""
    if size is None:
        latest = latest_checkpoint(conn)
        if latest is None:
            raise NotFound("the log has no checkpoint yet")
        size, note = latest
    else:
        row = conn.execute(select(checkpoints.c.note).where(checkpoints.c.size == size)).first()
        if row is None:
            raise NotFound(f"no checkpoint at size {size}")
        note = str(row.note)
    lines = conn.execute(
        select(cosignatures.c.line)
        .where(cosignatures.c.size == size)
        .order_by(cosignatures.c.witness)
    ).scalars()
    return with_signature_lines(note, list(lines))
