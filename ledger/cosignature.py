"""Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``).

A witness cosigns a checkpoint it has checked extends the last one it cosigned; an
auditor who requires a quorum of such cosignatures cannot be shown a history that the
witnesses were not shown too (DESIGN.md, "Trust"). A cosignature is a note signature line
whose key ID is ``SHA-256(name || 0x0A || 0x04 || pubkey)[:4]`` and whose payload is that
key ID, an 8-byte big-endian POSIX timestamp and an Ed25519 signature over::

    cosignature/v1
    time <timestamp>
    <the checkpoint's note body, final newline included>

Used by the offline verifier: standard library and ``ledger`` only.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checkpoint import (
    SIGNATURE_PREFIX,
    _b64decode_strict,
    is_valid_note_name,
    parse_checkpoint_body,
    split_note,
)
from ledger.crypto import ED25519_PUBLIC_KEY_LEN, ED25519_SIGNATURE_LEN, Signer, verify_signature
from ledger.errors import InvalidEntry, SignatureInvalid, VerificationFailed

#: Signature type byte of an Ed25519 cosigner key (tlog-cosignature, "Format").
SIG_TYPE_COSIGNATURE_V1 = 0x04
_HEADER = b"cosignature/v1\n"
_PAYLOAD_LEN = 4 + 8 + ED25519_SIGNATURE_LEN
_MAX_TIMESTAMP = 2**63 - 1
_HEX8 = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class Cosigner:
    """A witness as an auditor or a log knows it: its name and Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        return cosigner_key_hash(name=self.name, public_key=self.public_key)

    @property
    def vkey(self) -> str:
        material = base64.b64encode(bytes([SIG_TYPE_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{material}"


def cosigner_key_hash(*, name: str, public_key: bytes) -> bytes:
    if not is_valid_note_name(name):
        raise InvalidEntry("a witness name must be non-empty with no spaces, '+' or control characters")
    if len(public_key) != ED25519_PUBLIC_KEY_LEN:
        raise InvalidEntry("an Ed25519 public key is 32 bytes")
    digest = hashlib.sha256(
        name.encode() + b"\n" + bytes([SIG_TYPE_COSIGNATURE_V1]) + public_key
    ).digest()
    return digest[:4]


def parse_cosigner_vkey(vkey: str) -> Cosigner:
    """Parse a witness verifier key ``<name>+<hex key ID>+<base64(0x04 || pubkey)>``."""
    name, sep1, rest = vkey.strip().partition("+")
    hash_hex, sep2, material = rest.partition("+")
    if not (sep1 and sep2) or not is_valid_note_name(name) or _HEX8.fullmatch(hash_hex) is None:
        raise InvalidEntry("malformed witness verifier key (expected NAME+KEYID+BASE64)")
    raw = _b64decode_strict(material, "witness verifier key")
    if len(raw) != 1 + ED25519_PUBLIC_KEY_LEN or raw[0] != SIG_TYPE_COSIGNATURE_V1:
        raise InvalidEntry("witness verifier key is not an Ed25519 cosignature/v1 key (type 0x04)")
    cosigner = Cosigner(name=name, public_key=raw[1:])
    if cosigner.key_hash.hex() != hash_hex:
        raise InvalidEntry("witness verifier key ID does not match its name and key")
    return cosigner


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """What the witness signs: header, time line, then the checkpoint body."""
    if not 0 < timestamp <= _MAX_TIMESTAMP:
        raise InvalidEntry("a cosignature timestamp is a positive POSIX time")
    return _HEADER + f"time {timestamp}\n".encode() + body


def cosign(body: bytes, *, signer: Signer, name: str, timestamp: int) -> str:
    """One cosignature line (newline included) over a checkpoint body. The fresh signature
    is checked before it is returned (a faulty signer must not publish a bad one)."""
    cosigner = Cosigner(name=name, public_key=signer.public_key)
    message = cosigned_message(body, timestamp)
    signature = signer.sign(message)
    verify_signature(public_key=signer.public_key, signature=signature, message=message)
    payload = cosigner.key_hash + struct.pack(">Q", timestamp) + signature
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(payload).decode()}\n"


def verify_cosignature_line(line: str, body: bytes, *, cosigner: Cosigner) -> int:
    """Check one signature line as ``cosigner``'s cosignature of ``body``; return its
    timestamp. Raises :class:`SignatureInvalid` if it is not (another key or a bad one)."""
    if not line.startswith(SIGNATURE_PREFIX):
        raise InvalidEntry("a cosignature line starts with an em dash and a space")
    name, _, b64 = line[len(SIGNATURE_PREFIX) :].rstrip("\n").partition(" ")
    raw = _b64decode_strict(b64, "cosignature")
    if name != cosigner.name or raw[:4] != cosigner.key_hash or len(raw) != _PAYLOAD_LEN:
        raise SignatureInvalid(f"not a cosignature by witness {cosigner.name}")
    (timestamp,) = struct.unpack(">Q", raw[4:12])
    verify_signature(
        public_key=cosigner.public_key,
        signature=raw[12:],
        message=cosigned_message(body, timestamp),
    )
    return int(timestamp)


def valid_cosigners(note: str, witnesses: Sequence[Cosigner]) -> list[Cosigner]:
    """The distinct given witnesses with a valid cosignature on ``note``. Lines by other
    keys are ignored, as signed-note requires; a bad line by a known key counts for
    nothing."""
    text, sigs = split_note(note)
    body = text.encode()
    found: list[Cosigner] = []
    for w in dict.fromkeys(witnesses):
        for sig in sigs:
            if sig.key_name != w.name or sig.key_hash != w.key_hash:
                continue
            payload = base64.b64encode(sig.key_hash + sig.signature).decode()
            try:
                verify_cosignature_line(f"{SIGNATURE_PREFIX}{sig.key_name} {payload}", body, cosigner=w)
            except (SignatureInvalid, InvalidEntry):
                continue
            found.append(w)
            break
    return found


def check_quorum(note: str, *, witnesses: Sequence[Cosigner], quorum: int) -> None:
    """Refuse a checkpoint that lacks ``quorum`` valid cosignatures from distinct given
    witnesses (the split-view defence of tlog-witness)."""
    distinct = list(dict.fromkeys(witnesses))
    if quorum < 0 or quorum > len(distinct):
        raise InvalidEntry(f"a quorum of {quorum} cannot be met by {len(distinct)} distinct witnesses")
    if quorum == 0:
        return
    try:
        text, _ = split_note(note)
        size = parse_checkpoint_body(text).size
    except InvalidEntry as exc:
        raise VerificationFailed(f"the checkpoint is malformed: {exc.public_message}") from None
    found = len(valid_cosigners(note, distinct))
    if found < quorum:
        raise VerificationFailed(
            f"checkpoint at size {size} has {found} valid cosignature(s) from the given "
            f"witnesses; {quorum} required"
        )


def with_signature_lines(note: str, lines: Sequence[str]) -> str:
    """``note`` with extra signature lines appended (skipping any it already carries)."""
    if not note.endswith("\n"):
        raise InvalidEntry("a signed note ends with a newline")
    present = set(note.split("\n"))
    extra = [ln if ln.endswith("\n") else ln + "\n" for ln in lines]
    return note + "".join(ln for ln in extra if ln.rstrip("\n") not in present)
