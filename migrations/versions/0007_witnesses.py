"""Witnesses of the log and their cosignatures (issue #10).

``witnesses`` is the list the log sends each new checkpoint to (a local admin command
changes it). ``cosignatures`` keeps each witness's c2sp.org/tlog-cosignature line beside
the checkpoint it signs; it is append-only like the checkpoints (triggers), one line per
checkpoint and witness (primary key).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witnesses",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("vkey", sa.String(300), nullable=False, unique=True),
        sa.Column("added_at", sa.String(32), nullable=False),
        sa.CheckConstraint("url LIKE 'http://%' OR url LIKE 'https://%'", name="witnesses_url_http"),
    )
    op.create_table(
        "cosignatures",
        # No foreign key to checkpoints: on PostgreSQL it would change how a TRUNCATE of
        # checkpoints is refused (by the key, not the append-only trigger); checkpoints
        # are never deleted, and the feeder stores only cosignatures it verified over one.
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(200), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.CheckConstraint("timestamp > 0", name="cosignatures_timestamp_pos"),
        sa.CheckConstraint("size > 0", name="cosignatures_size_pos"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER cosignatures_append_only BEFORE UPDATE OR DELETE ON cosignatures "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )
        op.execute(
            "CREATE TRIGGER cosignatures_no_truncate BEFORE TRUNCATE ON cosignatures "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
        )
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER cosignatures_no_{op_name.lower()} BEFORE {op_name} ON cosignatures "
                "BEGIN SELECT RAISE(ABORT, 'cosignatures is append-only'); END"
            )
        op.execute(
            "CREATE TRIGGER cosignatures_no_replace BEFORE INSERT ON cosignatures "
            "WHEN EXISTS (SELECT 1 FROM cosignatures WHERE size = NEW.size AND witness = NEW.witness) "
            "BEGIN SELECT RAISE(ABORT, 'cosignatures is append-only'); END"
        )


def downgrade() -> None:
    raise NotImplementedError("the signed log cannot be downgraded")
