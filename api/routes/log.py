"""The signed log for auditors and clients: checkpoints, proofs, entries, export, and the
access log. Proof sizes must come from a signed checkpoint the client holds (an RFC 9162
proof does not pin the tree size by itself)."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from api.audit import access_event
from api.body import StrictJSONRoute
from api.deps import principal, roles, services
from api.params import MAX_SAFE_INT, SeqQuery, SizeQuery
from api.services import Services
from ledger import policy
from ledger.access_log import verify_access_log
from ledger.bundle_tar import tar_stream
from ledger.errors import InvalidEntry
from ledger.policy import AUDITOR, Principal
from ledger.store.access import iter_access, iter_access_checkpoints
from ledger.store.audit import db_rows, export_bundle
from ledger.store.log import head
from ledger.store.owner_export import export_owner_bundle
from ledger.store.owner_scope import read_commitments
from ledger.store.proofs import prove_consistency, prove_inclusion
from ledger.store.witnesses import cosigned_note

router = APIRouter(prefix="/log", tags=["log"], route_class=StrictJSONRoute)


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(x).decode() for x in items]


@router.get("/checkpoint", response_class=PlainTextResponse)
def latest_checkpoint(svc: Services = Depends(services)) -> str:
    """The newest signed checkpoint (C2SP tlog-checkpoint), public: witnesses and
    monitors read it without an account. It reveals only the size and root."""
    with svc.reader.connect() as conn:
        return cosigned_note(conn)  # with the witnesses' cosignature lines (issue #10)


@router.get("/checkpoints/{size}", response_class=PlainTextResponse, **roles(*policy.ALL_ROLES))
def checkpoint_at(size: int = Path(ge=1, le=MAX_SAFE_INT), svc: Services = Depends(services)) -> str:
    with svc.reader.connect() as conn:
        return cosigned_note(conn, size)


@router.get("/proofs/inclusion", **roles(*policy.ALL_ROLES))
def inclusion(
    seq: SeqQuery, size: SizeQuery, svc: Services = Depends(services)
) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        n, leaf, path = prove_inclusion(conn, seq=seq, size=size)
    return {"seq": seq, "size": n, "leaf_hash": leaf.hex(), "proof": _b64(path)}


@router.get("/proofs/consistency", **roles(*policy.ALL_ROLES))
def consistency(
    old: SizeQuery, new: SizeQuery, svc: Services = Depends(services)
) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        n, proof = prove_consistency(conn, old_size=old, new_size=new)
    return {"old": old, "new": n, "proof": _b64(proof)}


@router.get("/entries", **roles(AUDITOR))
def entries_page(
    start: SeqQuery = 0,
    limit: int = Query(default=100, ge=1, le=1000),
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Signed entries as stored (canonical leaves), for auditors."""
    policy.require_full_log(p, what="read the whole log's entries")
    with svc.reader.connect() as conn:
        size = int(head(svc.reader).size)
        rows = []
        for row in db_rows(conn, upto=min(size, start + limit), start=start):
            rows.append(json.loads(row.line))
    return {"size": size, "entries": rows}


