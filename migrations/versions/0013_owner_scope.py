"""Owner-scoped audit (issue #14): owner commitments of v2 leaves, per-owner secrets.

``owner_commitments`` holds the commitment ``C`` of each v2 leaf beside ``entries`` (the
leaf hash binds it, ``ledger.owner_scope``); ``owner_keys`` every epoch of every owner's
scoped-audit secret; ``owner_scope`` the one row saying from which seq the log writes v2
leaves. All three are append-only, like the log: a rotation adds an epoch, never edits.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("owner_scope", "owner_keys", "owner_commitments")


def upgrade() -> None:
    op.create_table(
        "owner_scope",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="owner_scope_single_row"),
        sa.CheckConstraint("from_seq >= 0", name="owner_scope_from_seq_nonneg"),
    )
    op.create_table(
        "owner_keys",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("secret", sa.LargeBinary(32), nullable=False),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("epoch >= 1", name="owner_keys_epoch_positive"),
        sa.CheckConstraint("length(secret) = 32", name="owner_keys_secret_32"),
    )
    op.create_table(
        "owner_commitments",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("commitment", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("seq >= 0", name="owner_commitments_seq_nonneg"),
        # salt (16) + at least 4 tags of 16 bytes (ledger.owner_scope.parse_commitment)
        sa.CheckConstraint("length(commitment) >= 80", name="owner_commitments_shape"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
            )
    else:
        for table in TABLES:
            for op_name in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
