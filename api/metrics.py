"""Prometheus metrics (issue #11), multi-process safe.

Counters and histograms are prometheus-client's; with several workers ``reserve serve``
sets ``PROMETHEUS_MULTIPROC_DIR`` (emptied at start) before any worker imports this
module, and a scrape sums every worker's files. Values that belong to the database, not
to a process (log size, age of the last checkpoint, replica lag), are read at scrape
time, so every worker answers the same.

Labels are closed sets chosen by the code: entry kinds the schema accepts, rule names,
route templates (``/sites/{code}``, never a raw path, id or code), methods and status
codes. Never a user, a site, a token or a location.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from ledger.store.replica import log_head, replica_status
from ledger.timefmt import parse_time

if TYPE_CHECKING:
    from api.services import Services

CONTENT_TYPE = CONTENT_TYPE_LATEST

APPENDS = Counter("reserve_appends", "Entries appended through this service, by kind", ["kind"])
REFUSALS = Counter("reserve_refusals", "Entries refused by the rules, by rule", ["rule"])
REVEALS = Counter("reserve_location_reveals", "Site location openings granted")
REQUESTS = Histogram(
    "reserve_http_request_duration_seconds",
    "Request latency by route template, method and status",
    ["route", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
GROUP_SIZE = Histogram(
    "reserve_group_commit_size",
    "Entries per group-commit transaction (one checkpoint each)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route=route, method=method, status=str(status)).observe(seconds)


def observe_group(size: int) -> None:
    GROUP_SIZE.observe(size)


class _DatabaseCollector(Collector):
    """Gauges read from the database at scrape time (the same in every worker)."""

    def __init__(self, svc: Services):
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        svc = self._svc
        head = log_head(svc.primary_engine)
        yield GaugeMetricFamily("reserve_log_size", "Entries in the signed log", value=head.size)
        if head.checkpoint_at is not None:
            age = time.time() - parse_time(head.checkpoint_at).timestamp()
            yield GaugeMetricFamily(
                "reserve_checkpoint_age_seconds",
                "Seconds since the newest signed checkpoint",
                value=max(age, 0.0),
            )
        if svc.has_replica:
            st = replica_status(svc.primary_engine, svc.reader)
            yield GaugeMetricFamily(
                "reserve_replica_lag_seconds", "Replay lag of the read replica", value=st.lag_seconds
            )
            yield GaugeMetricFamily(
                "reserve_replica_lag_bytes", "WAL not yet replayed by the read replica", value=st.lag_bytes
            )
            yield GaugeMetricFamily(
                "reserve_replica_behind_entries",
                "Entries on the primary not yet visible on the replica",
                value=st.behind_entries,
            )


def render(svc: Services) -> bytes:
    """The exposition text: this process's (or all workers') metrics and the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        procs = CollectorRegistry()
        MultiProcessCollector(procs)  # type: ignore[no-untyped-call]
        text = generate_latest(procs)
    else:
        text = generate_latest(REGISTRY)
    db = CollectorRegistry(auto_describe=False)
    db.register(_DatabaseCollector(svc))
    return text + generate_latest(db)
