"""Shared pieces of the benchmark suite: configuration, scratch databases, ledgers,
timing and the result rows every section returns.

Every figure is a :class:`Row`: a measured value *and* a baseline measured in the same
run on the same machine, so the ratio (value / baseline) is what to compare between
machines and commits, not the absolute number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSPHRASE = b"bench-passphrase"
LOG_ID = "bench.local/ledger"
OPERATOR = "olga"
ADMIN = "admin"
ACCOUNT = "ACC"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENGINES = ("sqlite", "postgresql")


# -- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes of one run. ``quick`` shrinks everything so the suite runs in < 1 minute."""

    quick: bool
    append_batches: tuple[int, ...] = (1, 100, 1000)
    # entries appended per batch size (rounded up to whole batches)
    append_entries: dict[int, int] = field(default_factory=dict)
    verify_small: int = 20_000
    verify_large: int = 100_000
    verify_repeats: int = 1
    # log time the verify history spans; 0 = all at wall-clock time (one replay window)
    verify_spread_days: float = 10.0
    tree_size: int = 1_000_000
    proof_samples: int = 2000
    # wall-clock cap on the sampling loop per engine: a slow plan (a table scan per proof)
    # must not turn a 10-minute run into hours; at least PROOF_MIN_SAMPLES are taken
    proof_budget_s: float = 60.0
    # a measurement disturbed by other work on the machine is redone this many times
    # (after waiting up to noise_wait_s for quiet); 0 in quick runs, which must be short
    noise_retries: int = 2
    noise_wait_s: float = 45.0
    engines: tuple[str, ...] = ENGINES

    @classmethod
    def make(cls, *, quick: bool, engines: Sequence[str] = ENGINES) -> Config:
        if quick:
            return cls(
                quick=True,
                append_entries={1: 100, 100: 1000, 1000: 2000},
                verify_small=2_000,
                verify_large=10_000,
                tree_size=100_000,
                proof_samples=500,
                proof_budget_s=5.0,
                noise_retries=0,
                engines=tuple(engines),
            )
        return cls(
            quick=False,
            append_entries={1: 500, 100: 5000, 1000: 10_000},
            engines=tuple(engines),
        )


# -- result rows --------------------------------------------------------------------


@dataclass
class Row:
    """One figure and its same-run baseline. ``ratio`` is always value / baseline."""

    section: str
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    higher_is_better: bool = True
    target: str = ""
    met: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def fmt_num(x: float) -> str:
    if x != x:  # NaN
        return "nan"
    ax = abs(x)
    if ax >= 100_000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


# -- logging --------------------------------------------------------------------------


def quiet_logs() -> None:
    """The write path logs one event per append; a benchmark prints only its table."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=False,
    )


def progress(msg: str) -> None:
    """A benchmark's progress line, on stderr: stdout carries only its results."""
    print(msg, file=sys.stderr, flush=True)


# -- timing ---------------------------------------------------------------------------


class Stopwatch:
    """Accumulates wall time over several timed blocks."""

    def __init__(self) -> None:
        self.total = 0.0
        self.laps: list[float] = []

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.total += dt
            self.laps.append(dt)


class CpuMeter:
    """How busy the rest of the machine was while a section ran: machine-wide busy CPU
    (``/proc/stat``) minus this process's and its reaped children's CPU, per wall second.
    It includes the PostgreSQL server (which works for us in the database sections) and
    anything else running: a high figure means the section's numbers are noisy."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        # ``pids``: other processes working for us (our PostgreSQL backend), counted as own
        self._pids = tuple(pids)
        self._t0 = time.perf_counter()
        self._busy0 = self._machine_busy()
        self._own0 = self._own() + self._pids_cpu()

    @staticmethod
    def _machine_busy() -> float:
        try:
            with open("/proc/stat") as f:
                vals = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return float("nan")
        idle = vals[3] + vals[4]
        return (sum(vals) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def _pids_cpu(self) -> float:
        total = 0.0
        for pid in self._pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
        return total

    def other_cores(self) -> float:
        wall = time.perf_counter() - self._t0
        busy = self._machine_busy() - self._busy0
        own = self._own() + self._pids_cpu() - self._own0
        return max(0.0, busy - own) / wall if wall > 0 else float("nan")


def wait_quiet(max_wait: float, log: Callable[[str], None], threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until the rest of the machine uses less than
    ``threshold`` cores over a 2 s window; return the last such reading."""
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        meter = CpuMeter()
        time.sleep(2.0)
        busy = meter.other_cores()
        if busy < threshold or time.monotonic() > deadline:
            if said:
                log(f"   machine at {busy:.2f} other cores; starting")
            return busy
        if not said:
            log(f"   waiting for a quieter machine ({busy:.2f} other cores busy)...")
            said = True


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def time_each(fn: Callable[[Any], Any], args: Sequence[Any]) -> list[float]:
    """Seconds taken by ``fn(a)`` for each ``a``, in order."""
    out: list[float] = []
    pc = time.perf_counter
    for a in args:
        t0 = pc()
        fn(a)
        out.append(pc() - t0)
    return out


