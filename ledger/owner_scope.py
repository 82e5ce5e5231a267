"""Owner commitments and leaf format v2: what lets one owner audit its own part (issue #14).

Each v2 leaf carries an **owner commitment** ``C``::

    C   = salt (16 random bytes) || tag_1 || ... || tag_n      (each tag 16 bytes, sorted)
    tag = HMAC-SHA256(k, "reserve-ledger/owner-tag/v1\\n" || log_id || "\\n" || u64be(seq) || salt)[:16]

with one real tag per owner the entry touches (``ledger.rules.owners.owners_touched``),
``k`` that owner's scoped-audit secret (the epoch in force when the entry was written),
and random filler tags up to ``n = max(4, next power of two)``. Only a holder of ``k``
can tell whether a tag is its own; a tag is bound to the log, the seq and a fresh salt,
so equal owners on two leaves give unrelated tags (no linking across leaves).

The leaf hash binds the commitment (RFC 9162 section 2.1.1 leaf prefix 0x00, then a
version byte)::

    v1:  SHA-256(0x00 || leaf_line)                                  (histories before #14)
    v2:  SHA-256(0x00 || 0x02 || u16be(len(C)) || C || SHA-256(leaf_line))

A canonical v1 leaf line starts with ``{`` (0x7B), never 0x02, so the two forms cannot
collide. ``SHA-256(leaf_line)`` (the *rest hash*) is what a scoped bundle gives for a
leaf it does not give in full: with ``C`` it recomputes the leaf hash, so the tree and
the checkpoints still check, and ``C`` shows the leaf does not touch the owner.

Secrets are per owner and versioned by epoch: rotating adds an epoch used for new
leaves; old leaves keep the tags of the epoch they were written under, so nothing is
rewritten, and an owner's auditors hold every epoch's secret (they test each one).

Pure: :mod:`hashlib`, :mod:`hmac`, :mod:`secrets` only (the verifier's core install).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import ConfigError

LEAF_V2: Final = b"\x02"
SALT_LEN: Final = 16
TAG_LEN: Final = 16
MIN_TAGS: Final = 4
SECRET_LEN: Final = 32
MAX_COMMITMENT: Final = SALT_LEN + TAG_LEN * 4096
_TAG_DOMAIN: Final = b"reserve-ledger/owner-tag/v1\n"
_LEAF_PREFIX: Final = b"\x00"
KEY_FILE_FORMAT: Final = "reserve-owner-scope-key/v1"


class CommitmentMalformed(ValueError):
    """The bytes are not an owner commitment of the v2 format (callers name the seq)."""


@dataclass(frozen=True, slots=True)
class OwnerSecret:
    """One epoch of one owner's scoped-audit secret."""

    owner: str
    epoch: int
    secret: bytes

    def __repr__(self) -> str:  # never print the secret (common brief: no secret in a log)
        return f"OwnerSecret(owner={self.owner!r}, epoch={self.epoch})"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_LEN)


def rest_hash(line: bytes) -> bytes:
    """SHA-256 of the canonical leaf line: the part of a v2 leaf hash besides ``C``."""
    return hashlib.sha256(line).digest()


def leaf_hash_v2(commitment: bytes, rest: bytes) -> bytes:
    """The v2 leaf hash from the commitment and the rest hash (see the module doc)."""
    if len(rest) != 32 or len(commitment) > MAX_COMMITMENT:
        raise CommitmentMalformed("a v2 leaf needs a 32-byte rest hash and a bounded commitment")
    return hashlib.sha256(
        _LEAF_PREFIX + LEAF_V2 + len(commitment).to_bytes(2, "big") + commitment + rest
    ).digest()


def owner_tag(secret: bytes, *, log_id: str, seq: int, salt: bytes) -> bytes:
    msg = _TAG_DOMAIN + log_id.encode() + b"\n" + seq.to_bytes(8, "big") + salt
    return hmac.digest(secret, msg, "sha256")[:TAG_LEN]


