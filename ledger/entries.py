"""Entries: the typed, canonical, signed documents the log is made of.

An entry has two layers.

* The **body** is what its author signs: ``{"kind", "id", "author", "created_at", ...}``.
  The signature is Ed25519 over ``ENTRY_DOMAIN || log_id || "\n" || JCS(body)`` (v2,
  issue #9 item 6): the domain prefix keeps an entry signature from ever being valid as a
  checkpoint note, a login proof or anything else we sign, and the log id keeps an entry
  signed for one log (national, EU, staging) from being appended to another where the
  same key is registered. Entries written before v2 were signed
  ``ENTRY_DOMAIN_V1 || JCS(body)``; the verifier still accepts them, but only until the
  log's first v2 entry (a ratchet in the reducer state: ``LogInfo.entry_sig_version``).
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
import contextlib
import re
import typing
from typing import Annotated, Any, Final

import msgspec

from ledger.canonical import canonical, parse_json, require_canonical
from ledger.crypto import Signer, verify_signature
from ledger.errors import InvalidEntry, SignatureInvalid
from ledger.kinds.base import B64Sig, Hex64, Seq, Time, check_free_text, free_text_fields
from ledger.kinds.keys import Genesis, KeyRegistered, KeyRevoked, LogKeyRotated, TestMovement
from ledger.kinds.release import RELEASE_KINDS
from ledger.kinds.stock import STOCK_KINDS

ENTRY_DOMAIN: Final = b"reserve-ledger/entry/v2\n"
ENTRY_DOMAIN_V1: Final = b"reserve-ledger/entry/v1\n"  # before issue #9: no log id
SIG_VERSIONS: Final = (1, 2)
MAX_LEAF_BYTES: Final = 64 * 1024  # a typed document, never a file: refuse anything larger
ZERO_HASH: Final = "0" * 64  # prev_hash of seq 0
LOG_PRINCIPAL: Final = "log"  # author of entries signed by the log key itself
# Names of the service's own keys in the keystore (the log key and its rotations
# ``log-N``, the token issuer, the sealing key's file): never a user's name, or
# registering that user would make the service's key theirs (issue #8, item 10).
RESERVED_PRINCIPALS: Final = frozenset({LOG_PRINCIPAL, "token-issuer", "sealing"})
_ROTATED_LOG_KEY = re.compile(r"log-[0-9]+")


def is_reserved_principal(name: str) -> bool:
    """True for a name the service's own keys use (see RESERVED_PRINCIPALS)."""
    return name in RESERVED_PRINCIPALS or _ROTATED_LOG_KEY.fullmatch(name) is not None

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


def parse_sig(data: Any) -> Sig:
    """One ``{"pub", "sig"}`` object, strictly typed (a co-signature sent on its own)."""
    sig: Sig = _convert(data, Sig)
    return sig


def _structs(typ: Any) -> list[type[msgspec.Struct]]:
    """Every Struct type reachable from ``typ`` (unions, lists, fields)."""
    out: list[type[msgspec.Struct]] = []
    todo = [typ]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            if t in out:
                continue
            out.append(t)
            todo.extend(typing.get_type_hints(t).values())
        else:
            todo.extend(typing.get_args(t))
    return out


def warm_up() -> None:
    """Build every msgspec type's decoder now, in one thread, before serving.

    msgspec inspects a type on its first use and caches the result on the class; two
    threads doing that first use at once crashed the service with SIGSEGV (issue #8,
    item 1). Building a decoder for each top-level type does that inspection eagerly;
    the free-text field tables are filled here too. Idempotent and cheap (milliseconds);
    called at import of this module and again by the service before it starts.
    """
    for typ in (Signed, Leaf):
        msgspec.json.Decoder(typ)
        for struct in _structs(typ):
            free_text_fields(struct)
        # A conversion that fails on purpose runs the converter's own first-use paths.
        with contextlib.suppress(msgspec.ValidationError):
            msgspec.convert({}, typ, strict=True)


def signing_message(body_canonical: bytes, *, log_id: str) -> bytes:
    """What an author signs (v2): ``ENTRY_DOMAIN || log_id || "\\n" || JCS(body)``.

    Pure, shared by the write path, the verifier and the ``reserve`` client."""
    if not log_id or "\n" in log_id:
        raise InvalidEntry("a log id is one non-empty line", field="log_id")
    return ENTRY_DOMAIN + log_id.encode() + b"\n" + body_canonical


def signing_message_v1(body_canonical: bytes) -> bytes:
    """The pre-v2 message (no log id): only the verifier still reads it."""
    return ENTRY_DOMAIN_V1 + body_canonical


def sign_body(body: dict[str, Any], signers: list[Signer], *, log_id: str) -> dict[str, Any]:
    """Sign a body dict (v2, bound to ``log_id``) with each signer; returns the
    submission ``{"entry", "sigs"}``."""
    return {"entry": body, "sigs": [sign_message(s, signing_message(canonical(body), log_id=log_id)) for s in signers]}


