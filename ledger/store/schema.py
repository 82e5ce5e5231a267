"""Tables, as SQLAlchemy Core metadata. Alembic migrations own the DDL; keep in step.

Append-only tables (``entries``, ``tree_nodes``, ``checkpoints``) are guarded by database
triggers that refuse UPDATE, DELETE and TRUNCATE (DESIGN.md, point 5). Projections
(``keys``, ``test_balances``...) are mutable caches of a replay and can be rebuilt.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

APPEND_ONLY_TABLES = ("entries", "tree_nodes", "checkpoints")

entries = Table(
    "entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_id", String(32), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("author", String(64), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("leaf", LargeBinary, nullable=False),
    CheckConstraint("seq >= 0", name="entries_seq_nonneg"),
)

tree_nodes = Table(
    "tree_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("note", Text, nullable=False),
)

# One row: the head of the log. Appenders lock it (SELECT ... FOR UPDATE on PostgreSQL,
# BEGIN IMMEDIATE on SQLite) so appends are serialised and the chain cannot fork.
log_state = Table(
    "log_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("log_id", String(128), nullable=False),
    Column("log_key", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("last_recorded_at", String(32), nullable=False),
    CheckConstraint("id = 1", name="log_state_single_row"),
)

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("public_key", String(64), nullable=False, unique=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("roles", Text, nullable=False),
    Column("sites", Text, nullable=False),
    Column("owners", Text, nullable=False),
    Column("clearance", String(16), nullable=False),
    Column("registered_seq", BigInteger, nullable=False),
    Column("revoked_seq", BigInteger, nullable=True),
)

test_balances = Table(
    "test_balances",
    metadata,
    Column("account", String(64), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    CheckConstraint("balance >= 0", name="test_balances_nonneg"),
)
