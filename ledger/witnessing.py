"""The log's side of c2sp.org/tlog-witness: ask a witness to cosign a checkpoint.

Transport-free (the HTTP client is ``witness/transport.py``, behind
:class:`WitnessTransport`): build the ``add-checkpoint`` body, follow a 409 to the
witness's own size with a proof from there (a lagging witness catches up in one step),
and accept only a cosignature that verifies under the witness's registered key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ledger.checkpoint import split_note
from ledger.cosignature import Cosigner, verify_cosignature_line
from ledger.errors import LedgerError
from ledger.witness import SIZE_CONTENT_TYPE, encode_add_checkpoint

_SIZE = re.compile(rb"(0|[1-9][0-9]{0,18})\n")


@dataclass(frozen=True)
class WitnessAnswer:
    status: int
    content_type: str
    body: bytes


class WitnessTransport(Protocol):
    def add_checkpoint(self, url: str, body: bytes) -> WitnessAnswer:
        """POST ``body`` to ``<url>/add-checkpoint``; any HTTP status is an answer, a
        network failure raises ``OSError``."""
        ...


class WitnessRefused(LedgerError):
    """The witness did not cosign (or answered something we cannot accept)."""

    code = "witness-refused"


@dataclass(frozen=True)
class Cosignature:
    witness: str
    line: str
    timestamp: int


def request_cosignature(
    *,
    witness: Cosigner,
    url: str,
    note: str,
    size: int,
    old_size: int,
    proof_from: Callable[[int], list[bytes]],
    transport: WitnessTransport,
) -> Cosignature:
    """Submit checkpoint ``note`` (of ``size`` leaves) from ``old_size``; on a 409 retry
    once from the size the witness says it holds. ``proof_from(m)`` is the consistency
    proof from ``m`` to ``size``."""
    text, _ = split_note(note)
    body_text = text.encode()
    for _attempt in range(2):
        proof = proof_from(old_size) if 0 < old_size < size else []
        answer = transport.add_checkpoint(
            url, encode_add_checkpoint(old_size=old_size, proof=proof, note=note)
        )
        if answer.status == 409:
            m = _SIZE.fullmatch(answer.body)
            if not answer.content_type.startswith(SIZE_CONTENT_TYPE) or m is None:
                raise WitnessRefused(f"witness {witness.name} answered 409 without its size")
            known = int(m.group(1))
            if known > size:
                raise WitnessRefused(
                    f"witness {witness.name} holds a checkpoint of size {known}, larger than ours ({size})"
                )
            old_size = known
            continue
        if answer.status != 200:
            raise WitnessRefused(f"witness {witness.name} refused the checkpoint (HTTP {answer.status})")
        for raw in answer.body.decode("utf-8", "replace").splitlines():
            try:
                ts = verify_cosignature_line(raw, body_text, cosigner=witness)
            except LedgerError:
                continue  # other keys of the witness, or lines we do not know: ignored
            return Cosignature(witness=witness.name, line=raw, timestamp=ts)
        raise WitnessRefused(f"witness {witness.name} returned no valid cosignature by its key")
    raise WitnessRefused(f"witness {witness.name} kept changing its size")
