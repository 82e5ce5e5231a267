"""Checkpoints as C2SP signed notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note).

A checkpoint is the log's signed statement "my tree of ``size`` leaves has root ``root``".
It is written as a signed note, the format of golang.org/x/mod/sumdb/note, so that
standard transparency-log tooling (witnesses, monitors, the Go ``note`` package) can read
and cosign it::

    reserve.example/ledger/4f2a...          <- origin (the log id)
    1234                                    <- tree size, ASCII decimal, no leading zero
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   <- RFC 6962/9162 root, base64
    time 2025-01-31T12:00:00Z               <- extension line: the log's time
                                            <- blank line
    — reserve.example/ledger/4f2a... <base64(key hash || Ed25519 signature)>

The signed message is the note text: the body lines including the final newline, not the
blank separator line. Each signature line starts with an em dash (U+2014) and a space; its
base64 payload is the 4-byte key hash (``SHA-256(name || 0x0A || 0x01 || pubkey)[:4]``)
followed by the 64-byte Ed25519 signature.

This module is used by the offline verifier, so it imports only the standard library and
``ledger``: signing goes through the :class:`ledger.crypto.Signer` protocol and
verification through :func:`ledger.crypto.verify_signature`.

Parsing is strict on purpose (the verifier must never accept two spellings of the same
checkpoint): every malformation raises :class:`ledger.errors.InvalidEntry`; a well-formed
note without a valid signature by the expected key raises
:class:`ledger.errors.SignatureInvalid`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from ledger.crypto import ED25519_PUBLIC_KEY_LEN, ED25519_SIGNATURE_LEN, Signer, verify_signature
from ledger.errors import InvalidEntry, SignatureInvalid

__all__ = [
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteSignature",
    "checkpoint_body",
    "is_valid_note_name",
    "note_key_hash",
    "note_signature_line",
    "note_verifier_key",
    "open_note",
    "parse_checkpoint",
    "parse_checkpoint_body",
    "parse_note_verifier_key",
    "sign_checkpoint",
    "split_note",
    "verify_checkpoint",
]

#: Signature type byte for Ed25519 in c2sp.org/signed-note.
SIG_TYPE_ED25519 = 0x01
#: Length of the key hash ("key ID") prefixed to every note signature.
KEY_HASH_LEN = 4
ROOT_HASH_LEN = 32
#: Largest tree size accepted (int64, as the Go tooling and SQL BIGINT hold it).
MAX_TREE_SIZE = 2**63 - 1
#: Go's ``note.Open`` refuses more than 100 signatures; the spec asks for at least 16.
MAX_SIGNATURES = 100
#: A bound on the whole note so that a hostile input cannot cost much to parse.
MAX_NOTE_BYTES = 1 << 20

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
TIME_EXTENSION_PREFIX = "time "

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_RFC3339_UTC = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?Z"
)
_HEX8 = re.compile(r"[0-9a-f]{8}")


# --------------------------------------------------------------------------------------
# small strict helpers


def is_valid_note_name(name: str) -> bool:
    """A key name or origin as signed-note allows it.

    Non-empty, no Unicode space, no ``+``, no ASCII control character, valid UTF-8.
    """
    if not isinstance(name, str) or not name:
        return False
    for ch in name:
        if ch == "+" or ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F:
            return False
        if 0xD800 <= ord(ch) <= 0xDFFF:  # lone surrogate: not encodable as UTF-8
            return False
    return True


def _b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 with padding, in its one canonical spelling only."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise InvalidEntry(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise InvalidEntry(f"{what} is not canonical base64")
    return raw


def _check_time(value: str) -> None:
    # The shape of ledger.timefmt (0 to 6 fractional digits), but ASCII digits only and
    # no trailing newline: a checkpoint line must have exactly one spelling.
    m = _RFC3339_UTC.fullmatch(value)
    if m is None:
        raise InvalidEntry("checkpoint time must be RFC 3339 UTC with Z, e.g. 2025-01-31T12:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise InvalidEntry("checkpoint time is not a real date and time") from None


def _check_key_name(key_name: str) -> None:
    if not is_valid_note_name(key_name):
        raise InvalidEntry("key name must be non-empty with no spaces, '+' or control characters")


def _check_public_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != ED25519_PUBLIC_KEY_LEN:
        raise InvalidEntry("an Ed25519 public key is 32 bytes")


# --------------------------------------------------------------------------------------
# the checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """One signed tree head. Validated on construction: an instance is always writable."""

    origin: str
    size: int
    root: bytes
    time: str

    def __post_init__(self) -> None:
        if not is_valid_note_name(self.origin):
            raise InvalidEntry(
                "checkpoint origin must be non-empty with no spaces, '+' or control characters"
            )
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= MAX_TREE_SIZE
        ):
            raise InvalidEntry("checkpoint size must be an integer in [0, 2^63-1]")
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_HASH_LEN:
            raise InvalidEntry("checkpoint root must be 32 bytes")
        if not isinstance(self.time, str):
            raise InvalidEntry("checkpoint time must be a string")
        _check_time(self.time)


def checkpoint_body(cp: Checkpoint) -> bytes:
    """The note text that is signed: ``origin\\nsize\\nbase64(root)\\ntime <time>\\n``."""
    root64 = base64.b64encode(cp.root).decode("ascii")
    return f"{cp.origin}\n{cp.size}\n{root64}\n{TIME_EXTENSION_PREFIX}{cp.time}\n".encode()


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse the note text of a checkpoint (no signatures), strictly."""
    if not text.endswith("\n"):
        raise InvalidEntry("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise InvalidEntry("checkpoint must have origin, size and root lines")
    if any(line == "" for line in lines):
        raise InvalidEntry("checkpoint lines must not be empty")
    if len(lines) < 4 or not lines[3].startswith(TIME_EXTENSION_PREFIX):
        raise InvalidEntry("checkpoint is missing its 'time <RFC 3339>' extension line")
    if len(lines) > 4:
        raise InvalidEntry("checkpoint has unexpected extension lines after 'time'")
    origin, size_text, root_text, time_line = lines
    if _DECIMAL.fullmatch(size_text) is None:
        raise InvalidEntry("checkpoint size must be ASCII decimal with no leading zeros")
    if len(size_text) > 19 or int(size_text) > MAX_TREE_SIZE:
        raise InvalidEntry("checkpoint size is too large")
    root = _b64decode_strict(root_text, "checkpoint root")
    if len(root) != ROOT_HASH_LEN:
        raise InvalidEntry("checkpoint root must be 32 bytes")
    return Checkpoint(
        origin=origin,
        size=int(size_text),
        root=root,
        time=time_line[len(TIME_EXTENSION_PREFIX) :],
    )


# --------------------------------------------------------------------------------------
# signed notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note: the key name, its 4-byte key hash, the signature."""

    key_name: str
    key_hash: bytes
    signature: bytes


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and its signature lines, without verifying.

    Follows golang.org/x/mod/sumdb/note ``Open``: valid UTF-8, no control character but
    newline, text and signatures separated by the *last* blank line, every signature line
    ``— <name> <base64(hash || sig)>``. Raises :class:`InvalidEntry` if malformed.
    """
    if not isinstance(note, str):
        raise InvalidEntry("a signed note is text")
    try:
        encoded = note.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEntry("signed note is not valid UTF-8") from None
    if len(encoded) > MAX_NOTE_BYTES:
        raise InvalidEntry("signed note is too large")
    if any((ord(ch) < 0x20 and ch != "\n") for ch in note):
        raise InvalidEntry("signed note contains a control character")
    split = note.rfind("\n\n")
    if split < 0:
        raise InvalidEntry("signed note has no signature block (no blank line)")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise InvalidEntry("signed note has no signature line")
    if not block.endswith("\n"):
        raise InvalidEntry("signed note must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidEntry(f"signed note has more than {MAX_SIGNATURES} signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise InvalidEntry("signature line must start with an em dash (U+2014) and a space")
        name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep or not is_valid_note_name(name):
            raise InvalidEntry("signature line has an invalid key name")
        raw = _b64decode_strict(b64, "signature")
        if len(raw) <= KEY_HASH_LEN:
            raise InvalidEntry("signature is too short")
        sigs.append(
            NoteSignature(key_name=name, key_hash=raw[:KEY_HASH_LEN], signature=raw[KEY_HASH_LEN:])
        )
    return text, sigs


def note_key_hash(*, key_name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID: ``SHA-256(key_name || 0x0A || 0x01 || public_key)[:4]``."""
    _check_key_name(key_name)
    _check_public_key(public_key)
    digest = hashlib.sha256(
        key_name.encode("utf-8") + b"\n" + bytes([SIG_TYPE_ED25519]) + public_key
    ).digest()
    return digest[:KEY_HASH_LEN]


def note_verifier_key(*, key_name: str, public_key: bytes) -> str:
    """The Go ``note`` verifier key: ``<name>+<hex key hash>+<base64(0x01 || pubkey)>``."""
    key_hash = note_key_hash(key_name=key_name, public_key=public_key)
    material = base64.b64encode(bytes([SIG_TYPE_ED25519]) + public_key).decode("ascii")
    return f"{key_name}+{key_hash.hex()}+{material}"


def parse_note_verifier_key(vkey: str) -> tuple[str, bytes]:
    """Parse a Go ``note`` Ed25519 verifier key into ``(key_name, public_key)``.

    The key hash in the string must match the name and key.
    """
    name, sep1, rest = vkey.partition("+")
    hash_hex, sep2, material = rest.partition("+")
    if not (sep1 and sep2) or not is_valid_note_name(name) or _HEX8.fullmatch(hash_hex) is None:
        raise InvalidEntry("malformed note verifier key")
    raw = _b64decode_strict(material, "verifier key")
    if len(raw) != 1 + ED25519_PUBLIC_KEY_LEN or raw[0] != SIG_TYPE_ED25519:
        raise InvalidEntry("verifier key is not an Ed25519 note key")
    public_key = raw[1:]
    if note_key_hash(key_name=name, public_key=public_key).hex() != hash_hex:
        raise InvalidEntry("verifier key hash does not match its name and key")
    return name, public_key


def note_signature_line(text: bytes, *, signer: Signer, key_name: str) -> str:
    """Sign note ``text`` (ending in newline) and return the signature line, newline included.

    The fresh signature is checked before it is returned, so a faulty signer (HSM error,
    fault injection) cannot publish a bad or key-leaking signature.
    """
    _check_key_name(key_name)
    if not text.endswith(b"\n"):
        raise InvalidEntry("note text must end with a newline")
    public_key = signer.public_key
    key_hash = note_key_hash(key_name=key_name, public_key=public_key)
    signature = signer.sign(text)
    if len(signature) != ED25519_SIGNATURE_LEN:
        raise SignatureInvalid("signer returned a signature that is not 64 bytes")
    verify_signature(public_key=public_key, signature=signature, message=text)
    payload = base64.b64encode(key_hash + signature).decode("ascii")
    return f"{SIGNATURE_PREFIX}{key_name} {payload}\n"


def open_note(note: str, *, public_key: bytes, key_name: str) -> str:
    """Verify ``note`` against one known key and return its text.

    Signature lines from other keys (cosigners, a rotated log key) are ignored, as the
    spec requires: a line counts only if both its name and its key hash match. Every line
    that does match must verify (the spec says a bad signature by a known key SHOULD
    reject the whole note), and at least one must exist.
    """
    _check_key_name(key_name)
    try:
        _check_public_key(public_key)
    except InvalidEntry:
        raise SignatureInvalid("the verifying key is not a 32-byte Ed25519 public key") from None
    text, sigs = split_note(note)
    expected_hash = note_key_hash(key_name=key_name, public_key=public_key)
    message = text.encode("utf-8")
    verified = 0
    for sig in sigs:
        if sig.key_name != key_name or sig.key_hash != expected_hash:
            continue
        try:
            verify_signature(public_key=public_key, signature=sig.signature, message=message)
        except SignatureInvalid:
            raise SignatureInvalid(
                f"invalid signature for key {key_name}+{expected_hash.hex()}"
            ) from None
        verified += 1
    if verified == 0:
        raise SignatureInvalid(f"note has no signature by key {key_name}+{expected_hash.hex()}")
    return text


# --------------------------------------------------------------------------------------
# checkpoints as signed notes


def sign_checkpoint(cp: Checkpoint, *, signer: Signer, key_name: str) -> str:
    """The full signed note: checkpoint text, blank line, one signature line."""
    body = checkpoint_body(cp)
    line = note_signature_line(body, signer=signer, key_name=key_name)
    return body.decode("utf-8") + "\n" + line


def parse_checkpoint(note: str) -> Checkpoint:
    """Parse a signed checkpoint note strictly, *without* verifying any signature.

    Only for display or triage: trust the result of :func:`verify_checkpoint` instead.
    """
    text, _sigs = split_note(note)
    return parse_checkpoint_body(text)


def verify_checkpoint(note: str, *, public_key: bytes, key_name: str) -> Checkpoint:
    """Parse ``note`` and check it carries a valid signature by ``(key_name, public_key)``.

    Raises :class:`InvalidEntry` if the note is malformed and :class:`SignatureInvalid`
    if no line by that key is present or a line by that key does not verify. The caller
    should also check ``origin`` against the log id it expects.
    """
    cp = parse_checkpoint(note)
    open_note(note, public_key=public_key, key_name=key_name)
    return cp
