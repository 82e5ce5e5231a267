"""Tables, as SQLAlchemy Core metadata. Alembic migrations own the DDL; keep in step.

Append-only tables (``entries``, ``tree_nodes``, ``checkpoints``, ``postings``,
``site_locations``, ``access_log``, ``access_checkpoints``) are guarded by database
triggers that refuse UPDATE, DELETE and TRUNCATE (DESIGN.md, point 5). Projections
(``keys``, ``balances``...) are mutable caches of a replay and can be rebuilt.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()


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
    # Migration 0006 (issue #9): the v1 signature ratchet and the genesis' demo mark.
    Column("entry_sig_version", SmallInteger, nullable=False, server_default="1"),
    Column("demo", Boolean, nullable=False, server_default=false()),
    # Migration 0014 (issue #12): postings written so far, which places the balance
    # snapshots (one every ``ledger.store.snapshots.SNAPSHOT_EVERY`` postings).
    Column("postings", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("id = 1", name="log_state_single_row"),
    CheckConstraint("postings >= 0", name="log_state_postings_nonneg"),
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
    Column("custody", String(8), nullable=False, server_default="self"),
)

test_balances = Table(
    "test_balances",
    metadata,
    Column("account", String(64), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    CheckConstraint("balance >= 0", name="test_balances_nonneg"),
)


# -- stock domain (migration 0002) ----------------------------------------------------

owners = Table(
    "owners",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("country", String(2), nullable=False),
    Column("registered_seq", BigInteger, nullable=False),
)

materials = Table(
    "materials",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("form", String(16), nullable=False),
    Column("base_unit", String(8), nullable=False),
    Column("grade_basis", String(200), nullable=False),
    Column("registered_seq", BigInteger, nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("material", String(64), nullable=False, index=True),
    Column("origin", String(2), nullable=False),
    Column("supplier", String(200), nullable=False),
    Column("purity", String(12), nullable=False),
    Column("basis", String(200), nullable=False),
    Column("certificate_sha256", String(64), nullable=False),
    Column("containers", Text, nullable=False),
    Column("registered_seq", BigInteger, nullable=False),
)

sites = Table(
    "sites",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("classification", String(16), nullable=False),
    Column("custodian", String(64), nullable=False),
    Column("owners", Text, nullable=False),
    Column("location_commitment", String(64), nullable=False),
    Column("registered_seq", BigInteger, nullable=False),
    Column("commitment_seq", BigInteger, nullable=False),
    Column("last_count_at", String(32), nullable=True),
)

targets = Table(
    "targets",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("material", String(64), primary_key=True),
    Column("days_of_cover", Integer, nullable=False),
    Column("annual_quantity", BigInteger, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("valid_from", String(32), nullable=False),
    Column("valid_to", String(32), nullable=False),
    Column("set_seq", BigInteger, nullable=False),
)

balances = Table(
    "balances",
    metadata,
    Column("account", String(300), primary_key=True),
    Column("lot", String(64), primary_key=True),
    Column("material", String(64), nullable=False, index=True),
    Column("quantity", BigInteger, nullable=False),
    CheckConstraint("account NOT LIKE 'H/%' OR quantity >= 0", name="balances_holding_nonneg"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("material", String(64), nullable=False),
    Column("from_site", String(64), nullable=False),
    Column("to_site", String(64), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("dispatched_seq", BigInteger, nullable=False),
    Column("dispatched_at", String(32), nullable=True),  # migration 0005
)

loans = Table(
    "loans",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("site", String(64), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("material", String(64), nullable=False),
    Column("borrower", String(200), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("outstanding", BigInteger, nullable=False),
    Column("due_at", String(32), nullable=False),
    Column("premium_pct", String(12), nullable=False),
    Column("lent_seq", BigInteger, nullable=False),
    CheckConstraint("outstanding > 0 AND outstanding <= quantity", name="loans_outstanding_range"),
)

movements = Table(
    "movements",
    metadata,
    Column("entry_id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("site", String(64), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("postings", Text, nullable=False),
    Column("reversed_by", BigInteger, nullable=True),
    Column("occurred_at", String(32), nullable=True),  # migration 0005
)

# Every leg of every movement, with the account's balance after it: a balance as of any
# seq is the last snapshot before it overridden by the legs after it, never a replay.
postings = Table(
    "postings",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("n", SmallInteger, primary_key=True, autoincrement=False),
    Column("account", String(300), nullable=False),
    Column("material", String(64), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    # Migration 0014 (issue #12): the entry's kind and log time beside each leg, so a
    # lot trace reads its legs from one index range, with no join to ``entries``.
    Column("kind", String(40), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    # No (account, lot, seq) index since migration 0014: as-of reads take a snapshot and
    # a seq range, and every append saves that index's update per leg.
    # A lot's legs in log order, and on PostgreSQL everything a trace shows, so the
    # trace is an index-only range (migration 0014 replaces postings_lot_seq).
    Index(
        "postings_lot_trace",
        "lot",
        "seq",
        "n",
        postgresql_include=["account", "delta", "balance_after", "kind", "recorded_at"],
    ),
)

# Balance snapshots (issue #12, migration 0014): every non-zero (account, lot) balance
# just after entry ``seq``, taken every ``SNAPSHOT_EVERY`` postings in the append
# transaction. An as-of balance reads one snapshot and the postings after it. Append-only
# like ``postings``; the verifier checks each against its replay (ledger.store.snapshots).
balance_snapshots = Table(
    "balance_snapshots",
    metadata,
    Column("seq", BigInteger, ForeignKey("entries.seq"), primary_key=True, autoincrement=False),
    Column("postings", BigInteger, nullable=False),
    CheckConstraint("postings > 0", name="balance_snapshots_postings_pos"),
)

balance_snapshot_rows = Table(
    "balance_snapshot_rows",
    metadata,
    Column("seq", BigInteger, ForeignKey("balance_snapshots.seq"), nullable=False),
    Column("account", String(300), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("material", String(64), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    # Covering on PostgreSQL (migration 0016): a snapshot is read from the index alone.
    PrimaryKeyConstraint(
        "seq", "account", "lot", name="balance_snapshot_rows_pkey",
        postgresql_include=["material", "quantity"],
    ),
    CheckConstraint("quantity <> 0", name="balance_snapshot_rows_nonzero"),
    CheckConstraint(
        "account NOT LIKE 'H/%' OR quantity > 0", name="balance_snapshot_rows_holding_pos"
    ),
)

# Sealed site locations (DESIGN.md, Secrets): AES-256-GCM ciphertext of the salt and the
# canonical location. Never part of the log or an export; append-only like the log.
site_locations = Table(
    "site_locations",
    metadata,
    Column("site", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("commitment", String(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("nonce", LargeBinary(12), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", String(32), nullable=False),
)


# -- service (migration 0003) ----------------------------------------------------------

# The access log: every reveal, refused request and export, hash-chained and covered by
# signed checkpoints like the ledger itself (issue #4). Append-only by trigger.
access_log = Table(
    "access_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("leaf", LargeBinary, nullable=False),
)

access_checkpoints = Table(
    "access_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
)

# Head of the access log: size, chain head and the RFC 9162 compact range (O(log n)
# hashes) so the next checkpoint's root costs nothing to compute.
access_state = Table(
    "access_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("frontier", Text, nullable=False),
    CheckConstraint("id = 1", name="access_state_single_row"),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(128), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked_by", String(64), nullable=False),
)

# Idempotency keys: a retried write returns the first result, never a second entry.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_name", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)


# -- release authorisation (migration 0004) ------------------------------------------------

# Release policies per owner and material: the version in force and those to come (JSON).
policies = Table(
    "policies",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("material", String(64), primary_key=True),
    Column("versions", Text, nullable=False),
)

# The latest observed price per index, material and currency.
prices = Table(
    "prices",
    metadata,
    Column("price_index", String(64), primary_key=True),
    Column("material", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("value", String(32), nullable=False),
    Column("observed_at", String(32), nullable=False),
    Column("source", String(200), nullable=False),
    Column("entry_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
)

release_requests = Table(
    "release_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("recorded_at", String(32), nullable=False),
    Column("lapses_at", String(32), nullable=False),
    Column("requester", String(64), nullable=False),
    Column("requester_key", String(64), nullable=False),
    Column("owner", String(64), nullable=False, index=True),
    Column("material", String(64), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("regime", String(24), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("declaration", String(64), nullable=False, server_default=""),
    Column("evidence_type", String(24), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("evidence_detail", Text, nullable=False),
    Column("approvals", Text, nullable=False),
    CheckConstraint("quantity > 0", name="release_requests_quantity_pos"),
    CheckConstraint(
        "regime IN ('emergency_release', 'price_spike_sale', 'ordinary_sale', 'loan')",
        name="release_requests_regime",
    ),
)

release_orders = Table(
    "release_orders",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("recorded_at", String(32), nullable=False),
    Column("minister", String(64), nullable=False),
    Column("minister_key", String(64), nullable=False),
    Column("request", String(32), nullable=False, unique=True),
    Column("requested_at", String(32), nullable=False),
    Column("requester", String(64), nullable=False),
    Column("owner", String(64), nullable=False, index=True),
    Column("material", String(64), nullable=False),
    Column("regime", String(24), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("quantity_requested", BigInteger, nullable=False),
    Column("declaration", String(64), nullable=False, server_default=""),
    Column("evidence_type", String(24), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("evidence_detail", Text, nullable=False),
    Column("approvals", Text, nullable=False),
    Column("quorum", Integer, nullable=False),
    Column("policy_seq", BigInteger, nullable=False),
    Column("cap", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("valid_from", String(32), nullable=False),
    Column("valid_until", String(32), nullable=False),
    Column("sites", Text, nullable=False),
    Column("report_to", String(200), nullable=False),
    Column("executions", Text, nullable=False),
    Column("revoked_seq", BigInteger, nullable=True),
    Column("revoked_at", String(32), nullable=True),
    Column("revoked_by", String(64), nullable=True),
    Column("revoke_reason", Text, nullable=True),
    CheckConstraint("cap > 0 AND cap <= quantity_requested", name="release_orders_cap"),
    CheckConstraint("remaining >= 0 AND remaining <= cap", name="release_orders_remaining"),
    CheckConstraint("quorum >= 1", name="release_orders_quorum"),
    CheckConstraint("valid_from < valid_until", name="release_orders_window"),
)


# -- issue #9 (migration 0006): key login and co-signature proposals --------------------

# Login challenges: single use (``used_at`` set by one conditional UPDATE), short-lived.
auth_nonces = Table(
    "auth_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("log_id", String(128), nullable=False),
    # The user or key the challenge was asked for (a nonce logs in only that subject).
    Column("subject_user", String(64), nullable=True),
    Column("subject_key", String(64), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False, index=True),
    Column("used_at", String(32), nullable=True),
    CheckConstraint("created_at < expires_at", name="auth_nonces_window"),
)

# Entries waiting for co-signatures. Never part of the log until complete.
proposals = Table(
    "proposals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("entry_id", String(32), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("proposer", String(64), nullable=False, index=True),
    Column("body", Text, nullable=False),  # canonical JSON (JCS) of the body to sign
    Column("cosigners", Text, nullable=False),  # JSON list of user names, in order
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("closed_at", String(32), nullable=True),
    Column("outcome_seq", BigInteger, nullable=True),
    Column("outcome", Text, nullable=True),  # JSON: the refusal (type, detail, field)
    CheckConstraint(
        "status IN ('open', 'appended', 'refused', 'withdrawn')", name="proposals_status"
    ),
    CheckConstraint(
        "(status = 'appended') = (outcome_seq IS NOT NULL)", name="proposals_outcome_seq"
    ),
    CheckConstraint("(status = 'open') = (closed_at IS NULL)", name="proposals_closed_at"),
    CheckConstraint("created_at < expires_at", name="proposals_window"),
)

proposal_signatures = Table(
    "proposal_signatures",
    metadata,
    Column("proposal_id", String(32), ForeignKey("proposals.id"), primary_key=True),
    Column("user_name", String(64), primary_key=True),
    Column("position", SmallInteger, nullable=False),
    Column("pub", String(64), nullable=False),
    Column("sig", String(88), nullable=False),
    Column("signed_at", String(32), nullable=False),
    UniqueConstraint("proposal_id", "pub", name="proposal_signatures_one_per_key"),
    UniqueConstraint("proposal_id", "position", name="proposal_signatures_position"),
    CheckConstraint("position >= 0", name="proposal_signatures_position_nonneg"),
)


# Witnesses and their cosignatures (issue #10, migration 0007). Cosignatures are
# append-only by trigger, one per checkpoint and witness.
witnesses = Table(
    "witnesses",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("url", String(500), nullable=False),
    Column("vkey", String(300), nullable=False, unique=True),
    Column("added_at", String(32), nullable=False),
)

cosignatures = Table(
    "cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True),
    Column("line", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)

# Owner-scoped audit (issue #14, migration 0013): append-only by trigger. A log writes v2
# leaves (with an owner commitment) from ``owner_scope.from_seq`` on.
owner_scope = Table(
    "owner_scope",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("from_seq", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="owner_scope_single_row"),
    CheckConstraint("from_seq >= 0", name="owner_scope_from_seq_nonneg"),
)

# Migration 0015: the secret is stored sealed (``nonce``, ``sealed``: AES-256-GCM under the
# keystore's sealing key); ``secret`` in the clear only in rows from before it, until
# ``reserve owner-scope seal`` (the one UPDATE the triggers allow: clear to sealed).
owner_keys = Table(
    "owner_keys",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("epoch", Integer, primary_key=True, autoincrement=False),
    Column("secret", LargeBinary(32), nullable=True),
    Column("from_seq", BigInteger, nullable=False),
    Column("nonce", LargeBinary(12), nullable=True),
    Column("sealed", LargeBinary(64), nullable=True),
    CheckConstraint("epoch >= 1", name="owner_keys_epoch_positive"),
    CheckConstraint("length(secret) = 32", name="owner_keys_secret_32"),
    CheckConstraint(
        "(secret IS NULL) <> (sealed IS NULL) AND (nonce IS NULL) = (sealed IS NULL)",
        name="owner_keys_sealed_or_clear",
    ),
)

owner_commitments = Table(
    "owner_commitments",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("commitment", LargeBinary, nullable=False),
    CheckConstraint("seq >= 0", name="owner_commitments_seq_nonneg"),
    CheckConstraint("length(commitment) >= 80", name="owner_commitments_shape"),
)
