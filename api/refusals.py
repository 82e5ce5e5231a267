"""Refused requests go to the access log in batches, with a budget per client (issue #8
item 9).

Writing each 401/403/404 as it happens costs a transaction and a signed checkpoint per
bad request (on SQLite under the global write lock), so anyone without an account could
slow every valid write. Here a refusal event is buffered and a background thread writes
the buffer in one transaction under one checkpoint (:func:`ledger.store.access.record_many`)
every :attr:`RefusalLimits.flush_seconds`, or sooner when :attr:`RefusalLimits.batch_size`
events wait; :meth:`RefusalRecorder.close` writes what is left at shutdown.

Each client address has a budget of :attr:`RefusalLimits.per_client` events per
:attr:`RefusalLimits.window_seconds`. Beyond it refusals are counted, not written, and
when the window ends one ``refused-summary`` event says how many were left out, so the
log still shows the flood and who sent it (by keyed hash) at a bounded cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ledger.errors import LedgerError
from ledger.timefmt import now

log = structlog.get_logger("api")


@dataclass(frozen=True)
class RefusalLimits:
    batch_size: int = 256  # write when this many events wait
    flush_seconds: float = 1.0  # and at least this often
    per_client: int = 30  # events written per client address per window
    window_seconds: float = 60.0
    max_clients: int = 10_000  # budgets kept; beyond, all windows end early (memory bound)


@dataclass
class _Budget:
    client_hmac: str
    started: float
    started_at: str
    used: int = 0
    suppressed: int = 0


class RefusalRecorder:
    """Buffers refusal events and writes them in batches (see the module docstring)."""

    def __init__(
        self,
        write: Callable[[Sequence[dict[str, Any]]], object],
        limits: RefusalLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ):
        self._write = write
        self.limits = limits or RefusalLimits()
        self._clock = clock
        self._lock = threading.Lock()  # buffer and budgets
        self._write_lock = threading.Lock()  # one batch at a time, in order
        self._buffer: list[dict[str, Any]] = []
        self._budgets: dict[str, _Budget] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.suppressed_total = 0
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="refusal-log", daemon=True)
            self._thread.start()

    def add(self, client: str, client_hmac: str, event: dict[str, Any]) -> None:
        """Queue one refusal of ``client`` (an address, kept in memory only)."""
        t = self._clock()
        with self._lock:
            budget = self._budgets.get(client)
            if budget is None or t - budget.started >= self.limits.window_seconds:
                if budget is not None:
                    self._end_window(budget)
                elif len(self._budgets) >= self.limits.max_clients:
                    for b in self._budgets.values():
                        self._end_window(b)
                    self._budgets.clear()
                budget = _Budget(client_hmac=client_hmac, started=t, started_at=now())
                self._budgets[client] = budget
            if budget.used < self.limits.per_client:
                budget.used += 1
                self._buffer.append(event)
            else:
                budget.suppressed += 1
                self.suppressed_total += 1
            full = len(self._buffer) >= self.limits.batch_size
        if full:
            self._wake.set()

    def _end_window(self, b: _Budget) -> None:
        """Called with the lock held: the summary of a window that left events out."""
        if b.suppressed:
            self._buffer.append(
                {
                    "actor": "anonymous",
                    "action": "refused-summary",
                    "outcome": "rate-limited",
                    "client_hmac": b.client_hmac,
                    "suppressed": b.suppressed,
                    "window_start": b.started_at,
                    "window_seconds": self.limits.window_seconds,
                }
            )

    def flush(self, *, end_windows: bool = False) -> int:
        """Write what is buffered now (and the summaries of ended windows, or of every
        window with ``end_windows``); returns how many events were written."""
        with self._write_lock:
            t = self._clock()
            with self._lock:
                for client, b in list(self._budgets.items()):
                    if end_windows or t - b.started >= self.limits.window_seconds:
                        self._end_window(b)
                        del self._budgets[client]
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                self._write(batch)
            except LedgerError:
                # The refusals still stand; say (without their contents) that they are
                # missing from the access log.
                log.error("refusals_not_recorded", count=len(batch))
                return 0
            return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.limits.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # the thread must outlive any one failure
                log.error("refusal_flush_failed", error_class=type(exc).__name__)

    def close(self) -> None:
        """Stop the thread and write everything, summaries included (at shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush(end_windows=True)
