"""Release authorisation (issue #5): policies, latest prices, open release requests and
ministerial orders.

Projections like the stock tables (rebuilt from the log, compared by the verifier); their
invariants are constraints too: an order's cap within what was requested, its remaining
cap within [0, cap], a quorum of at least one, a validity window that ends after it
starts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), primary_key=True),
        sa.Column("versions", sa.Text, nullable=False),
    )
    op.create_table(
        "prices",
        sa.Column("price_index", sa.String(64), primary_key=True),
        sa.Column("material", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("value", sa.String(32), nullable=False),
        sa.Column("observed_at", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "release_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("lapses_at", sa.String(32), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("requester_key", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("regime", sa.String(24), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("evidence_type", sa.String(24), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("evidence_detail", sa.Text, nullable=False),
        sa.Column("approvals", sa.Text, nullable=False),
        sa.CheckConstraint("quantity > 0", name="release_requests_quantity_pos"),
        sa.CheckConstraint(
            "regime IN ('emergency_release', 'price_spike_sale', 'ordinary_sale', 'loan')",
            name="release_requests_regime",
        ),
    )
    op.create_index("ix_release_requests_owner", "release_requests", ["owner"])
    op.create_table(
        "release_orders",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("minister", sa.String(64), nullable=False),
        sa.Column("minister_key", sa.String(64), nullable=False),
        sa.Column("request", sa.String(32), nullable=False, unique=True),
        sa.Column("requested_at", sa.String(32), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("regime", sa.String(24), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("quantity_requested", sa.BigInteger, nullable=False),
        sa.Column("evidence_type", sa.String(24), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("evidence_detail", sa.Text, nullable=False),
        sa.Column("approvals", sa.Text, nullable=False),
        sa.Column("quorum", sa.Integer, nullable=False),
        sa.Column("policy_seq", sa.BigInteger, nullable=False),
        sa.Column("cap", sa.BigInteger, nullable=False),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("valid_from", sa.String(32), nullable=False),
        sa.Column("valid_until", sa.String(32), nullable=False),
        sa.Column("sites", sa.Text, nullable=False),
        sa.Column("report_to", sa.String(200), nullable=False),
        sa.Column("executions", sa.Text, nullable=False),
        sa.Column("revoked_seq", sa.BigInteger, nullable=True),
        sa.Column("revoked_at", sa.String(32), nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.Column("revoke_reason", sa.Text, nullable=True),
        sa.CheckConstraint("cap > 0 AND cap <= quantity_requested", name="release_orders_cap"),
        sa.CheckConstraint("remaining >= 0 AND remaining <= cap", name="release_orders_remaining"),
        sa.CheckConstraint("quorum >= 1", name="release_orders_quorum"),
        sa.CheckConstraint("valid_from < valid_until", name="release_orders_window"),
    )
    op.create_index("ix_release_orders_owner", "release_orders", ["owner"])


def downgrade() -> None:
    raise NotImplementedError("the signed log cannot be downgraded")
