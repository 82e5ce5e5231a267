"""A witness (c2sp.org/tlog-witness): cosigns a log's checkpoint only if it extends the
last checkpoint the witness cosigned for that log.

The protocol logic is here and pure (parse the ``add-checkpoint`` body, check it, cosign);
the HTTP server (``witness/server.py``) only moves bytes and maps the typed errors below
to the statuses the spec names. The witness's memory is a :class:`WitnessStore`: the
check and the update are one compare-and-swap, so two concurrent submissions can never
roll it back (the race the spec describes under "add-checkpoint").
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ledger.checkpoint import (
    Checkpoint,
    checkpoint_body,
    open_note,
    parse_checkpoint_body,
    split_note,
)
from ledger.cosignature import cosign
from ledger.crypto import Signer
from ledger.errors import ConfigError, InvalidProof, LedgerError, SignatureInvalid, StorageError
from ledger.merkle import verify_consistency

#: RFC 6962 root of the empty tree: SHA-256 of the empty string.
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
MAX_PROOF_LINES = 63  # tlog-witness: "MUST NOT send more than 63 consistency proof lines"
MAX_BODY_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


# -- errors: each is one status of the spec ---------------------------------------------


class WitnessError(LedgerError):
    """A submission the witness does not cosign; ``status`` is the HTTP status the
    tlog-witness spec assigns to that case."""

    code = "witness"
    status = 400


class BadSubmission(WitnessError):
    code = "witness-bad-request"
    status = 400


class UnknownLog(WitnessError):
    code = "witness-unknown-log"
    status = 404


class LogSignatureRefused(WitnessError):
    code = "witness-bad-log-signature"
    status = 403


class OldSizeMismatch(WitnessError):
    """The submitter's old size is not the witness's: it answers with its own size."""

    code = "witness-conflict"
    status = 409

    def __init__(self, known_size: int):
        super().__init__(f"the witness's last cosigned size is {known_size}")
        self.known_size = known_size


class InconsistentCheckpoint(WitnessError):
    code = "witness-inconsistent"
    status = 422


# -- the request ---------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: list[bytes]
    note: str


def encode_add_checkpoint(*, old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    lines = [f"old {old_size}\n"] + [base64.b64encode(h).decode() + "\n" for h in proof]
    return ("".join(lines) + "\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Strictly parse an ``add-checkpoint`` body; :class:`BadSubmission` if malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise BadSubmission("request body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSubmission("request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadSubmission("request body has no blank line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or _DECIMAL.fullmatch(first[4:]) is None:
        raise BadSubmission("the first line must be 'old <size>' in decimal")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise BadSubmission("too many consistency proof lines")
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise BadSubmission("a consistency proof line is not base64") from None
        if len(h) != 32:
            raise BadSubmission("a consistency proof line is not a 32-byte hash")
        proof.append(h)
    return AddCheckpoint(old_size=int(first[4:]), proof=proof, note=note)


# -- state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cosigned:
    """The latest checkpoint a witness cosigned for one log."""

    size: int
    root: bytes


class WitnessStore(Protocol):
    """Where a witness keeps, per origin, the latest checkpoint it cosigned."""

    def get(self, origin: str) -> Cosigned | None: ...

    def compare_and_swap(self, origin: str, expected: Cosigned | None, new: Cosigned) -> bool:
        """Store ``new`` only if the current value is still ``expected``; say whether it did."""
        ...


class FileWitnessStore:
    """One JSON file, changed under an exclusive ``flock`` by writing a temporary file,
    fsyncing it and renaming it over the old one (then fsyncing the directory), so a crash
    leaves either the old state or the new one, never a mix."""

    def __init__(self, path: Path):
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, Cosigned]:
        try:
            raw = json.loads(self.path.read_text())
            return {
                origin: Cosigned(size=int(v["size"]), root=bytes.fromhex(v["root"]))
                for origin, v in raw["logs"].items()
            }
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"the witness state {self.path.name} is unreadable") from exc

    def get(self, origin: str) -> Cosigned | None:
        with self._locked():
            return self._read().get(origin)

    def compare_and_swap(self, origin: str, expected: Cosigned | None, new: Cosigned) -> bool:
        with self._locked():
            current = self._read()
            if current.get(origin) != expected:
                return False
            current[origin] = new
            data = {"logs": {o: {"size": c.size, "root": c.root.hex()} for o, c in current.items()}}
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return True


# -- the witness -------------------------------------------------------------------------


class Witness:
    """Checks and cosigns checkpoints of the logs it knows (origin -> log public keys)."""

    def __init__(
        self,
        *,
        name: str,
        signer: Signer,
        logs: Mapping[str, Sequence[bytes]],
        store: WitnessStore,
        clock: Callable[[], float] = time.time,
    ):
        if not logs:
            raise ConfigError("a witness needs at least one log key")
        self.name = name
        self._signer = signer
        self._logs = {origin: list(keys) for origin, keys in logs.items()}
        self._store = store
        self._clock = clock

    def add_checkpoint(self, body: bytes) -> str:
        """Answer one ``add-checkpoint`` body with the cosignature line, or raise the
        :class:`WitnessError` that names the spec's status."""
        req = parse_add_checkpoint(body)
        try:
            text, _sigs = split_note(req.note)
            cp = parse_checkpoint_body(text)
        except LedgerError as exc:
            raise BadSubmission(f"malformed checkpoint: {exc.public_message}") from None
        keys = self._logs.get(cp.origin)
        if keys is None:
            raise UnknownLog("unknown log origin")
        self._check_log_signature(req.note, cp.origin, keys)
        if req.old_size > cp.size:
            raise BadSubmission("old size is larger than the checkpoint size")
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            raise InconsistentCheckpoint("a checkpoint of size 0 must have the empty root")
        last = self._store.get(cp.origin)
        known = last.size if last is not None else 0
        if req.old_size != known:
            raise OldSizeMismatch(known)
        self._check_consistency(req, cp, last)
        new = Cosigned(size=cp.size, root=cp.root)
        if not self._store.compare_and_swap(cp.origin, last, new):
            # Another submission moved the state between our read and our write: the
            # submitter must retry from the witness's new size (never a rollback).
            now = self._store.get(cp.origin)
            raise OldSizeMismatch(now.size if now is not None else 0)
        timestamp = max(1, int(self._clock()))
        return cosign(checkpoint_body(cp), signer=self._signer, name=self.name, timestamp=timestamp)

    @staticmethod
    def _check_log_signature(note: str, origin: str, keys: Sequence[bytes]) -> None:
        for key in keys:
            try:
                open_note(note, public_key=key, key_name=origin)
                return
            except SignatureInvalid:
                continue
            except LedgerError as exc:
                raise BadSubmission(f"malformed checkpoint: {exc.public_message}") from None
        raise LogSignatureRefused("no valid signature by a known key of this log")

    @staticmethod
    def _check_consistency(req: AddCheckpoint, cp: Checkpoint, last: Cosigned | None) -> None:
        if req.old_size == 0:
            if req.proof:
                raise InconsistentCheckpoint("a proof from size 0 must be empty")
            return
        assert last is not None
        try:
            verify_consistency(
                old_size=last.size,
                new_size=cp.size,
                old_root=last.root,
                new_root=cp.root,
                proof=req.proof,
            )
        except InvalidProof as exc:
            raise InconsistentCheckpoint(
                f"the checkpoint does not extend the last one cosigned: {exc.public_message}"
            ) from None
