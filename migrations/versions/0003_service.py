"""Service tables: access log (append-only, hash-chained, checkpointed), revoked token
ids, idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("access_log", "access_checkpoints")


def upgrade() -> None:
    # Custodial ("server") or the user's own ("self") key: issue #4.
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("custody", sa.String(8), nullable=False, server_default="self"))
    op.create_table(
        "access_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "access_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "access_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
        sa.CheckConstraint("id = 1", name="access_state_single_row"),
    )
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(128), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_name", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for op_name in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        _sqlite_no_replace("access_log", ("seq",))
        _sqlite_no_replace("access_checkpoints", ("size",))


# SQLite's INSERT OR REPLACE deletes the row it replaces; recursive_triggers (set by the
# application) makes that fire the DELETE triggers, but any other client (the sqlite3
# shell, a script) would not set it. These guards refuse the conflicting INSERT itself.
def _sqlite_no_replace(table: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        cond = " AND ".join(f"{c} = NEW.{c}" for c in key.split(","))
        name = f"{table}_no_replace_{key.replace(',', '_')}"
        op.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {cond}) "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def downgrade() -> None:
    raise NotImplementedError("the signed log cannot be downgraded")
