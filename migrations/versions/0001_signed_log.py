"""The signed log: entries, tree nodes, checkpoints, log head, key registry.

Append-only is enforced by the database itself (DESIGN.md point 5): triggers refuse
UPDATE and DELETE (and TRUNCATE on PostgreSQL) on entries, tree_nodes and checkpoints,
and a BEFORE INSERT trigger refuses an entry whose seq is not the next one, so even a
writer that bypasses the application cannot fork or punch holes in the chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("entries", "tree_nodes", "checkpoints")


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("entry_id", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("seq >= 0", name="entries_seq_nonneg"),
    )
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("log_key", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("last_recorded_at", sa.String(32), nullable=False),
        sa.CheckConstraint("id = 1", name="log_state_single_row"),
    )
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.String(64), nullable=False, unique=True),
        sa.Column("user_name", sa.String(64), nullable=False, index=True),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("sites", sa.Text, nullable=False),
        sa.Column("owners", sa.Text, nullable=False),
        sa.Column("clearance", sa.String(16), nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
        sa.Column("revoked_seq", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "test_balances",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.CheckConstraint("balance >= 0", name="test_balances_nonneg"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for table in APPEND_ONLY:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER entries_in_order BEFORE INSERT ON entries "
        "WHEN NEW.seq <> (SELECT COALESCE(MAX(seq), -1) + 1 FROM entries) "
        "BEGIN SELECT RAISE(ABORT, 'entries must be appended in seq order'); END"
    )
    _sqlite_no_replace("entries", ("seq", "entry_id"))
    _sqlite_no_replace("tree_nodes", ("level,idx",))
    _sqlite_no_replace("checkpoints", ("size",))


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


def _postgres_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION ledger_entries_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.seq <> (SELECT COALESCE(MAX(seq), -1) + 1 FROM entries) THEN
                RAISE EXCEPTION 'entries must be appended in seq order'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
        )
    op.execute(
        "CREATE TRIGGER entries_in_order BEFORE INSERT ON entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_in_order()"
    )


def downgrade() -> None:
    # A ledger is never downgraded in place: export, then initialise a new one.
    raise NotImplementedError("the signed log cannot be downgraded")