def sign_message(signer: Signer, message: bytes) -> dict[str, str]:
    """One ``{"pub", "sig"}`` over an already built signing message."""
    return {"pub": signer.public_key.hex(), "sig": base64.b64encode(signer.sign(message)).decode()}


def _raw_sig(s: Sig, i: int) -> bytes:
    try:
        raw = base64.b64decode(s.sig, validate=True)
    except binascii.Error:
        raise SignatureInvalid("signature is not base64", field=f"sigs[{i}]") from None
    if base64.b64encode(raw).decode("ascii") != s.sig:
        # Non-zero padding bits decode to the same bytes: a second spelling of one
        # signature would change the leaf bytes and hash (issue #8, item 10; RFC 4648
        # section 3.5 lets decoders refuse it, as checkpoints already do).
        raise SignatureInvalid("signature is not canonical base64", field=f"sigs[{i}]")
    return raw


def _check_unique(sigs: list[Sig]) -> None:
    seen: set[str] = set()
    for i, s in enumerate(sigs):
        if s.pub in seen:
            raise SignatureInvalid("the same key signed twice", field=f"sigs[{i}]")
        seen.add(s.pub)


def check_signatures(sigs: list[Sig], body_canonical: bytes, *, log_id: str) -> None:
    """Every signature must verify over the v2 message for ``log_id``; a key may sign
    once. This is what the write path accepts: new submissions are always v2."""
    _check_unique(sigs)
    message = signing_message(body_canonical, log_id=log_id)
    for i, s in enumerate(sigs):
        try:
            verify_signature(public_key=bytes.fromhex(s.pub), signature=_raw_sig(s, i), message=message)
        except SignatureInvalid:
            raise SignatureInvalid(
                "signature does not verify over the entry for this log", field=f"sigs[{i}]"
            ) from None


def signature_version(
    sigs: list[Sig], body_canonical: bytes, *, log_id: str, try_first: int = 2
) -> int:
    """The form (1 or 2) under which *all* signatures of a stored entry verify, or raise
    :class:`SignatureInvalid`. Whether that form was still allowed at that point of the
    log is the reducer's question (the v1 ratchet, ``Context.sig_version``).

    ``try_first`` is the form the previous entry used, so a history is checked about
    once per signature whichever form it holds (the other form is tried only on failure).
    """
    _check_unique(sigs)
    raws = [_raw_sig(s, i) for i, s in enumerate(sigs)]
    order = (try_first, 3 - try_first)
    for version in order:
        message = (
            signing_message(body_canonical, log_id=log_id)
            if version == 2
            else signing_message_v1(body_canonical)
        )
        try:
            verify_signature(public_key=bytes.fromhex(sigs[0].pub), signature=raws[0], message=message)
        except SignatureInvalid:
            continue
        for i, s in enumerate(sigs[1:], start=1):
            try:
                verify_signature(public_key=bytes.fromhex(s.pub), signature=raws[i], message=message)
            except SignatureInvalid:
                # All signatures of an entry use the form its first one used.
                raise SignatureInvalid(
                    "signature does not verify over the entry", field=f"sigs[{i}]"
                ) from None
        return version
    raise SignatureInvalid("signature does not verify over the entry", field="sigs[0]")


def parse_submission(
    data: bytes | dict[str, Any], *, log_id: str | None
) -> tuple[Signed, dict[str, Any]]:
    """Validate a submitted entry at the edge: size, schema, signatures (v2, bound to
    ``log_id``; ``None`` only for a genesis entry, which names its own log).

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
    check_free_text(signed.entry, path="entry")  # issue #8, item 4 (ledger.text)
    body_bytes = canonical(raw["entry"])
    if len(body_bytes) > MAX_LEAF_BYTES - 1024:
        raise InvalidEntry(f"entry larger than {MAX_LEAF_BYTES} bytes", field="entry")
    if isinstance(signed.entry, Genesis):
        # A genesis names (and is signed for) its own log; a second one is the reducer's
        # refusal (rule "genesis").
        log_id = signed.entry.log_id
    elif log_id is None:
        raise InvalidEntry("the log has no genesis entry yet", field="entry.kind")
    check_signatures(signed.sigs, body_bytes, log_id=log_id)
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
    raw = require_canonical(line, what="leaf")
    if not isinstance(raw, dict):
        raise InvalidEntry("a leaf is a JSON object")
    leaf: Leaf = _convert(raw, Leaf)
    return leaf, raw


def leaf_signature_version(
    leaf: Leaf, raw: dict[str, Any], *, log_id: str, try_first: int = 2
) -> int:
    """:func:`signature_version` of a stored leaf (a genesis names its own log)."""
    if isinstance(leaf.entry, Genesis):
        log_id = leaf.entry.log_id
    return signature_version(leaf.sigs, canonical(raw["entry"]), log_id=log_id, try_first=try_first)


warm_up()
