"""What the verifier saw pass, gathered for the verification report (issue #10).

:class:`Collector` is a :class:`ledger.verify.VerifyObserver`: ``verify_history`` tells it
each entry it accepted (with the reducer's changes) and each checkpoint it checked. It
keeps counts and the few series the report plots, never the history: memory is bounded
by the number of keys, rules, (owner, material) pairs and orders, plus at most
:data:`MAX_POINTS` plotted points per pair and :data:`MAX_EVENTS` listed losses.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ledger.records import GAIN, LOSS, TargetRec, is_holding, split_holding
from ledger.reducer import rule_name
from ledger.state import Change, Post, Put, State
from ledger.timefmt import parse_time

MAX_POINTS = 2000  # per (owner, material) series; halved by decimation when reached
MAX_EVENTS = 1000  # losses and count differences listed one by one (all are counted)

# What the reducer checks for every entry, whatever its kind (ledger/reducer.py apply).
COMMON_RULES = (
    ("clock", "not dated more than 5 minutes after the log recorded it"),
    ("stale-entry", "appended within 24 hours of being signed"),
    ("replay", "its id was not used before"),
    ("signers", "every signing key registered before, not revoked, the first the author's"),
)


def kind_of(body: Any) -> str:
    """The entry's ``kind`` tag (msgspec tagged union)."""
    return str(type(body).__struct_config__.tag)


@dataclass
class Series:
    """Held quantity of one (owner, material) over log time: (seq, recorded_at, grams),
    one point per entry that changed it; thinned to every other point (the newest always
    kept) when it reaches :data:`MAX_POINTS`, so a long history plots in bounded memory."""

    points: list[tuple[int, str, int]] = field(default_factory=list)

    def add(self, seq: int, at: str, value: int) -> None:
        self.points.append((seq, at, value))
        if len(self.points) >= MAX_POINTS:
            last = self.points[-1]
            self.points = self.points[::2]
            if self.points[-1] != last:
                self.points.append(last)


@dataclass
class Collector:
    """Counts and series of a verification, filled as it goes."""

    entries: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    kinds_of_rule: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    signatures: int = 0
    sigs_by_key: Counter[str] = field(default_factory=Counter)  # pub hex -> count
    first_at: str = ""
    last_at: str = ""
    checkpoints: int = 0
    last_checkpoint: int = 0
    cosignatures: Counter[str] = field(default_factory=Counter)  # signer name -> notes
    held: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    targets: dict[tuple[str, str], list[TargetRec]] = field(default_factory=lambda: defaultdict(list))
    losses: list[dict[str, Any]] = field(default_factory=list)
    loss_totals: Counter[tuple[str, str]] = field(default_factory=Counter)  # (account, material)
    loss_events: int = 0
    state: State | None = None
    log_id: str = ""

    # -- VerifyObserver -----------------------------------------------------------------
    def entry(self, seq: int, leaf: Any, changes: list[Change], state: State) -> None:
        body = leaf.entry
        kind = kind_of(body)
        self.state = state
        self.entries += 1
        self.by_kind[kind] += 1
        rule = rule_name(body)
        self.by_rule[rule] += 1
        self.kinds_of_rule[rule].add(kind)
        self.signatures += len(leaf.sigs)
        for s in leaf.sigs:
            self.sigs_by_key[s.pub] += 1
        at = leaf.recorded_at
        if not self.first_at:
            self.first_at = at
            info = state.log_info()
            self.log_id = info.log_id if info is not None else ""
        self.last_at = at
        touched: set[tuple[str, str]] = set()
        for ch in changes:
            if isinstance(ch, Post):
                p = ch.posting
                if is_holding(p.account):
                    owner, _site = split_holding(p.account)
                    pair = (owner, p.material)
                    self.held[pair] += p.delta
                    touched.add(pair)
                elif p.account in (LOSS, GAIN):
                    self._loss(seq, at, kind, p.account, p.material, p.lot, p.delta, changes)
            elif isinstance(ch, Put) and ch.table == "targets" and isinstance(ch.value, TargetRec):
                self.targets[(ch.value.owner, ch.value.material)].append(ch.value)
        for pair in sorted(touched):
            s = self.series.get(pair)
            if s is None:
                s = self.series[pair] = Series()
            s.add(seq, at, self.held[pair])

    def checkpoint(self, size: int, note: str) -> None:
        self.checkpoints += 1
        self.last_checkpoint = size
        for name in _note_signers(note):
            if name != self.log_id:
                self.cosignatures[name] += 1

    # -- helpers --------------------------------------------------------------------------
    def _loss(
        self,
        seq: int,
        at: str,
        kind: str,
        account: str,
        material: str,
        lot: str,
        delta: int,
        changes: list[Change],
    ) -> None:
        # The holding on the other side of the leg: where the loss or gain happened.
        where = next(
            (
                ch.posting.account
                for ch in changes
                if isinstance(ch, Post)
                and is_holding(ch.posting.account)
                and ch.posting.lot == lot
            ),
            "",
        )
        self.loss_events += 1
        self.loss_totals[(account, material)] += delta
        if len(self.losses) < MAX_EVENTS:
            owner, site = split_holding(where) if where else ("", "")
            self.losses.append(
                {
                    "seq": seq,
                    "recorded_at": at,
                    "kind": kind,
                    "account": account,
                    "owner": owner,
                    "site": site,
                    "material": material,
                    "lot": lot,
                    # Quantity into V/loss is a loss; into V/gain a count found more.
                    "quantity": delta if account == LOSS else -delta,
                }
            )


def _note_signers(note: str) -> list[str]:
    """Names on the signature lines of a signed note (C2SP signed-note: '— name b64')."""
    _, _, sigs = note.partition("\n\n")
    return [line.split(" ")[1] for line in sigs.splitlines() if line.startswith("\u2014 ")]


def seconds(at: str) -> float:
    return parse_time(at).timestamp()
