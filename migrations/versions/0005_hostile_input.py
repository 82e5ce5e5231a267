"""Hostile input (issue #8): when movements happened, and the largest balance kept.

* ``transfers.dispatched_at`` and ``movements.occurred_at``: the reducer refuses an
  arrival dated before its dispatch and a reversal dated before what it reverses, so the
  projections keep those times (backfilled from the signed leaves).
* Every balance stays within +-(2^53 - 1) g (``ledger.rules.common.MAX_BALANCE``): the
  reducer refuses a movement beyond it ("holding-limit"); the database refuses it too, so
  a bug can never store a value that cannot be counted, reversed and reported exactly.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LIMIT = 2**53 - 1
BOUNDED = (("balances", "quantity"), ("postings", "balance_after"), ("test_balances", "balance"))


def upgrade() -> None:
    op.add_column("transfers", sa.Column("dispatched_at", sa.String(32), nullable=True))
    op.add_column("movements", sa.Column("occurred_at", sa.String(32), nullable=True))
    pg = op.get_bind().dialect.name == "postgresql"
    occurred = (
        "(convert_from(e.leaf, 'UTF8')::jsonb -> 'entry' ->> 'occurred_at')"
        if pg
        else "json_extract(CAST(e.leaf AS TEXT), '$.entry.occurred_at')"
    )
    op.execute(
        f"UPDATE transfers SET dispatched_at = (SELECT {occurred} FROM entries e "
        "WHERE e.entry_id = transfers.id)"
    )
    op.execute(
        f"UPDATE movements SET occurred_at = (SELECT {occurred} FROM entries e "
        "WHERE e.entry_id = movements.entry_id)"
    )
    for table, column in BOUNDED:
        if pg:
            op.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_limit "
                f"CHECK ({column} BETWEEN -{LIMIT} AND {LIMIT})"
            )
        else:  # SQLite cannot add a CHECK to an existing table: a trigger does the same
            for when in ("INSERT", "UPDATE"):
                op.execute(
                    f"CREATE TRIGGER {table}_{column}_limit_{when.lower()} BEFORE {when} ON {table} "
                    f"WHEN NEW.{column} NOT BETWEEN -{LIMIT} AND {LIMIT} "
                    f"BEGIN SELECT RAISE(ABORT, '{table}.{column} beyond the balance limit'); END"
                )


def downgrade() -> None:
    raise NotImplementedError("the signed log cannot be downgraded")