@router.get("/export", **roles(AUDITOR))
def export(
    request: Request, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> StreamingResponse:
    """The whole history as JSON lines (one canonical leaf per line), streamed; recorded
    in the access log. ``reserve export`` writes the full bundle."""
    policy.require_full_log(p, what="export the whole log")
    size = int(head(svc.reader).size)
    access_event(svc, request, action="export", outcome="started", size=size)

    def lines() -> Iterator[bytes]:
        with svc.reader.connect() as conn:
            for row in db_rows(conn, upto=size):
                yield row.line + b"\n"

    return StreamingResponse(lines(), media_type="application/jsonl")


# A range of entries, ``start`` to ``end - 1`` (/log/leaves, /log/commitments).
RangeStart = Annotated[int, Query(ge=0, le=2**53)]
RangeEnd = Annotated[int, Query(ge=1, le=2**53)]


def _start_range_export(
    svc: Services, request: Request, p: Principal, start: int, end: int, *, what: str, fmt: str
) -> None:
    """What every read of entries ``start`` to ``end - 1`` does before it streams: a full
    auditor only, a range within the log, and an access-log record first."""
    policy.require_full_log(p, what=what)
    size = int(head(svc.reader).size)
    if not start < end <= size:
        raise InvalidEntry(f"entries must lie within the log's {size} entries, start < end", field="end")
    access_event(svc, request, action="export", outcome="started", size=end, start=start, format=fmt)


@router.get("/leaves", **roles(AUDITOR))
def leaves(
    request: Request,
    start: RangeStart,
    end: RangeEnd,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> StreamingResponse:
    """Entries ``start`` to ``end - 1`` as stored, one canonical leaf per line (JSON
    lines), streamed: what ``reserve audit sync`` fetches beyond its last checkpoint.
    Recorded in the access log as an export."""
    _start_range_export(svc, request, p, start, end, what="read the whole log's entries", fmt="leaves")

    def lines() -> Iterator[bytes]:
        with svc.reader.connect() as conn:
            for row in db_rows(conn, upto=end, start=start):
                yield row.line + b"\n"

    return StreamingResponse(lines(), media_type="application/jsonl")


@router.get("/commitments", **roles(AUDITOR))
def commitments(
    request: Request,
    start: RangeStart,
    end: RangeEnd,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> StreamingResponse:
    """The owner commitments of the v2 leaves among entries ``start`` to ``end - 1``
    (issue #14), JSON lines ``{"seq": N, "commitment": HEX}`` as in a bundle's
    ``owner_commitments.jsonl``: ``reserve audit sync`` fetches them with ``/log/leaves``
    (each is bound into its leaf hash). A full auditor's read, like the leaves."""
    _start_range_export(svc, request, p, start, end, what="read the owner commitments", fmt="commitments")

    def lines() -> Iterator[bytes]:
        with svc.reader.connect() as conn:
            for lo in range(start, end, 2000):
                found = read_commitments(conn, start=lo, end=min(end, lo + 2000))
                for seq in sorted(found):
                    yield json.dumps({"seq": seq, "commitment": found[seq].hex()}).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/jsonl")


@router.get("/bundle", **roles(AUDITOR))
def bundle(
    request: Request,
    owner: str | None = Query(default=None, max_length=64, pattern=r"^[A-Z0-9][A-Z0-9._-]{0,63}$"),
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> StreamingResponse:
    """The whole bundle ``reserve export`` writes, as a tar stream of ``bundle/<file>``
    (``curl ... | tar x``, or ``reserve audit fetch DIR``), for ``reserve verify-bundle``.
    With ``?owner=CODE``, that owner's scoped bundle (issue #14; an auditor scoped to
    owners gets only theirs). Recorded in the access log."""
    owner = policy.bundle_scope(p, owner)
    work = FsPath(tempfile.mkdtemp(prefix="reserve-bundle-"))
    try:
        if owner is None:
            size, _root = export_bundle(svc.reader, work / "bundle")
        else:
            size, _root, _given = export_owner_bundle(
                svc.reader, owner, work / "bundle", keyring=svc.ledger.owner_keyring()
            )
        scope = {} if owner is None else {"owner": owner}
        access_event(svc, request, action="export", outcome="started", size=size, format="bundle", **scope)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    def stream() -> Iterator[bytes]:
        try:
            yield from tar_stream(work / "bundle")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return StreamingResponse(
        stream(),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="bundle-{size}.tar"'},
    )


@router.get("/access", **roles(AUDITOR))
def access_log_page(
    start: SeqQuery = 0,
    limit: int = Query(default=100, ge=1, le=1000),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    svc.refusals.flush()  # refusals still buffered are written first: the auditor sees them
    with svc.reader.connect() as conn:
        events = [json.loads(line) for line in iter_access(conn, start=start, limit=limit)]
    return {"events": events}


@router.get("/access/verify", **roles(AUDITOR))
def access_log_verify(svc: Services = Depends(services)) -> dict[str, Any]:
    """Chain and checkpoints of the access log, against the log's keys."""
    svc.refusals.flush()
    keys = [bytes.fromhex(k.public_key) for k in svc.ledger.registered_keys() if k.user == "log"]
    with svc.reader.connect() as conn:
        report = verify_access_log(
            iter_access(conn), iter_access_checkpoints(conn), log_id=svc.log_id, log_keys=keys
        )
    return {
        "ok": True,
        "size": report.size,
        "root": report.root.hex(),
        "checkpoints": report.checkpoints,
    }
