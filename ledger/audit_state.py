"""An auditor's saved position: the last verified checkpoint and the verifier's state.

``reserve audit sync`` (issue #10) continues from it instead of verifying the whole
history again. The file is two lines: a header (format, version, SHA-256 of the second
line) and the payload (the checkpoint note and a :class:`ledger.verify.Snapshot`: reducer
state, chain head, tree frontier, replay-window ids, key registry). It is written to a
temporary file, fsynced and renamed, so a crash leaves the old state or the new one; a
damaged file is refused, never half-read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ledger.bundle import key_record_from_json, key_record_to_json
from ledger.errors import LedgerError, VerificationFailed
from ledger.merkle import CompactRange
from ledger.records import record_from_json, record_to_json
from ledger.state import LogInfo, State
from ledger.timefmt import format_time, parse_time
from ledger.verify import Snapshot

FORMAT = "reserve-audit-state"
VERSION = 1


@dataclass
class SavedAudit:
    """What one file holds: the checkpoint (as served, cosignatures included) and the
    verifier's snapshot at its size. ``target`` is set only in a progress file: the
    checkpoint a sync was moving to when it stopped."""

    checkpoint: str
    snapshot: Snapshot
    target: str | None = None


def snapshot_to_json(snap: Snapshot) -> dict[str, Any]:
    log, keys, tables, ids = snap.state.parts()
    return {
        "size": snap.tree.size,
        "frontier": [h.hex() for h in snap.tree.frontier],
        "prev_hash": snap.prev_hash,
        "prev_time": snap.prev_time,
        "log_id": snap.log_id,
        "log_keys": list(snap.log_keys),
        "checkpoints": snap.checkpoints,
        "last_cp_size": snap.last_cp_size,
        # From the first v2 leaf on a v1 leaf is refused (issue #14): the ratchet must
        # survive between syncs. Absent in states saved before #14: 1.
        "leaf_version": snap.leaf_version,
        "log": None if log is None else asdict(log),
        "keys": [key_record_to_json(k) for _, k in sorted(keys.items())],
        "tables": {
            name: [record_to_json(name, k, v) for k, v in rows.items()]
            for name, rows in tables.items()
        },
        "ids": [[format_time(t), i] for t, i in ids],
    }


def snapshot_from_json(d: dict[str, Any]) -> Snapshot:
    log = d["log"]
    state = State.restored(
        LogInfo(
            log_id=str(log["log_id"]),
            log_key=str(log["log_key"]),
            entry_sig_version=int(log.get("entry_sig_version", 1)),
            demo=bool(log.get("demo", False)),
        )
        if log is not None
        else None,
        {k["key_id"]: key_record_from_json(k) for k in d["keys"]},
        {name: dict(record_from_json(name, obj) for obj in rows) for name, rows in d["tables"].items()},
        [(parse_time(t), i) for t, i in d["ids"]],
    )
    tree = CompactRange(int(d["size"]), [bytes.fromhex(h) for h in d["frontier"]])
    return Snapshot(
        state=state,
        tree=tree,
        prev_hash=str(d["prev_hash"]),
        prev_time=str(d["prev_time"]),
        log_id=str(d["log_id"]),
        log_keys=[str(k) for k in d["log_keys"]],
        checkpoints=int(d["checkpoints"]),
        last_cp_size=int(d["last_cp_size"]),
        leaf_version=int(d.get("leaf_version", 1)),
    )


def _plain(obj: Any) -> Any:
    """orjson refuses tuple subclasses (a policy's ``PolicyVersion`` rows): as JSON arrays,
    like the export bundle writes them; the rules read them back as plain tuples."""
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError


def save(path: Path, saved: SavedAudit) -> None:
    """Write atomically: temp file, fsync, rename, fsync the directory."""
    payload = orjson.dumps(
        {
            "checkpoint": saved.checkpoint,
            "target": saved.target,
            "snapshot": snapshot_to_json(saved.snapshot),
        },
        default=_plain,
        option=orjson.OPT_SORT_KEYS,
    )
    header = orjson.dumps(
        {"format": FORMAT, "version": VERSION, "sha256": hashlib.sha256(payload).hexdigest()}
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(header + b"\n" + payload + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load(path: Path) -> SavedAudit | None:
    """The saved audit, ``None`` if there is none; a damaged or foreign file is refused."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _corrupt(path, "it cannot be read") from exc
    header_line, sep, rest = data.partition(b"\n")
    try:
        header = orjson.loads(header_line)
        ok_header = isinstance(header, dict) and header.get("format") == FORMAT
    except orjson.JSONDecodeError:
        ok_header = False
    if not ok_header:
        raise _corrupt(path, "it is not an audit state file")
    if header.get("version") != VERSION:
        raise _corrupt(path, f"it has version {header.get('version')!r}, this reserve reads {VERSION}")
    payload = rest[:-1] if rest.endswith(b"\n") else rest
    if not sep or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise _corrupt(path, "its checksum does not match (the file was damaged or edited)")
    try:
        d = orjson.loads(payload)
        return SavedAudit(
            checkpoint=str(d["checkpoint"]),
            target=None if d.get("target") is None else str(d["target"]),
            snapshot=snapshot_from_json(d["snapshot"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, LedgerError) as exc:
        raise _corrupt(path, "its content is malformed") from exc


def _corrupt(path: Path, why: str) -> VerificationFailed:
    return VerificationFailed(
        f"the saved audit state {path} is unusable: {why}. Nothing was changed; restore it "
        "from a backup, or move it away to audit again from the start"
    )
