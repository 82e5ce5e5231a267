"""The seed's release rule (issue #12): a release request and its order keep the
recipient's exhaustion declaration beside the trigger (crisis price or override).

Revision ID: 0012
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("release_requests", "release_orders")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("declaration", sa.String(64), nullable=False, server_default="")
            )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("declaration")
