"""The one rule book: ``apply(state, leaf) -> changes`` or a typed :class:`Rejected`.

The write path calls it before anything is persisted; the verifier calls it over the
whole history. It is pure: it reads only through the :class:`~ledger.state.StateView` and
the entry, and returns the changes instead of making them.

It expects signatures to have been checked cryptographically already
(``ledger.entries.check_signatures``, done at the edge and by the verifier, possibly in
parallel); what it decides is whether those keys were *allowed* to sign this entry at this
point of the log: registered before it, not revoked before it, owned by the author, with
the role the entry kind needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from ledger.crypto import key_id
from ledger.entries import AnyBody, Sig
from ledger.errors import KeyNotAuthorised, Rejected
from ledger.kinds.base import Body
from ledger.kinds.keys import Genesis, LogKeyRotated
from ledger.kinds.release import PolicySet
from ledger.kinds.stock import StockCount
from ledger.state import (
    CLOCK_SKEW,
    REPLAY_WINDOW,
    Change,
    KeyRecord,
    SeenEntryId,
    SetLogInfo,
    StateView,
)
from ledger.timefmt import parse_time


@dataclass(frozen=True, slots=True)
class Context:
    """What the log adds to an entry: its position and the server time."""

    seq: int
    recorded_at: datetime
    # The form its signatures verified under (``ledger.entries.signature_version``): the
    # write path accepts only 2; the verifier also finds 1 in logs written before v2.
    sig_version: int = 2
    # True in an owner-scoped replay (issue #14), which is given only the owner's part of
    # the history: a rule whose input may be another owner's withheld entry checks only
    # what it was given. The write path and the full verify always replay everything.
    partial: bool = False


@dataclass(frozen=True, slots=True)
class Signers:
    """The registry records of an entry's signing keys, in signature order."""

    author: KeyRecord
    cosigners: tuple[KeyRecord, ...]


B = TypeVar("B", bound=Body)
Rule = Callable[[StateView, B, Signers, Context], list[Change]]
_RULES: dict[type, Callable[..., list[Change]]] = {}


def rule(kind: type[B]) -> Callable[[Rule[B]], Rule[B]]:
    """Register the rule for one entry kind (each rules module registers its own)."""

    def deco(fn: Rule[B]) -> Rule[B]:
        _RULES[kind] = fn
        return fn

    return deco


def _signer_records(state: StateView, body: AnyBody, sigs: list[Sig], ctx: Context) -> Signers:
    records: list[KeyRecord] = []
    for i, s in enumerate(sigs):
        kid = key_id(bytes.fromhex(s.pub))
        rec = state.key(kid)
        if rec is None:
            raise KeyNotAuthorised(
                "signing key is not registered in this log", field=f"sigs[{i}]", seq=ctx.seq
            )
        if rec.revoked_seq is not None:
            raise KeyNotAuthorised(
                f"signing key was revoked at seq {rec.revoked_seq}", field=f"sigs[{i}]", seq=ctx.seq
            )
        records.append(rec)
    if records[0].user != body.author:
        raise KeyNotAuthorised(
            f"the first signature must be by the author '{body.author}'",
            field="sigs[0]",
            seq=ctx.seq,
        )
    return Signers(author=records[0], cosigners=tuple(records[1:]))


def apply(state: StateView, body: AnyBody, sigs: list[Sig], ctx: Context) -> list[Change]:
    """Fold one entry into the state: the changes it makes, or :class:`Rejected`."""
    created = parse_time(body.created_at, field="entry.created_at")
    if created > ctx.recorded_at + CLOCK_SKEW:
        raise Rejected(
            "clock", "entry is dated in the future", field="entry.created_at", seq=ctx.seq
        )
    if created < ctx.recorded_at - REPLAY_WINDOW:
        raise Rejected(
            "stale-entry",
            "entry was signed more than 24 hours before it was submitted; sign it again",
            field="entry.created_at",
            seq=ctx.seq,
        )
    if state.entry_id_seen(body.id):
        raise Rejected(
            "replay", "an entry with this id is already in the log", field="entry.id", seq=ctx.seq
        )

    info = state.log_info()
    if ctx.sig_version != 2 and info is not None and info.entry_sig_version >= 2:
        # The ratchet (issue #9 item 6): once a log holds a v2 entry (or was born v2),
        # an entry signed without the log id could have been carried over from another log.
        raise Rejected(
            "signature-version",
            "this log takes only entry signatures bound to its id (v2) since its first v2 entry",
            field="sigs",
            seq=ctx.seq,
        )

    if ctx.seq == 0 or isinstance(body, Genesis):
        if not (ctx.seq == 0 and isinstance(body, Genesis)):
            raise Rejected("genesis", "the genesis entry is entry 0 and only entry 0", seq=ctx.seq)
        from ledger.rules.keys import apply_genesis

        changes = apply_genesis(body, sigs, ctx)
    else:
        if state.log_info() is None:
            raise Rejected("genesis", "the log has no genesis entry", seq=ctx.seq)
        if isinstance(body, LogKeyRotated):
            # The new key co-signs (proof of possession) but is not registered yet.
            if len(sigs) != 2 or sigs[1].pub != body.new_key:
                raise Rejected(
                    "log-key",
                    "a rotation is signed by the current log key, then by the new key",
                    field="sigs",
                    seq=ctx.seq,
                )
            signers = _signer_records(state, body, sigs[:1], ctx)
        else:
            signers = _signer_records(state, body, sigs, ctx)
            if signers.cosigners and not isinstance(body, MULTI_SIGNED):
                raise Rejected(
                    "signatures",
                    "this kind of entry takes one signature",
                    field="sigs",
                    seq=ctx.seq,
                )
        fn = _RULES.get(type(body))
        if fn is None:  # pragma: no cover - every schema kind has a rule module
            raise Rejected("unknown-kind", "no rule for this entry kind", seq=ctx.seq)
        changes = fn(state, body, signers, ctx)
        if ctx.sig_version == 2 and info is not None and info.entry_sig_version < 2:
            latest = next(
                (c.info for c in reversed(changes) if isinstance(c, SetLogInfo)), info
            )
            changes.append(SetLogInfo(replace(latest, entry_sig_version=2)))
    changes.append(SeenEntryId(body.id, created))
    return changes


def rule_name(body: Body) -> str:
    """The rule this entry's kind is judged by (its function, ``module.name``): what the
    verification report counts per rule (issue #10). Genesis has its own."""
    if isinstance(body, Genesis):
        return "ledger.rules.keys.apply_genesis"
    fn = _RULES.get(type(body))
    return f"{fn.__module__}.{fn.__name__}" if fn is not None else "unknown-kind"


# Kinds that carry co-signatures besides the author's: a count beyond tolerance has a
# second officer's; a release policy its minister's (issue #5).
MULTI_SIGNED: tuple[type, ...] = (StockCount, PolicySet)


def require_role(signers: Signers, role: str, ctx: Context, *, what: str) -> None:
    if role not in signers.author.roles:
        raise Rejected(
            "role",
            f"only a user with the role '{role}' may {what}",
            field="entry.author",
            seq=ctx.seq,
        )


# Rule modules register themselves on import.
import ledger.rules.keys  # noqa: E402
import ledger.rules.movements  # noqa: E402
import ledger.rules.reference  # noqa: E402
import ledger.rules.release  # noqa: E402
import ledger.rules.testmove  # noqa: E402,F401
