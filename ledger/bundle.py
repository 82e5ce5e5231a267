"""Export bundles: a directory an auditor verifies offline with only ``ledger``.

Layout (format 1)::

    DIR/MANIFEST.json      format, log id, size, root, SHA-256 of every other file
    DIR/entries.jsonl      one canonical leaf per line, seq 0..size-1 (genesis first)
    DIR/checkpoints.jsonl  {"size": N, "note": "<signed note>"} per line, by size
    DIR/checkpoint.note    the newest checkpoint, as is, for tlog tooling (C2SP)
    DIR/genesis.json       entry 0, the same bytes as the first line of entries.jsonl
    DIR/log.vkey           the log's note verifier key (golang.org/x/mod/sumdb/note)
    DIR/projections.json   the server's projections at export time, to compare

Sealed locations and the keystore are never part of a bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError, VerificationFailed
from ledger.records import record_from_json
from ledger.state import KeyRecord
from ledger.verify import LeafRow, Projections

FORMAT = 1
ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
PROJECTIONS = "projections.json"
MANIFEST = "MANIFEST.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def key_record_to_json(rec: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": rec.key_id,
        "public_key": rec.public_key,
        "user": rec.user,
        "roles": list(rec.roles),
        "sites": list(rec.sites),
        "owners": list(rec.owners),
        "clearance": rec.clearance,
        "custody": rec.custody,
        "registered_seq": rec.registered_seq,
        "revoked_seq": rec.revoked_seq,
    }


def key_record_from_json(d: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=d["key_id"],
        public_key=d["public_key"],
        user=d["user"],
        roles=tuple(d["roles"]),
        sites=tuple(d["sites"]),
        owners=tuple(d["owners"]),
        clearance=d["clearance"],
        custody=d["custody"],
        registered_seq=d["registered_seq"],
        revoked_seq=d["revoked_seq"],
    )


class Bundle:
    """Reads a bundle directory lazily (entries are streamed, never loaded whole)."""

    def __init__(self, root: Path):
        self.root = root
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise ConfigError(f"{root} is not an export bundle (no {MANIFEST})")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{MANIFEST} is not valid JSON") from exc
        if self.manifest.get("format") != FORMAT:
            raise ConfigError(f"unsupported bundle format {self.manifest.get('format')!r}")

    def check_files(self) -> None:
        """Every file listed in the manifest is present with the hash it lists. (The
        manifest itself is not signed: the entries and checkpoints are, and are
        verified one by one; this catches a damaged copy early and clearly.)"""
        for name, digest in sorted(self.manifest.get("files", {}).items()):
            path = self.root / name
            if "/" in name or not path.is_file():
                raise VerificationFailed(f"bundle file {name} is missing")
            if file_sha256(path) != digest:
                raise VerificationFailed(f"bundle file {name} does not match the manifest")

    def rows(self) -> Iterator[LeafRow]:
        with (self.root / ENTRIES).open("rb") as f:
            for line in f:
                yield LeafRow(line.rstrip(b"\n"))

    def line(self, seq: int) -> bytes | None:
        """The stored line at ``seq`` (the evidence of a failure; a scan, used once)."""
        for i, row in enumerate(self.rows()):
            if i == seq:
                return row.line
        return None

    def checkpoints(self) -> Iterator[tuple[int, str]]:
        with (self.root / CHECKPOINTS).open("rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    d = json.loads(line)
                    yield int(d["size"]), str(d["note"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise VerificationFailed(f"{CHECKPOINTS} line {n} is malformed") from exc

    def projections(self) -> Projections | None:
        path = self.root / PROJECTIONS
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return Projections(
            keys={k["key_id"]: key_record_from_json(k) for k in d["keys"]},
            tables={
                name: dict(record_from_json(name, obj) for obj in rows)
                for name, rows in d["tables"].items()
            },
            log_key=d.get("log_key"),
        )
