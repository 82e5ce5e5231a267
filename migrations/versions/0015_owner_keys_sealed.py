"""Owners' scoped-audit secrets stored sealed (issue #14 follow-up).

``owner_keys`` gains ``nonce`` and ``sealed`` (AES-256-GCM under the keystore's sealing
key, bound to the row's owner and epoch: ``ledger.store.owner_scope.OwnerKeyring``) and
``secret`` becomes nullable: exactly one of the clear secret and the sealed one is set.
A migration cannot seal (it holds no keystore), so rows written before it keep the clear
secret until ``reserve owner-scope seal`` seals them; for that the append-only triggers
now allow one UPDATE, clear to sealed with the row's identity unchanged, and nothing
else. DELETE and TRUNCATE stay refused.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CHECK = "(secret IS NULL) <> (sealed IS NULL) AND (nonce IS NULL) = (sealed IS NULL)"
# The one update allowed: a clear row becomes a sealed one, nothing else changes.
SEALING = (
    "OLD.secret IS NOT NULL AND NEW.secret IS NULL AND OLD.sealed IS NULL "
    "AND NEW.sealed IS NOT NULL AND NEW.nonce IS NOT NULL AND NEW.owner = OLD.owner "
    "AND NEW.epoch = OLD.epoch AND NEW.from_seq = OLD.from_seq"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("owner_keys", "secret", nullable=True)
        op.add_column("owner_keys", sa.Column("nonce", sa.LargeBinary(12), nullable=True))
        op.add_column("owner_keys", sa.Column("sealed", sa.LargeBinary(64), nullable=True))
        op.create_check_constraint("owner_keys_sealed_or_clear", "owner_keys", CHECK)
        op.execute("DROP TRIGGER owner_keys_append_only ON owner_keys")
        op.execute(
            "CREATE TRIGGER owner_keys_no_delete BEFORE DELETE ON owner_keys "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )
        op.execute(
            f"""
            CREATE FUNCTION ledger_owner_keys_seal_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NOT ({SEALING}) THEN
                    RAISE EXCEPTION 'owner_keys is append-only' USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER owner_keys_seal_only BEFORE UPDATE ON owner_keys "
            "FOR EACH ROW EXECUTE FUNCTION ledger_owner_keys_seal_only()"
        )
        return
    # SQLite cannot make a column nullable in place: rebuild the table (its triggers go
    # with it and are made again below).
    op.execute("DROP TRIGGER IF EXISTS owner_keys_no_update")
    op.execute("DROP TRIGGER IF EXISTS owner_keys_no_delete")
    op.create_table(
        "owner_keys_0015",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("secret", sa.LargeBinary(32), nullable=True),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
        sa.Column("nonce", sa.LargeBinary(12), nullable=True),
        sa.Column("sealed", sa.LargeBinary(64), nullable=True),
        sa.CheckConstraint("epoch >= 1", name="owner_keys_epoch_positive"),
        sa.CheckConstraint("length(secret) = 32", name="owner_keys_secret_32"),
        sa.CheckConstraint(CHECK, name="owner_keys_sealed_or_clear"),
    )
    op.execute(
        "INSERT INTO owner_keys_0015 (owner, epoch, secret, from_seq) "
        "SELECT owner, epoch, secret, from_seq FROM owner_keys"
    )
    op.drop_table("owner_keys")
    op.rename_table("owner_keys_0015", "owner_keys")
    op.execute(
        "CREATE TRIGGER owner_keys_no_delete BEFORE DELETE ON owner_keys "
        "BEGIN SELECT RAISE(ABORT, 'owner_keys is append-only'); END"
    )
    op.execute(
        f"CREATE TRIGGER owner_keys_no_update BEFORE UPDATE ON owner_keys WHEN NOT ({SEALING}) "
        "BEGIN SELECT RAISE(ABORT, 'owner_keys is append-only'); END"
    )


def downgrade() -> None:
    # A sealed secret cannot go back to the clear column without the keystore: refuse
    # rather than lose it. With none sealed, the 0014 shape comes back exactly.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM owner_keys WHERE sealed IS NOT NULL")).scalar():
        raise NotImplementedError("owner_keys holds sealed secrets: it cannot be downgraded")
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER owner_keys_seal_only ON owner_keys")
        op.execute("DROP FUNCTION ledger_owner_keys_seal_only()")
        op.execute("DROP TRIGGER owner_keys_no_delete ON owner_keys")
        op.execute(
            "CREATE TRIGGER owner_keys_append_only BEFORE UPDATE OR DELETE ON owner_keys "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )
        op.drop_constraint("owner_keys_sealed_or_clear", "owner_keys", type_="check")
        op.drop_column("owner_keys", "sealed")
        op.drop_column("owner_keys", "nonce")
        op.alter_column("owner_keys", "secret", nullable=False)
        return
    op.execute("DROP TRIGGER IF EXISTS owner_keys_no_update")
    op.execute("DROP TRIGGER IF EXISTS owner_keys_no_delete")
    op.create_table(
        "owner_keys_0014",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("secret", sa.LargeBinary(32), nullable=False),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("epoch >= 1", name="owner_keys_epoch_positive"),
        sa.CheckConstraint("length(secret) = 32", name="owner_keys_secret_32"),
    )
    op.execute(
        "INSERT INTO owner_keys_0014 (owner, epoch, secret, from_seq) "
        "SELECT owner, epoch, secret, from_seq FROM owner_keys"
    )
    op.drop_table("owner_keys")
    op.rename_table("owner_keys_0014", "owner_keys")
    for op_name in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER owner_keys_no_{op_name.lower()} BEFORE {op_name} ON owner_keys "
            "BEGIN SELECT RAISE(ABORT, 'owner_keys is append-only'); END"
        )
