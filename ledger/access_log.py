"""The access log's format and verification (issue #4), free of the database.

Every reveal of a location, every refused request and every export is an event; events
are canonical JSON leaves chained by ``prev_hash`` and folded into an RFC 9162 tree whose
root the log key signs after each append, as a C2SP checkpoint with origin
``<log id>/access``. Sensitive values (client addresses, the paths of refused requests)
are HMAC'd with a key only the server holds, so an auditor can match repeats without
learning them; a location is never part of an event at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger.canonical import canonical, parse_json
from ledger.checkpoint import verify_checkpoint
from ledger.entries import ZERO_HASH
from ledger.errors import LedgerError, VerificationFailed
from ledger.merkle import CompactRange, leaf_hash

ACCESS_SUFFIX = "/access"


def access_origin(log_id: str) -> str:
    return log_id + ACCESS_SUFFIX


def make_access_leaf(*, seq: int, prev_hash: str, at: str, event: dict[str, Any]) -> bytes:
    return canonical({"seq": seq, "prev_hash": prev_hash, "at": at, "event": event})


@dataclass(frozen=True)
class AccessReport:
    size: int
    root: bytes
    checkpoints: int


def verify_access_log(
    leaves: Iterable[bytes],
    checkpoints: Iterable[tuple[int, str]],
    *,
    log_id: str,
    log_keys: list[bytes],
) -> AccessReport:
    """Chain, canonical form, and every checkpoint (signed by one of the log's keys,
    the list the ledger's own verification established). Streams."""
    tree = CompactRange()
    cps = iter(checkpoints)
    next_cp = next(cps, None)
    prev = ZERO_HASH
    seen = 0
    last_cp = 0
    checked = 0
    for seq, line in enumerate(leaves):
        try:
            value = parse_json(line)
            if canonical(value) != line:
                raise VerificationFailed("access event is not canonical", seq=seq)
        except LedgerError as exc:
            raise VerificationFailed(f"access log: {exc.public_message}", seq=seq) from None
        if not isinstance(value, dict) or value.get("seq") != seq:
            raise VerificationFailed(
                "access log: event out of place (deleted or reordered)", seq=seq
            )
        if value.get("prev_hash") != prev:
            raise VerificationFailed("access log: hash chain broken", seq=seq)
        h = leaf_hash(line)
        tree.append(h)
        prev = h.hex()
        seen = seq + 1
        while next_cp is not None and next_cp[0] <= seen:
            size, note = next_cp
            _check(note, size, tree.root(), log_id, log_keys, seq)
            last_cp = size
            checked += 1
            next_cp = next(cps, None)
    if next_cp is not None:
        raise VerificationFailed(
            f"access log truncated: a checkpoint covers {next_cp[0]} events, {seen} present",
            seq=seen,
        )
    if last_cp != seen:
        raise VerificationFailed("access log: events after the last signed checkpoint", seq=last_cp)
    return AccessReport(size=seen, root=tree.root(), checkpoints=checked)


def _check(note: str, size: int, root: bytes, log_id: str, keys: list[bytes], seq: int) -> None:
    last: LedgerError | None = None
    for key in keys:
        try:
            cp = verify_checkpoint(note, public_key=key, key_name=log_id)
        except LedgerError as exc:
            last = exc
            continue
        if cp.origin != access_origin(log_id) or cp.size != size or cp.root != root:
            raise VerificationFailed(
                f"access checkpoint at size {size} does not match the events", seq=seq
            )
        return
    raise VerificationFailed(
        f"access checkpoint at size {size}: {last.public_message if last else 'no signature'}",
        seq=seq,
    )
