"""Entries: the typed, canonical, signed documents the log is made of.

An entry has two layers.

* The **body** is what its author signs: ``{"kind", "id", "author", "created_at", ...}``.
  The signature is Ed25519 over ``ENTRY_DOMAIN || JCS(body)``; the domain prefix keeps an
  entry signature from ever being valid as a checkpoint note or anything else we sign.
* The **leaf** is what the log appends: ``{"entry": body, "sigs": [...], "seq",
  "prev_hash", "recorded_at"}`` in canonical form. Its RFC 9162 leaf hash chains it
  (``prev_hash`` of the next entry) and goes into the Merkle tree.

Each signature carries the signer's raw public key, so a signature can be checked
without the registry (in a worker process, in parallel); whether that key was *allowed*
to sign is the reducer's question (``ledger/rules``).

Schemas are msgspec structs: strict types, no unknown fields, and a validation error that
names the path of the bad field (``$.entry.quantity``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Final

import msgspec

from ledger.canonical import canonical, canonical_of_checked, parse_json
from ledger.crypto import Signer, verify_signature
from ledger.errors import InvalidEntry, SignatureInvalid
from ledger.kinds.base import B64Sig, Hex64, Seq, Time
from ledger.kinds.keys import Genesis, KeyRegistered, KeyRevoked, LogKeyRotated, TestMovement
from ledger.kinds.release import RELEASE_KINDS
from ledger.kinds.stock import STOCK_KINDS

ENTRY_DOMAIN: Final = b"reserve-ledger/entry/v1\n"
MAX_LEAF_BYTES: Final = 64 * 1024  # a typed document, never a file: refuse anything larger
ZERO_HASH: Final = "0" * 64  # prev_hash of seq 0
LOG_PRINCIPAL: Final = "log"  # author of entries signed by the log key itself

AnyBody = (
    Genesis
    | KeyRegistered
    | KeyRevoked
    | LogKeyRotated
    | TestMovement
    | STOCK_KINDS
    | RELEASE_KINDS
)


class Sig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pub: Hex64
    sig: B64Sig


Sigs = Annotated[list[Sig], msgspec.Meta(min_length=1, max_length=4)]


class Signed(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What an author submits: a body and its signatures."""

    entry: AnyBody
    sigs: Sigs


class Leaf(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What the log appends and hashes."""

    seq: Seq
    prev_hash: Hex64
    recorded_at: Time
    entry: AnyBody
    sigs: Sigs


_AT = re.compile(r" - at `\$\.?(.*)`$")


def _convert(value: Any, typ: type[Any]) -> Any:
    try:
        return msgspec.convert(value, typ, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT.search(text)
        field = m.group(1) if m else None
        reason = text[: m.start()] if m else text
        raise InvalidEntry(reason, field=field or None) from None


def signing_message(body_canonical: bytes) -> bytes:
    return ENTRY_DOMAIN + body_canonical


def sign_body(body: dict[str, Any], signers: list[Signer]) -> dict[str, Any]:
    """Sign a body dict with each signer; returns the submission ``{"entry", "sigs"}``."""
    message = signing_message(canonical(body))
    return {
        "entry": body,
        "sigs": [
            {"pub": s.public_key.hex(), "sig": base64.b64encode(s.sign(message)).decode()}
            for s in signers
        ],
    }


def check_signatures(sigs: list[Sig], body_canonical: bytes) -> None:
    """Every signature must verify over the body; a key may sign once."""
    message = signing_message(body_canonical)
    seen: set[str] = set()
    for i, s in enumerate(sigs):
        if s.pub in seen:
            raise SignatureInvalid("the same key signed twice", field=f"sigs[{i}]")
        seen.add(s.pub)
        try:
            raw = base64.b64decode(s.sig, validate=True)
        except binascii.Error:
            raise SignatureInvalid("signature is not base64", field=f"sigs[{i}]") from None
        try:
            verify_signature(public_key=bytes.fromhex(s.pub), signature=raw, message=message)
        except SignatureInvalid:
            raise SignatureInvalid(
                "signature does not verify over the entry", field=f"sigs[{i}]"
            ) from None


def parse_submission(data: bytes | dict[str, Any]) -> tuple[Signed, dict[str, Any]]:
    """Validate a submitted entry at the edge: size, schema, signatures.

    Returns the typed submission and the raw body dict (whose canonical bytes were signed).
    Nothing about the registry is checked here; that is the reducer's job.
    """
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_LEAF_BYTES:
            raise InvalidEntry(f"entry larger than {MAX_LEAF_BYTES} bytes")
        raw = parse_json(bytes(data))
    else:
        raw = data
    if not isinstance(raw, dict):
        raise InvalidEntry("an entry is a JSON object")
    signed: Signed = _convert(raw, Signed)
    body_bytes = canonical(raw["entry"])
    if len(body_bytes) > MAX_LEAF_BYTES - 1024:
        raise InvalidEntry(f"entry larger than {MAX_LEAF_BYTES} bytes", field="entry")
    check_signatures(signed.sigs, body_bytes)
    return signed, raw["entry"]


def make_leaf(
    *, seq: int, prev_hash: str, recorded_at: str, body: dict[str, Any], sigs: list[dict[str, str]]
) -> bytes:
    """Canonical bytes of a leaf (what is stored, hashed and exported as one line)."""
    return canonical(
        {
            "seq": seq,
            "prev_hash": prev_hash,
            "recorded_at": recorded_at,
            "entry": body,
            "sigs": sigs,
        }
    )


def decode_leaf(line: bytes) -> tuple[Leaf, dict[str, Any]]:
    """Strictly decode a stored leaf: canonical form, schema. Signatures are not checked
    here (see :func:`check_leaf_signatures`), so callers can verify them in parallel."""
    if len(line) > MAX_LEAF_BYTES:
        raise InvalidEntry(f"leaf larger than {MAX_LEAF_BYTES} bytes")
    raw = parse_json(line)
    if not isinstance(raw, dict):
        raise InvalidEntry("a leaf is a JSON object")
    leaf: Leaf = _convert(raw, Leaf)
    # Schema first: it admits no float and no integer beyond 2**53, so the canonical
    # form can be checked without scanning for numbers (issue #10 performance).
    if canonical_of_checked(raw) != line:
        raise InvalidEntry("leaf is not in RFC 8785 canonical form")
    return leaf, raw


_BODY_START: Final = b'{"entry":'
_BODY_END: Final = b',"prev_hash":'


def leaf_body_bytes(line: bytes) -> bytes:
    """The canonical bytes of the body, sliced out of a *canonical* leaf line (RFC 8785
    is compositional: a member's value is encoded exactly as it would be alone). The
    leaf's keys sort as entry < prev_hash < recorded_at < seq < sigs, so the body runs
    from after ``{"entry":`` to the last ``,"prev_hash":`` (nothing after the body can
    hold that text: hex, a time, an integer, signatures). Saves re-encoding every body
    for its signature check (issue #10 performance)."""
    end = line.rfind(_BODY_END)
    if not line.startswith(_BODY_START) or end < 0:
        raise InvalidEntry("a leaf is not in canonical form")
    return line[len(_BODY_START) : end]


def check_leaf_signatures(leaf: Leaf, raw: dict[str, Any], *, line: bytes | None = None) -> None:
    """Signatures over the body. With ``line`` (a leaf already checked canonical by
    :func:`decode_leaf`), the body's bytes are sliced out of it instead of re-encoded."""
    body = leaf_body_bytes(line) if line is not None else canonical(raw["entry"])
    check_signatures(leaf.sigs, body)