# -- scratch databases ---------------------------------------------------------------


def pg_available() -> str | None:
    try:
        eng = create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema; the schema is dropped afterwards."""
    schema = f"bench_{secrets.token_hex(6)}"
    admin = create_engine(PG_BASE)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def machine_speed() -> float:
    """Seconds a fixed pure-Python loop (10M additions) takes here and now: the figure to
    set absolute milliseconds against when two machines' results are compared (2026-11-29:
    0.64 to 1.46 s on the 2-core bench machine, which slowed and sped up within a session)."""
    t = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t


@contextlib.contextmanager
def scratch_dir(prefix: str = "ledger-bench-") -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def database_url(engine_name: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database of the given kind: a temp SQLite file or a PG schema."""
    if engine_name == "sqlite":
        path = workdir / f"ledger-{secrets.token_hex(4)}.db"
        yield f"sqlite:///{path}"
    elif engine_name == "postgresql":
        with pg_schema_url() as url:
            yield url
    else:
        raise ValueError(engine_name)


# -- ledgers ----------------------------------------------------------------------------


@dataclass
class BenchLedger:
    """An initialised ledger with one registered operator, ready for batch appends."""

    led: Any  # ledger.service.Ledger
    operator: Any  # Signer
    log_signer: Any  # Signer

    @property
    def engine(self) -> Any:
        return self.led.engine

    def dispose(self) -> None:
        self.led.engine.dispose()


BENCH_OWNER, BENCH_SITE = "BENCH-OWNER", "BENCH-SITE"


def register_operator(led: Any, user: str, *, admin: str = ADMIN, public_key: bytes | None = None) -> None:
    """An operator of one bench site: a key names only a site and an owner that exist,
    and an operator needs a site (issue #12), so the first call registers both."""
    from ledger.store.projections import read_table

    with led.engine.connect() as conn:
        known = BENCH_SITE in read_table(conn, "sites")
    if not known:
        led.act(admin, "owner.registered", code=BENCH_OWNER, name="Bench owner", country="JP")
        led.act(
            admin, "site.registered", code=BENCH_SITE, classification="RESTRICTED",
            custodian=BENCH_OWNER, owners=[BENCH_OWNER], location_commitment="ab" * 32,
        )
    led.register_key(
        admin=admin, user=user, roles=["operator"], sites=[BENCH_SITE], owners=[], clearance="NONE",
        public_key=public_key,
    )


def make_ledger(url: str, keydir: Path) -> BenchLedger:
    from keys import FileKeystore
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    led = Ledger(make_engine(url), FileKeystore(keydir, passphrase=PASSPHRASE))
    led.init(log_id=LOG_ID, admin=ADMIN)
    register_operator(led, OPERATOR)
    return BenchLedger(led=led, operator=led.signer_for(OPERATOR), log_signer=led.log_signer())


def new_bodies(n: int) -> list[dict[str, Any]]:
    from ledger.service import new_body

    return [new_body("test.movement", OPERATOR, account=ACCOUNT, delta=1) for _ in range(n)]


def presign(bodies: Sequence[dict[str, Any]], signer: Any) -> list[dict[str, Any]]:
    from ledger.entries import sign_body

    return [sign_body(b, [signer], log_id=LOG_ID) for b in bodies]


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
