"""References people can type (issue #12): one resolver for the CLI and the API.

An entry (a transfer, an order, a request, a movement to reverse...) is named by its seq
(ASCII digits; with 8 digits or more it may also be an id prefix: both are looked up,
and a text naming two entries is refused as ambiguous), its full id, or a prefix of at
least :data:`MIN_PREFIX` characters of its id, as ``release list`` shows them. A key is
named by its id, an id prefix, or its user's name where that user has exactly one active
key. An ambiguous prefix is refused with the candidates' seqs (never a guess); an unknown
reference is one :class:`~ledger.errors.NotFound` line.

Pure lookups over the store: nothing here writes, and nothing knows HTTP or argparse.
The store is imported where it is read, so the core-only client can import the names.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledger.errors import InvalidQuery, NotFound
from ledger.state import KeyRecord

if TYPE_CHECKING:  # the store is the server extra; the client imports FIELD_KINDS only
    from sqlalchemy import Connection

MIN_PREFIX = 8  # as `release list` shows ids (12 characters); 8 still leaves 2^32 choices
MAX_CANDIDATES = 10  # seqs listed in an ambiguity refusal
ENTRY_ID_LEN = 32
KEY_ID_LEN = 64
_HEX = frozenset("0123456789abcdef")
_USER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # ledger.kinds.base.UserName

# What each named thing is, in words, for the refusals ("no release order 'abc12345'").
KIND_WORDS = {
    "stock.dispatch": "transfer",
    "release.requested": "release request",
    "release.ordered": "release order",
    "price.observed": "price observation",
    "stock.loan_out": "loan",
}
# The entry kinds a reference field may name (CLI flags and body fields alike).
FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "transfer": ("stock.dispatch",),
    "order": ("release.ordered",),
    "request": ("release.requested",),
    "observation": ("price.observed",),
    "loan": ("stock.loan_out",),
}


class AmbiguousReference(InvalidQuery):
    """An id prefix names more than one entry or key; ``candidates`` are their seqs
    (entries) or key ids (keys), so the caller can type one of them."""

    code = "ambiguous-reference"

    def __init__(self, message: str, *, candidates: tuple[str, ...], field: str | None = None):
        super().__init__(message, field=field)
        self.candidates = candidates


@dataclass(frozen=True, slots=True)
class EntryRef:
    seq: int
    entry_id: str
    kind: str


def _what(kinds: Collection[str] | None) -> str:
    if not kinds:
        return "entry"
    return " or ".join(sorted({KIND_WORDS.get(k, k) for k in kinds}))


def _is_seq(ref: str) -> bool:
    return ref.isascii() and ref.isdigit()


def _hex_prefix(ref: str, *, full: int, what: str, field: str | None) -> str:
    text = ref.strip().lower()
    if not text or not set(text) <= _HEX or len(text) > full:
        # Not echoed: it is not an id, and may hold anything (issue #8).
        raise InvalidQuery(
            f"not a reference: name a {what} by its seq, its id or an id prefix of at "
            f"least {MIN_PREFIX} hex digits",
            field=field,
        )
    if len(text) < MIN_PREFIX:
        raise InvalidQuery(
            f"'{text}' is too short to name a {what}: give at least {MIN_PREFIX} characters "
            "of its id, or its seq",
            field=field,
        )
    return text


def _in_kinds(found: EntryRef, kinds: Collection[str] | None, ref: str) -> EntryRef:
    if kinds and found.kind not in kinds:
        raise NotFound(f"no {_what(kinds)} '{ref}': seq {found.seq} is a {found.kind}")
    return found


def resolve_entry(
    conn: Connection,
    ref: str,
    *,
    kinds: Collection[str] | None = None,
    field: str | None = None,
) -> EntryRef:
    """The entry ``ref`` names: a seq, an id, or a unique id prefix (among ``kinds``
    when given, so a prefix shared by a request and its approval still names the request).
    """
    from sqlalchemy import select

    from ledger.store.schema import entries

    what = _what(kinds)
    cols = (entries.c.seq, entries.c.entry_id, entries.c.kind)
    by_seq: EntryRef | None = None
    if _is_seq(ref) and len(ref) <= 16:
        row = conn.execute(select(*cols).where(entries.c.seq == int(ref))).first()
        by_seq = EntryRef(int(row.seq), str(row.entry_id), str(row.kind)) if row is not None else None
        if len(ref) < MIN_PREFIX:  # too short for an id prefix: only a seq
            if by_seq is None:
                raise NotFound(f"no entry at seq {int(ref)}")
            return _in_kinds(by_seq, kinds, ref)
        if by_seq is not None and kinds and by_seq.kind not in kinds:
            by_seq = None
    prefix = _hex_prefix(ref, full=ENTRY_ID_LEN, what=what, field=field)
    # A range over the unique index on entry_id (ids are lowercase hex): one seek, on
    # SQLite and PostgreSQL alike (LIKE would not use the index on SQLite).
    q = select(*cols).where(
        entries.c.entry_id >= prefix,
        entries.c.entry_id <= prefix + "f" * (ENTRY_ID_LEN - len(prefix)),
    )
    if kinds:
        q = q.where(entries.c.kind.in_(sorted(kinds)))
    found = [
        EntryRef(int(r.seq), str(r.entry_id), str(r.kind))
        for r in conn.execute(q.order_by(entries.c.seq).limit(MAX_CANDIDATES + 1))
    ]
    # Eight digits or more may be a seq or an id prefix (ids are hex, so digits-only
    # prefixes happen): both are looked up, and if both name something it is ambiguous.
    if by_seq is not None and by_seq not in found:
        found = sorted([by_seq, *found], key=lambda e: e.seq)
    if not found:
        raise NotFound(f"no {what} '{prefix}'" if not _is_seq(ref) else f"no {what} at seq or id prefix {prefix}")
    if len(found) > 1:
        seqs = tuple(str(e.seq) for e in found[:MAX_CANDIDATES])
        more = ", ..." if len(found) > MAX_CANDIDATES else ""
        raise AmbiguousReference(
            f"'{prefix}' names more than one {what} (seqs {', '.join(seqs)}{more}): "
            "give more characters of the id, or the seq",
            candidates=seqs,
            field=field,
        )
    return found[0]


def match_key(recs: Iterable[KeyRecord], ref: str, *, field: str | None = None) -> KeyRecord:
    """The key ``ref`` names among ``recs``: its id, its user's name (when that user has
    exactly one active key), or a unique id prefix. Pure, so the API can pass only the
    keys a caller may name."""
    keys = list(recs)
    text = ref.strip()
    for k in keys:
        if k.key_id == text.lower():
            return k
    mine = [k for k in keys if k.user == text]
    if mine:
        active = [k for k in mine if k.revoked_seq is None]
        if len(active) == 1:
            return active[0]
        if not active:
            raise NotFound(f"user '{text}' has no active key")
        ids = tuple(sorted(k.key_id[:16] for k in active))
        raise AmbiguousReference(
            f"user '{text}' has {len(active)} active keys ({', '.join(ids)}): name one by its id",
            candidates=ids,
            field=field,
        )
    if _USER.fullmatch(text) and not set(text) <= _HEX:
        raise NotFound(f"no key and no user with a key named '{text}'")
    prefix = _hex_prefix(text, full=KEY_ID_LEN, what="key", field=field)
    found = sorted((k for k in keys if k.key_id.startswith(prefix)), key=lambda k: k.registered_seq)
    if not found:
        raise NotFound(f"no key '{prefix}'")
    if len(found) > 1:
        ids = tuple(k.key_id[:16] for k in found[:MAX_CANDIDATES])
        seqs = ", ".join(str(k.registered_seq) for k in found[:MAX_CANDIDATES])
        raise AmbiguousReference(
            f"'{prefix}' names more than one key (registered at seqs {seqs}): "
            "give more characters of the id, or the user's name",
            candidates=ids,
            field=field,
        )
    return found[0]


def resolve_key(conn: Connection, ref: str, *, field: str | None = None) -> KeyRecord:
    """:func:`match_key` over every registered key (the log's own key excluded)."""
    from ledger.store.projections import read_keys

    return match_key((k for k in read_keys(conn).values() if k.user != "log"), ref, field=field)


__all__ = [
    "FIELD_KINDS",
    "MIN_PREFIX",
    "AmbiguousReference",
    "EntryRef",
    "match_key",
    "resolve_entry",
    "resolve_key",
]
