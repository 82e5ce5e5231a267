"""Every person signs with their own key (issue #9): the v1 signature ratchet and the
demo mark of the log head, login nonces, co-signature proposals.

* ``log_state.entry_sig_version``: 1 while the log still accepts entry signatures that do
  not cover the log id (logs written before v2), 2 from its first v2 entry on.
* ``log_state.demo``: the genesis marks a demo ledger (``reserve demo``).
* ``auth_nonces``: login challenges, single use, in the database so that any worker
  process can consume a nonce another issued (consumed by one conditional UPDATE).
* ``proposals`` / ``proposal_signatures``: entries waiting for co-signatures; never part
  of the log until complete. A signer signs a proposal once, and a key signs it once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATUSES = "('open', 'appended', 'refused', 'withdrawn')"


def upgrade() -> None:
    op.add_column(
        "log_state",
        sa.Column("entry_sig_version", sa.SmallInteger, nullable=False, server_default="1"),
    )
    op.add_column(
        "log_state", sa.Column("demo", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_table(
        "auth_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("subject_user", sa.String(64), nullable=True),
        sa.Column("subject_key", sa.String(64), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False, index=True),
        sa.Column("used_at", sa.String(32), nullable=True),
        sa.CheckConstraint("created_at < expires_at", name="auth_nonces_window"),
    )
    op.create_table(
        "proposals",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("entry_id", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("proposer", sa.String(64), nullable=False, index=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("cosigners", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("closed_at", sa.String(32), nullable=True),
        sa.Column("outcome_seq", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.CheckConstraint(f"status IN {STATUSES}", name="proposals_status"),
        sa.CheckConstraint(
            "(status = 'appended') = (outcome_seq IS NOT NULL)", name="proposals_outcome_seq"
        ),
        sa.CheckConstraint(
            "(status = 'open') = (closed_at IS NULL)", name="proposals_closed_at"
        ),
        sa.CheckConstraint("created_at < expires_at", name="proposals_window"),
    )
    op.create_table(
        "proposal_signatures",
        sa.Column(
            "proposal_id", sa.String(32), sa.ForeignKey("proposals.id"), primary_key=True
        ),
        sa.Column("user_name", sa.String(64), primary_key=True),
        sa.Column("position", sa.SmallInteger, nullable=False),
        sa.Column("pub", sa.String(64), nullable=False),
        sa.Column("sig", sa.String(88), nullable=False),
        sa.Column("signed_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("proposal_id", "pub", name="proposal_signatures_one_per_key"),
        sa.UniqueConstraint("proposal_id", "position", name="proposal_signatures_position"),
        sa.CheckConstraint("position >= 0", name="proposal_signatures_position_nonneg"),
    )


def downgrade() -> None:
    op.drop_table("proposal_signatures")
    op.drop_table("proposals")
    op.drop_table("auth_nonces")
    with op.batch_alter_table("log_state") as batch:
        batch.drop_column("demo")
        batch.drop_column("entry_sig_version")
