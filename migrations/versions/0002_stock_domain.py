"""Stock domain: reference data, balances, transfers, loans, movements, postings, sealed
site locations.

``postings`` and ``site_locations`` are append-only like the log (triggers on both
engines). Projections carry their invariants as constraints too: a holding account
(``H/...``) never below zero, a loan"s outstanding quantity within (0, quantity].

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("postings", "site_locations")


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "materials",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("form", sa.String(16), nullable=False),
        sa.Column("base_unit", sa.String(8), nullable=False),
        sa.Column("grade_basis", sa.String(200), nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "lots",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(2), nullable=False),
        sa.Column("supplier", sa.String(200), nullable=False),
        sa.Column("purity", sa.String(12), nullable=False),
        sa.Column("basis", sa.String(200), nullable=False),
        sa.Column("certificate_sha256", sa.String(64), nullable=False),
        sa.Column("containers", sa.Text, nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lots_material", "lots", ["material"])
    op.create_table(
        "sites",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("owners", sa.Text, nullable=False),
        sa.Column("location_commitment", sa.String(64), nullable=False),
        sa.Column("registered_seq", sa.BigInteger, nullable=False),
        sa.Column("commitment_seq", sa.BigInteger, nullable=False),
        sa.Column("last_count_at", sa.String(32), nullable=True),
    )
    op.create_table(
        "targets",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), primary_key=True),
        sa.Column("days_of_cover", sa.Integer, nullable=False),
        sa.Column("annual_quantity", sa.BigInteger, nullable=False),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("valid_from", sa.String(32), nullable=False),
        sa.Column("valid_to", sa.String(32), nullable=False),
        sa.Column("set_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "balances",
        sa.Column("account", sa.String(300), primary_key=True),
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "account NOT LIKE 'H/%' OR quantity >= 0", name="balances_holding_nonneg"
        ),
    )
    op.create_index("ix_balances_material", "balances", ["material"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(64), nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("from_site", sa.String(64), nullable=False),
        sa.Column("to_site", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("dispatched_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "loans",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(64), nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("borrower", sa.String(200), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("outstanding", sa.BigInteger, nullable=False),
        sa.Column("due_at", sa.String(32), nullable=False),
        sa.Column("premium_pct", sa.String(12), nullable=False),
        sa.Column("lent_seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "outstanding > 0 AND outstanding <= quantity", name="loans_outstanding_range"
        ),
    )
    op.create_table(
        "movements",
        sa.Column("entry_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("postings", sa.Text, nullable=False),
        sa.Column("reversed_by", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "postings",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("n", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("account", sa.String(300), nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(64), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
    )
    op.create_index("postings_account_lot_seq", "postings", ["account", "lot", "seq"])
    op.create_index("postings_lot_seq", "postings", ["lot", "seq"])
    op.create_table(
        "site_locations",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("commitment", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(12), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
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
        _sqlite_no_replace("postings", ("seq,n",))
        _sqlite_no_replace("site_locations", ("site,version",))


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
