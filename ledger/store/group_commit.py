"""Group commit for the service: concurrent writers share one append transaction.

Appends are serialised (one log, one head), so under load each transaction's fixed cost
(lock, head read, checkpoint signature, commit fsync) would be paid once per entry. A
single committer thread instead takes whatever is queued (up to ``max_batch``), appends
it in one transaction with one checkpoint, and answers each caller with its own seq or
its own refusal: one refused entry never refuses its neighbours (``append_batch``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine

from ledger.crypto import Signer
from ledger.entries import parse_submission
from ledger.errors import LedgerError, StorageError
from ledger.store.idempotency import IdemKey
from ledger.store.log import BatchItem, append_batch

log = structlog.get_logger("ledger.group_commit")


@dataclass
class _Pending:
    item: BatchItem
    key: tuple[str, str] | None
    future: Future[Any] = field(default_factory=Future)


class GroupCommitter:
    """Thread-safe; ``submit`` blocks until the entry is committed or refused."""

    def __init__(
        self,
        engine: Engine,
        log_signer: Callable[[], Signer],
        *,
        max_batch: int = 256,
        observe: Callable[[int], None] | None = None,
    ):
        self._engine = engine
        self._observe = observe  # told each transaction's size (metrics, issue #11)
        self._log_signer = log_signer
        self._max_batch = max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(
        self,
        submission: bytes | dict[str, Any],
        *,
        also: Callable[..., None] | None = None,
        precheck: Callable[..., Any] | None = None,
        dedupe_key: tuple[str, str] | None = None,
        idempotency: IdemKey | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """The entry's seq, or ``precheck``'s (or the idempotency key's stored) answer;
        raises the entry's refusal. Edge validation (schema, signatures) runs here, in
        the caller's thread."""
        if idempotency is not None and dedupe_key is None:
            dedupe_key = (idempotency.user, idempotency.key)
        item = BatchItem(parse_submission(submission), also, precheck, idempotency)
        pending = _Pending(item, dedupe_key)
        self._queue.put(pending)
        return pending.future.result(timeout=timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        carry: list[_Pending] = []
        while True:
            first = carry.pop(0) if carry else self._queue.get()
            if first is None:
                return
            batch = [first]
            keys = {first.key} if first.key else set()
            while len(batch) < self._max_batch:
                try:
                    nxt = carry.pop(0) if carry else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                if nxt.key is not None and nxt.key in keys:
                    carry.append(nxt)  # the same idempotency key waits for the next batch
                    break
                if nxt.key is not None:
                    keys.add(nxt.key)
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        if self._observe is not None:
            self._observe(len(batch))
        try:
            results = append_batch(
                self._engine, [p.item for p in batch], log_signer=self._log_signer()
            )
        except LedgerError as exc:
            for p in batch:
                p.future.set_exception(exc)
            return
        except Exception as exc:  # never leave a caller waiting
            log.error("group_commit_failed", error_class=type(exc).__name__)
            for p in batch:
                p.future.set_exception(StorageError("the append failed; nothing was written"))
            return
        for p, result in zip(batch, results, strict=True):
            if isinstance(result, LedgerError):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