def _slots(n: int) -> int:
    """Tag slots for ``n`` real tags: a power of two, at least :data:`MIN_TAGS`, so the
    count says only "few" or "many", not how many owners an entry touches."""
    slots = MIN_TAGS
    while slots < n:
        slots *= 2
    return slots


def make_commitment(
    secrets_: Iterable[bytes],
    *,
    log_id: str,
    seq: int,
    rand: Callable[[int], bytes] = secrets.token_bytes,
) -> bytes:
    """``C`` for a leaf touching the owners whose (current-epoch) secrets are given."""
    salt = rand(SALT_LEN)
    tags = {owner_tag(k, log_id=log_id, seq=seq, salt=salt) for k in secrets_}
    while len(tags) < _slots(len(tags)):
        tags.add(rand(TAG_LEN))
    return salt + b"".join(sorted(tags))


def parse_commitment(commitment: bytes) -> tuple[bytes, frozenset[bytes]]:
    """``(salt, tags)``; refuses any other shape (a short, padded or oversized value)."""
    body = len(commitment) - SALT_LEN
    n = body // TAG_LEN
    if body < 0 or body % TAG_LEN or n < MIN_TAGS or n & (n - 1) or len(commitment) > MAX_COMMITMENT:
        raise CommitmentMalformed("the owner commitment has not the v2 shape")
    tags = [commitment[i : i + TAG_LEN] for i in range(SALT_LEN, len(commitment), TAG_LEN)]
    if any(tags[i] >= tags[i + 1] for i in range(n - 1)):
        # One spelling per set of tags: a reordered C would be another leaf hash.
        raise CommitmentMalformed("the owner commitment's tags are not sorted and distinct")
    return commitment[:SALT_LEN], frozenset(tags)


def names_parsed(
    salt: bytes, tags: frozenset[bytes], secrets_: Sequence[bytes], *, log_id: str, seq: int
) -> bool:
    """:func:`names` on a commitment already split by :func:`parse_commitment`."""
    prefix = _TAG_DOMAIN + log_id.encode() + b"\n" + seq.to_bytes(8, "big") + salt
    return any(hmac.digest(k, prefix, "sha256")[:TAG_LEN] in tags for k in secrets_)


def names(commitment: bytes, secrets_: Sequence[bytes], *, log_id: str, seq: int) -> bool:
    """Whether ``C`` holds the tag of any of one owner's secrets (any epoch)."""
    salt, tags = parse_commitment(commitment)
    return names_parsed(salt, tags, secrets_, log_id=log_id, seq=seq)


# -- the key file an owner's auditor receives out of band ---------------------------------


def key_file_json(log_id: str, owner: str, epochs: Sequence[OwnerSecret]) -> str:
    """The scoped-audit key file: every epoch of one owner's secret, for one log."""
    return json.dumps(
        {
            "format": KEY_FILE_FORMAT,
            "log_id": log_id,
            "owner": owner,
            "epochs": [{"epoch": e.epoch, "secret": e.secret.hex()} for e in epochs],
        },
        indent=1,
    ) + "\n"


def read_key_file(text: str, *, owner: str | None = None) -> tuple[str, str, list[OwnerSecret]]:
    """``(log_id, owner, epochs)`` from a key file; :class:`ConfigError` if it is not one
    (the message never quotes the file: it holds a secret)."""
    try:
        d: Any = json.loads(text)
        if d.get("format") != KEY_FILE_FORMAT:
            raise ValueError
        log_id, code = str(d["log_id"]), str(d["owner"])
        epochs = [OwnerSecret(code, int(e["epoch"]), bytes.fromhex(e["secret"])) for e in d["epochs"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError("the owner key file is not a scoped-audit key file") from None
    if not epochs or any(len(e.secret) != SECRET_LEN for e in epochs):
        raise ConfigError("the owner key file holds no valid secret")
    if owner is not None and code != owner:
        raise ConfigError(f"the owner key file is for owner {code}, not {owner}")
    return log_id, code, epochs
