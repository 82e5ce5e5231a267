"""Export bundles: a directory an auditor verifies offline with only ``ledger``.

Layout (format 1)::

    DIR/MANIFEST.json      format, log id, size, root, SHA-256 of every other file
    DIR/entries.jsonl      one canonical leaf per line, seq 0..size-1 (genesis first)
    DIR/checkpoints.jsonl  {"size": N, "note": "<signed note>"} per line, by size
    DIR/checkpoint.note    the newest checkpoint, as is, for tlog tooling (C2SP)
    DIR/genesis.json       entry 0, the same bytes as the first line of entries.jsonl
    DIR/log.vkey           the log's note verifier key (golang.org/x/mod/sumdb/note)
    DIR/projections.json   the server's projections at export time, to compare
    DIR/owner_commitments.jsonl  {"seq": N, "commitment": hex} per v2 leaf (issue #14)

An owner-scoped bundle (``reserve export --owner CODE``, issue #14) has the same layout
with ``"scope": {"owner": CODE}`` in the manifest; its ``entries.jsonl`` line for a leaf
it withholds is ``{"seq":N,"withheld":"<SHA-256 of the leaf line, hex>"}``; instead of
``projections.json`` it has ``owner_balances.json``, the owner's holdings only.

Sealed locations, the keystore and owner secrets are never part of a bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ledger.errors import ConfigError, VerificationFailed
from ledger.owner_scope_verify import ScopedRow
from ledger.records import record_from_json
from ledger.state import KeyRecord
from ledger.verify import LeafRow, Projections

FORMAT = 1
ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
PROJECTIONS = "projections.json"
MANIFEST = "MANIFEST.json"
COMMITMENTS = "owner_commitments.jsonl"
OWNER_BALANCES = "owner_balances.json"


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


class _CommitmentLine(msgspec.Struct, forbid_unknown_fields=True):
    seq: int
    commitment: str


class _WithheldLine(msgspec.Struct, forbid_unknown_fields=True):
    seq: int
    withheld: str


_COMMITMENT = msgspec.json.Decoder(_CommitmentLine)
_WITHHELD = msgspec.json.Decoder(_WithheldLine)


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

    @property
    def scope(self) -> str | None:
        """The owner an owner-scoped bundle is for; None for a whole-log bundle."""
        scope = self.manifest.get("scope")
        return str(scope["owner"]) if isinstance(scope, dict) and "owner" in scope else None

    def commitments(self) -> Iterator[tuple[int, bytes]]:
        """The owner commitments of the v2 leaves, ``(seq, C)`` in seq order (none for a
        v1 history); streamed, as the entries are."""
        path = self.root / COMMITMENTS
        if not path.is_file():
            return
        last = -1
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    d = _COMMITMENT.decode(line)
                    seq, c = d.seq, bytes.fromhex(d.commitment)
                except (ValueError, msgspec.DecodeError) as exc:
                    raise VerificationFailed(f"{COMMITMENTS} line {n} is malformed") from exc
                if seq <= last:
                    raise VerificationFailed(f"{COMMITMENTS} line {n} is out of order")
                last = seq
                yield seq, c

    def _lines(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """``(seq, line, commitment or None)`` for every line of the entries file."""
        commits = self.commitments()
        pending = next(commits, None)
        with (self.root / ENTRIES).open("rb") as f:
            for seq, raw in enumerate(f):
                c = None
                if pending is not None and pending[0] == seq:
                    c = pending[1]
                    pending = next(commits, None)
                yield seq, raw.rstrip(b"\n"), c
        if pending is not None:
            raise VerificationFailed(f"{COMMITMENTS} names seq {pending[0]}, beyond the entries")

    def rows(self) -> Iterator[LeafRow]:
        if self.scope is not None:
            raise ConfigError(
                f"this bundle is scoped to owner {self.scope}: verify it with --owner {self.scope} --owner-key FILE"
            )
        for _, line, c in self._lines():
            yield LeafRow(line, None, c)

    def scoped_rows(self) -> Iterator[ScopedRow]:
        """The rows of an owner-scoped bundle: given in full or withheld."""
        for seq, line, c in self._lines():
            if line.startswith(b'{"seq":'):
                try:
                    w = _WITHHELD.decode(line)
                    rest = bytes.fromhex(w.withheld)
                    if w.seq != seq:
                        raise ValueError
                except (ValueError, msgspec.DecodeError):
                    raise VerificationFailed("a withheld leaf line is malformed", seq=seq) from None
                yield ScopedRow(None, rest, c)
            else:
                yield ScopedRow(line, None, c)

    def owner_balances(self) -> dict[tuple[str, str], int] | None:
        """What the server says the owner holds at export: (site, lot) -> grams."""
        path = self.root / OWNER_BALANCES
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            return {(str(b["site"]), str(b["lot"])): int(b["quantity"]) for b in d["balances"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationFailed(f"{OWNER_BALANCES} is malformed") from exc

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
