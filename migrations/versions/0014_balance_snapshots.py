"""Fast history reads (issue #12): balance snapshots every N postings, a postings
counter on the log head, and each posting's entry kind and log time (a lot trace then
reads its own legs, with no join per leg).

Existing postings get their entry's kind and time, and the snapshots the append path
would have taken are built from them, so the verifier finds every snapshot where the
rule puts it (``ledger.store.snapshots``).

Revision ID: 0014
Revises: 0012
Create Date: 2026-11-29
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

APPEND_ONLY = ("balance_snapshots", "balance_snapshot_rows")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("log_state", recreate="never") as batch:
        batch.add_column(sa.Column("postings", sa.BigInteger, nullable=False, server_default="0"))
    if pg:
        op.create_check_constraint("log_state_postings_nonneg", "log_state", "postings >= 0")
    op.create_table(
        "balance_snapshots",
        sa.Column(
            "seq", sa.BigInteger, sa.ForeignKey("entries.seq"), primary_key=True,
            autoincrement=False,
        ),
        sa.Column("postings", sa.BigInteger, nullable=False),
        sa.CheckConstraint("postings > 0", name="balance_snapshots_postings_pos"),
    )
    op.create_table(
        "balance_snapshot_rows",
        sa.Column(
            "seq", sa.BigInteger, sa.ForeignKey("balance_snapshots.seq"), primary_key=True,
            autoincrement=False,
        ),
        sa.Column("account", sa.String(300), primary_key=True),
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity <> 0", name="balance_snapshot_rows_nonzero"),
        sa.CheckConstraint(
            "account NOT LIKE 'H/%' OR quantity > 0", name="balance_snapshot_rows_holding_pos"
        ),
    )
    _add_posting_columns(pg)
    # A trace reads one index range; on PostgreSQL an index-only one. As-of reads no
    # longer seek (account, lot, seq): the index goes, and its cost on every append.
    op.drop_index("postings_account_lot_seq", table_name="postings")
    op.drop_index("postings_lot_seq", table_name="postings")
    op.create_index(
        "postings_lot_trace",
        "postings",
        ["lot", "seq", "n"],
        postgresql_include=["account", "delta", "balance_after", "kind", "recorded_at"],
    )
    _backfill_snapshots()
    _append_only(pg)


def _add_posting_columns(pg: bool) -> None:
    """kind and recorded_at, copied from each posting's entry. postings is append-only:
    its guard is lifted for this one UPDATE, inside the migration's transaction."""
    if pg:
        op.add_column("postings", sa.Column("kind", sa.String(40), nullable=True))
        op.add_column("postings", sa.Column("recorded_at", sa.String(32), nullable=True))
        op.execute("ALTER TABLE postings DISABLE TRIGGER postings_append_only")
        op.execute(
            "UPDATE postings SET kind = e.kind, recorded_at = e.recorded_at "
            "FROM entries e WHERE e.seq = postings.seq"
        )
        op.execute("ALTER TABLE postings ENABLE TRIGGER postings_append_only")
        op.alter_column("postings", "kind", nullable=False)
        op.alter_column("postings", "recorded_at", nullable=False)
        return
    # SQLite: ADD COLUMN NOT NULL needs a default; every existing row is then filled.
    op.execute("ALTER TABLE postings ADD COLUMN kind VARCHAR(40) NOT NULL DEFAULT ''")
    op.execute("ALTER TABLE postings ADD COLUMN recorded_at VARCHAR(32) NOT NULL DEFAULT ''")
    op.execute("DROP TRIGGER postings_no_update")
    op.execute(
        "UPDATE postings SET kind = (SELECT kind FROM entries e WHERE e.seq = postings.seq), "
        "recorded_at = (SELECT recorded_at FROM entries e WHERE e.seq = postings.seq)"
    )
    op.execute(
        "CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings "
        "BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END"
    )


def _backfill_snapshots() -> None:
    """Replay the stored postings in log order; after the entry holding every
    SNAPSHOT_EVERY-th posting, store the non-zero balances; finally the counter. The
    interval is the application's (as env.py takes its schema): a later change of it
    needs a migration that rebuilds the snapshots."""
    from ledger.store.snapshots import SNAPSHOT_EVERY

    conn = op.get_bind()
    balances: dict[tuple[str, str], tuple[str, int]] = {}
    count = 0
    pending: int | None = None  # the entry whose postings reached a multiple of N
    after = (-1, -1)
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT seq, n, account, lot, material, balance_after FROM postings "
                "WHERE seq > :s OR (seq = :s AND n > :n) ORDER BY seq, n LIMIT 20000"
            ),
            {"s": after[0], "n": after[1]},
        ).all()
        if not rows:
            break
        for r in rows:
            if pending is not None and r.seq != pending:
                _store(conn, pending, count, balances)
                pending = None
            balances[(r.account, r.lot)] = (r.material, int(r.balance_after))
            count += 1
            if count % SNAPSHOT_EVERY == 0:
                pending = int(r.seq)
        after = (int(rows[-1].seq), int(rows[-1].n))
    if pending is not None:
        _store(conn, pending, count, balances)
    conn.execute(sa.text("UPDATE log_state SET postings = :c"), {"c": count})


def _store(
    conn: Any, seq: int, postings: int, balances: dict[tuple[str, str], tuple[str, int]]
) -> None:
    conn.execute(
        sa.text("INSERT INTO balance_snapshots (seq, postings) VALUES (:s, :p)"),
        {"s": seq, "p": postings},
    )
    rows = [
        {"s": seq, "a": a, "l": lot, "m": m, "q": q}
        for (a, lot), (m, q) in sorted(balances.items())
        if q != 0
    ]
    if rows:
        conn.execute(
            sa.text(
                "INSERT INTO balance_snapshot_rows (seq, account, lot, material, quantity) "
                "VALUES (:s, :a, :l, :m, :q)"
            ),
            rows,
        )


def _append_only(pg: bool) -> None:
    for table in APPEND_ONLY:
        if pg:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
            )
            continue
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    if not pg:
        # INSERT OR REPLACE would delete the row it replaces (see migration 0002).
        for table, key in (("balance_snapshots", ("seq",)), ("balance_snapshot_rows", ("seq", "account", "lot"))):
            cond = " AND ".join(f"{c} = NEW.{c}" for c in key)
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {cond}) "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index("postings_lot_trace", table_name="postings")
    op.create_index("postings_lot_seq", "postings", ["lot", "seq"])
    op.create_index("postings_account_lot_seq", "postings", ["account", "lot", "seq"])
    op.drop_table("balance_snapshot_rows")
    op.drop_table("balance_snapshots")
    if pg:
        op.drop_constraint("log_state_postings_nonneg", "log_state")
    # SQLite >= 3.35 drops a column in place (no table rebuild, so postings keeps its
    # append-only triggers).
    op.execute("ALTER TABLE log_state DROP COLUMN postings")
    op.execute("ALTER TABLE postings DROP COLUMN kind")
    op.execute("ALTER TABLE postings DROP COLUMN recorded_at")
