"""A read replica on PostgreSQL's own streaming replication (issue #11): how far behind it
is, and waiting for it to catch up.

The service reads from the replica and writes to the primary; anything that must see
its own write (the write path, authentication and revocation, idempotency) reads the
primary. The lag is reported by ``/ready`` and ``/metrics`` so an operator (or a load
balancer) sees a replica that has fallen behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from ledger.errors import StorageError
from ledger.store.schema import checkpoints, log_state


@dataclass(frozen=True)
class LogHead:
    """The log's size and the time of its newest signed checkpoint."""

    size: int
    checkpoint_at: str | None


@dataclass(frozen=True)
class ReplicaStatus:
    in_recovery: bool  # False: the read URL is not a standby (or was promoted)
    lag_seconds: float  # 0 when everything received has been replayed
    lag_bytes: int  # WAL the primary has written that the replica has not replayed
    behind_entries: int  # entries on the primary not yet visible on the replica


def log_head(engine: Engine) -> LogHead:
    with engine.connect() as conn:
        size = conn.execute(select(log_state.c.size)).scalar()
        at = conn.execute(
            select(checkpoints.c.recorded_at).order_by(checkpoints.c.size.desc()).limit(1)
        ).scalar()
    return LogHead(size=int(size or 0), checkpoint_at=at)


_STANDBY = text(
    "SELECT pg_is_in_recovery() AS rec, pg_last_wal_replay_lsn()::text AS replay, "
    "CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) "
    "END AS lag"
)


def replica_status(primary: Engine, replica: Engine) -> ReplicaStatus:
    """The replica's lag, measured on both servers; StorageError if either is down."""
    try:
        with replica.connect() as rconn:
            row = rconn.execute(_STANDBY).one()
            rsize = rconn.execute(select(log_state.c.size)).scalar()
        with primary.connect() as pconn:
            lag_bytes = 0
            if row.rec and row.replay is not None:
                lag_bytes = pconn.execute(
                    text("SELECT GREATEST(pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:r AS pg_lsn)), 0)"),
                    {"r": row.replay},
                ).scalar_one()
            psize = pconn.execute(select(log_state.c.size)).scalar()
    except DBAPIError as exc:
        raise StorageError("the read replica or the primary did not answer") from exc
    return ReplicaStatus(
        in_recovery=bool(row.rec),
        lag_seconds=max(float(row.lag or 0), 0.0),
        lag_bytes=int(lag_bytes),
        behind_entries=max(int(psize or 0) - int(rsize or 0), 0),
    )


def wait_for_replay(primary: Engine, replica: Engine, *, timeout: float = 30.0) -> None:
    """Block until the replica has replayed everything the primary had written when
    called (its WAL position at that moment); StorageError after ``timeout``."""
    with primary.connect() as pconn:
        target = pconn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
    deadline = time.monotonic() + timeout
    while True:
        with replica.connect() as rconn:
            done = rconn.execute(
                text(
                    "SELECT NOT pg_is_in_recovery() OR "
                    "pg_wal_lsn_diff(pg_last_wal_replay_lsn(), CAST(:t AS pg_lsn)) >= 0"
                ),
                {"t": target},
            ).scalar_one()
        if done:
            return
        if time.monotonic() > deadline:
            raise StorageError("the read replica did not catch up in time")
        time.sleep(0.05)
