"""Co-signature proposals (issue #9 item 3): the pure part.

An entry that needs several people's signatures (a release policy: security admin and
minister; a count beyond tolerance: operator and second officer) is proposed with its
author's signature and the names of its co-signers. Each co-signer signs the *stored*
body from their own key; when the last signature arrives the entry goes through the
normal append path, where the reducer decides, as always, whether the signatures suffice.
A proposal never enters the log until complete.

This module holds the state transitions and what a co-signer is shown; storage is
``ledger.store.proposals``, the routes ``api/routes/proposals.py``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from ledger.canonical import canonical
from ledger.crypto import verify_signature
from ledger.entries import Sig, signing_message
from ledger.errors import Conflict, Forbidden, InvalidEntry, SignatureInvalid
from ledger.state import REPLAY_WINDOW, KeyRecord
from ledger.timefmt import format_time, parse_time
from ledger.units import format_quantity

# Kinds that carry co-signatures (``ledger.reducer.MULTI_SIGNED``). A log-key rotation
# is signed by the log's own keys, held by the service, so it is not proposed by a person.
PROPOSABLE_KINDS: Final = ("stock.count", "policy.set")
MAX_COSIGNERS: Final = 3  # an entry carries at most 4 signatures (ledger.entries.Sigs)
# Body fields that hold a quantity in grams: shown in display units to whoever signs.
QUANTITY_FIELDS: Final = (
    "quantity",
    "quantity_in",
    "quantity_out",
    "book",
    "counted",
    "annual_quantity",
    "cap",
)
_HIDDEN: Final = ("kind", "id", "author", "created_at")

Status = Literal["open", "appended", "refused", "withdrawn", "expired"]


@dataclass(frozen=True, slots=True)
class Signature:
    user: str
    pub: str
    sig: str
    signed_at: str


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal as stored; ``status`` is the stored one (``open`` may have expired:
    see :func:`effective_status`)."""

    id: str
    body: dict[str, Any]
    proposer: str
    cosigners: tuple[str, ...]
    created_at: str
    expires_at: str
    status: str
    signatures: tuple[Signature, ...] = field(default=())
    closed_at: str | None = None
    outcome_seq: int | None = None
    outcome: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    def signed_by(self) -> list[str]:
        return [s.user for s in sorted(self.signatures, key=self._position)]

    def waiting_for(self) -> list[str]:
        done = {s.user for s in self.signatures}
        return [u for u in self.cosigners if u not in done]

    def _position(self, s: Signature) -> int:
        return 0 if s.user == self.proposer else 1 + self.cosigners.index(s.user)

    def is_complete(self) -> bool:
        return not self.waiting_for() and any(s.user == self.proposer for s in self.signatures)

    def submission(self) -> dict[str, Any]:
        """The entry with every signature, the author's first, then the co-signers' in
        the order the proposer named them (the order the reducer reads them in)."""
        ordered = sorted(self.signatures, key=self._position)
        return {"entry": self.body, "sigs": [{"pub": s.pub, "sig": s.sig} for s in ordered]}


def expiry(body_created_at: str, *, at: datetime, ttl: timedelta | None = None) -> str:
    """When a proposal expires: the entry's replay window (it could not be appended
    after that anyway, ``ledger.reducer``), or ``ttl`` from now if that is sooner."""
    end = parse_time(body_created_at, field="entry.created_at") + REPLAY_WINDOW
    if ttl is not None:
        end = min(end, at + ttl)
    return format_time(end)


def effective_status(p: Proposal, *, at: datetime) -> Status:
    if p.status == "open" and parse_time(p.expires_at) <= at:
        return "expired"
    if p.status not in ("open", "appended", "refused", "withdrawn"):  # pragma: no cover
        raise InvalidEntry("unknown proposal status")
    return p.status  # type: ignore[return-value]


def check_new(
    *, body: dict[str, Any], sigs: list[Sig], proposer: str, cosigners: list[str], expires_at: str, at: datetime
) -> None:
    """A proposal may be opened: a kind that takes co-signatures, authored and signed
    (once) by the caller, naming 1 to 3 other people, not already expired."""
    if body.get("kind") not in PROPOSABLE_KINDS:
        raise InvalidEntry(
            f"only entries that need several signatures are proposed: {', '.join(PROPOSABLE_KINDS)}",
            field="entry.kind",
        )
    if body.get("author") != proposer:
        raise Forbidden("you can only propose entries you authored")
    if len(sigs) != 1:
        raise InvalidEntry("a proposal carries the proposer's signature only", field="sigs")
    if not 1 <= len(cosigners) <= MAX_COSIGNERS:
        raise InvalidEntry(f"name 1 to {MAX_COSIGNERS} co-signers", field="cosigners")
    if len(set(cosigners)) != len(cosigners) or proposer in cosigners:
        raise InvalidEntry(
            "co-signers are distinct people other than the proposer", field="cosigners"
        )
    if parse_time(expires_at) <= at:
        raise Conflict("the entry was signed too long ago to be appended; sign it again")


def check_cosign(p: Proposal, *, user: str, at: datetime) -> None:
    """``user`` may add a signature now, or the typed refusal."""
    status = effective_status(p, at=at)
    if status == "withdrawn":
        raise Conflict("the proposal was withdrawn by its proposer")
    if status == "expired":
        raise Conflict("the proposal expired before it was complete; propose it again")
    if status != "open":
        raise Conflict(f"the proposal is closed ({status})")
    if user == p.proposer:
        raise Conflict("the proposer has already signed this proposal")
    if user not in p.cosigners:
        raise Forbidden("you are not named as a co-signer of this proposal")
    if any(s.user == user for s in p.signatures):
        raise Conflict("you have already signed this proposal")


def check_withdraw(p: Proposal, *, user: str, at: datetime) -> None:
    if user != p.proposer:
        raise Forbidden("only the proposer withdraws a proposal")
    status = effective_status(p, at=at)
    if status != "open":
        raise Conflict(f"the proposal is closed ({status})")


def verify_cosignature(
    p: Proposal, sig: Sig, *, log_id: str, active_keys: list[KeyRecord]
) -> None:
    """The signature verifies (v2, this log) over the *stored* body, by one of the
    signer's active keys not already on the proposal; else :class:`SignatureInvalid` or
    :class:`Forbidden`."""
    if sig.pub not in {k.public_key for k in active_keys}:
        raise Forbidden("the signature is not by one of your active registered keys")
    if any(s.pub == sig.pub for s in p.signatures):
        raise Conflict("this key has already signed this proposal")
    try:
        raw = base64.b64decode(sig.sig, validate=True)
    except binascii.Error:
        raise SignatureInvalid("signature is not base64", field="sig") from None
    message = signing_message(canonical(p.body), log_id=log_id)
    try:
        verify_signature(public_key=bytes.fromhex(sig.pub), signature=raw, message=message)
    except SignatureInvalid:
        raise SignatureInvalid(
            "the signature does not verify over the proposed entry for this log "
            "(sign exactly the body shown by GET /proposals/{id})",
            field="sig",
        ) from None


def summary(body: dict[str, Any]) -> list[str]:
    """What a co-signer reads before signing: one line per field, quantities in display
    units (the body itself holds grams)."""
    lines = [f"{body.get('kind')} proposed by {body.get('author')} at {body.get('created_at')}"]
    for name, value in body.items():
        if name in _HIDDEN:
            continue
        if name in QUANTITY_FIELDS and isinstance(value, int):
            shown = format_quantity(value)
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        else:
            shown = str(value)
        lines.append(f"{name}: {shown}")
    return lines
