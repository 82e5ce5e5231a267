"""Sending each new checkpoint to the log's witnesses, in the background.

Never in the append path: an append neither waits for nor fails with a witness. A
:class:`WitnessFeeder` thread looks at the newest checkpoint every few seconds (or when
woken) and asks every witness that has not cosigned it yet; a witness that fails is
asked again next round. Cosignatures are verified before they are stored.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import Engine

from ledger.errors import LedgerError
from ledger.store.proofs import prove_consistency
from ledger.store.witnesses import (
    last_cosigned_size,
    latest_checkpoint,
    list_witnesses,
    store_cosignature,
)
from ledger.witnessing import WitnessTransport, request_cosignature

log = structlog.get_logger("reserve.witness_feed")


def feed_witnesses(engine: Engine, transport: WitnessTransport) -> dict[str, str]:
    """One round: the newest checkpoint to every witness that lacks it. Returns an
    outcome per witness name ("cosigned", "up to date", or why not)."""
    outcomes: dict[str, str] = {}
    with engine.connect() as conn:
        latest = latest_checkpoint(conn)
        ws = list_witnesses(conn)
        lasts = {w.name: last_cosigned_size(conn, w.name) for w in ws}
    if latest is None:
        return outcomes
    size, note = latest

    def proof_from(old: int) -> list[bytes]:
        with engine.connect() as conn:
            return prove_consistency(conn, old_size=old, new_size=size)[1]

    for w in ws:
        if lasts[w.name] >= size:
            outcomes[w.name] = "up to date"
            continue
        try:
            cos = request_cosignature(
                witness=w.cosigner,
                url=w.url,
                note=note,
                size=size,
                old_size=lasts[w.name],
                proof_from=proof_from,
                transport=transport,
            )
        except (LedgerError, OSError, ValueError) as exc:
            reason = exc.public_message if isinstance(exc, LedgerError) else type(exc).__name__
            log.warning("witness_not_cosigned", witness=w.name, size=size, reason=reason)
            outcomes[w.name] = reason
            continue
        store_cosignature(engine, size=size, witness=w.name, line=cos.line, timestamp=cos.timestamp)
        log.info("witness_cosigned", witness=w.name, size=size)
        outcomes[w.name] = "cosigned"
    return outcomes


class WitnessFeeder:
    """A daemon thread running :func:`feed_witnesses` every ``interval`` seconds."""

    def __init__(self, engine: Engine, transport: WitnessTransport, *, interval: float = 2.0):
        self._engine = engine
        self._transport = transport
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="witness-feeder", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                feed_witnesses(self._engine, self._transport)
            except Exception as exc:  # a feeder must outlive any one bad round
                log.error("witness_feed_failed", error_class=type(exc).__name__)
            self._wake.wait(self._interval)
            self._wake.clear()
