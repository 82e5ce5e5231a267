"""Group commit for the service: concurrent writers share one append transaction.

Appends are serialised (one log, one head), so under load each transaction's fixed cost
(lock, head read, checkpoint signature, commit fsync) would be paid once per entry. A
single committer thread instead takes whatever is queued (up to ``max_batch``), appends
it in one transaction with one checkpoint, and answers each caller with its own seq or
its own refusal: one refused entry never refuses its neighbours (``append_batch``, one
savepoint per item).

A caller waits at most ``wait`` seconds. If the outcome is not known by then, ``submit``
raises :class:`~ledger.errors.OutcomePending` instead of an error (the write may still
commit), and the committer keeps the pending write's future under its idempotency key so
:meth:`GroupCommitter.outcome` can answer later (issue #8, item 2).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine

from ledger.crypto import Signer
from ledger.entries import parse_submission
from ledger.errors import LedgerError, OutcomePending, StorageError
from ledger.store.idempotency import IdemKey
from ledger.store.log import BatchItem, append_batch, stored_log_id
from ledger.store.owner_scope import OwnerKeyring

log = structlog.get_logger("ledger.group_commit")

# How many timed-out writes the committer remembers the outcome of (oldest dropped first;
# a dropped one is still answered from the idempotency table once it is appended).
MAX_REMEMBERED_OUTCOMES = 10_000


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
        wait: float = 30.0,
        observe: Callable[[int], None] | None = None,
        keyring: OwnerKeyring | None = None,
    ):
        self._engine = engine
        self._keyring = keyring  # owners' scoped-audit secrets, sealed (issue #14)
        self._observe = observe  # told each transaction's size (metrics, issue #11)
        self._log_signer = log_signer
        self._max_batch = max_batch
        self._log_id: str | None = None  # cached: a log's id never changes
        self._wait = wait
        self._late: OrderedDict[tuple[str, str], Future[Any]] = OrderedDict()
        self._late_lock = threading.Lock()
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
        timeout: float | None = None,
    ) -> Any:
        """The entry's seq, or ``precheck``'s (or the idempotency key's stored) answer;
        raises the entry's refusal, or :class:`OutcomePending` if it is not decided
        within ``timeout`` (default: the committer's ``wait``). Edge validation (schema,
        signatures) runs here, in the caller's thread."""
        if self._log_id is None:
            self._log_id = stored_log_id(self._engine)
        pending = self._enqueue(submission, also, precheck, dedupe_key, idempotency)
        wait = self._wait if timeout is None else timeout
        try:
            return pending.future.result(timeout=wait)
        except FutureTimeout:
            raise self._outcome_pending(pending, wait) from None

    async def submit_async(
        self,
        submission: bytes | dict[str, Any],
        *,
        idempotency: IdemKey | None = None,
        timeout: float | None = None,
    ) -> Any:
        """:meth:`submit` for a caller on an event loop: it waits for the committer
        without holding a thread (issue #11: every write held one of the worker's
        threads for its whole group commit, and each hand-off to a thread and back cost
        the worker more CPU than the write's own route code)."""
        if self._log_id is None:
            self._log_id = await asyncio.to_thread(stored_log_id, self._engine)
        pending = self._enqueue(submission, None, None, None, idempotency)
        wait = self._wait if timeout is None else timeout
        try:
            # shield: a caller that stops waiting must not cancel the write itself.
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending.future)), wait)
        except TimeoutError:
            raise self._outcome_pending(pending, wait) from None

    def _enqueue(
        self,
        submission: bytes | dict[str, Any],
        also: Callable[..., None] | None,
        precheck: Callable[..., Any] | None,
        dedupe_key: tuple[str, str] | None,
        idempotency: IdemKey | None,
    ) -> _Pending:
        if idempotency is not None and dedupe_key is None:
            dedupe_key = (idempotency.user, idempotency.key)
        pending = _Pending(
            BatchItem(
                parse_submission(submission, log_id=self._log_id), also, precheck, idempotency
            ),
            dedupe_key,
        )
        self._queue.put(pending)
        return pending

    def _outcome_pending(self, pending: _Pending, waited: float) -> OutcomePending:
        """Remember the undecided write's future under its key; the error to raise."""
        dedupe_key = pending.key
        if dedupe_key is not None:
            with self._late_lock:
                self._late[dedupe_key] = pending.future
                self._late.move_to_end(dedupe_key)
                while len(self._late) > MAX_REMEMBERED_OUTCOMES:
                    self._late.popitem(last=False)
        log.warning("write_outcome_pending", waited_s=waited)
        return OutcomePending(
            "the write is queued and its outcome is not known yet; fetch it later by its "
            "Idempotency-Key"
            if dedupe_key is not None
            else "the write is queued and its outcome is not known yet",
            idempotency_key=dedupe_key[1] if dedupe_key is not None else None,
        )

    def outcome(self, dedupe_key: tuple[str, str]) -> Future[Any] | None:
        """The future of a write whose caller stopped waiting, if this process has it."""
        with self._late_lock:
            return self._late.get(dedupe_key)

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
            self._fill(batch, keys, carry)
            self._commit(batch, keys, carry)

    def _fill(
        self, batch: list[_Pending], keys: set[tuple[str, str]], carry: list[_Pending]
    ) -> list[_Pending]:
        """Add what is waiting (up to ``max_batch``) to ``batch``; return what was added.
        A second write with an idempotency key already in the batch waits at the head of
        ``carry`` for the next batch, and so does everything after it."""
        added: list[_Pending] = []
        while len(batch) < self._max_batch:
            try:
                nxt = carry.pop(0) if carry else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            if nxt.key is not None and nxt.key in keys:
                carry.insert(0, nxt)  # the same idempotency key waits for the next batch
                break
            if nxt.key is not None:
                keys.add(nxt.key)
            batch.append(nxt)
            added.append(nxt)
        return added

    def _commit(
        self, batch: list[_Pending], keys: set[tuple[str, str]], carry: list[_Pending]
    ) -> None:
        def more() -> list[BatchItem]:
            # Asked once the append lock is held: what arrived while the batch waited
            # for it (the other workers' transactions) joins it (issue #11).
            return [p.item for p in self._fill(batch, keys, carry)]

        try:
            results = append_batch(
                self._engine, [p.item for p in batch], log_signer=self._log_signer(),
                keyring=self._keyring, more=more,
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
        if self._observe is not None:
            self._observe(len(batch))
        for p, result in zip(batch, results, strict=True):
            if isinstance(result, LedgerError):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
