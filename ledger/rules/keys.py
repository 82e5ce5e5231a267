"""Key-registry rules: genesis, registration, revocation, log-key rotation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ledger.crypto import key_id
from ledger.entries import LOG_PRINCIPAL, Sig, is_reserved_principal
from ledger.errors import Rejected
from ledger.kinds.keys import Genesis, KeyRegistered, KeyRevoked, LogKeyRotated
from ledger.reducer import Context, Signers, require_role, rule
from ledger.state import Change, KeyRecord, LogInfo, PutKey, SetLogInfo, StateView

ADMIN = "security_admin"
OPERATOR = "operator"
# Issue #12: from this time of the log's clock on, a registration's sites and owners must
# exist and an operator must name a site (see _check_scope_exists).
KEY_SCOPE_CHECKED_FROM = datetime(2026, 11, 29, tzinfo=UTC)


def apply_genesis(body: Genesis, sigs: list[Sig], ctx: Context) -> list[Change]:
    """Entry 0 is signed by the first admin (its author) and by the log key."""
    if [s.pub for s in sigs] != [body.admin_key, body.log_key]:
        raise Rejected(
            "genesis",
            "genesis must be signed by the admin key, then the log key it names",
            field="sigs",
            seq=ctx.seq,
        )
    if body.admin_key == body.log_key:
        raise Rejected("genesis", "the log key and the admin key must differ", seq=ctx.seq)
    if is_reserved_principal(body.author):
        raise Rejected("genesis", f"'{body.author}' is reserved for the service's own keys", seq=ctx.seq)
    admin = KeyRecord(
        key_id=key_id(bytes.fromhex(body.admin_key)),
        public_key=body.admin_key,
        user=body.author,
        roles=(ADMIN,),
        sites=(),
        owners=(),
        clearance="NONE",
        registered_seq=ctx.seq,
        # `reserve init` generates the first admin's key in the service's keystore, beside
        # the log key: a custodial key. That admin registers their own key and revokes
        # this one when the service goes into production.
        custody="server",
    )
    return [
        SetLogInfo(
            LogInfo(
                log_id=body.log_id,
                log_key=body.log_key,
                entry_sig_version=ctx.sig_version,
                demo=body.demo,
            )
        ),
        PutKey(_log_key_record(body.log_key, ctx.seq)),
        PutKey(admin),
    ]


def _log_key_record(pub: str, seq: int) -> KeyRecord:
    return KeyRecord(
        key_id=key_id(bytes.fromhex(pub)),
        public_key=pub,
        user=LOG_PRINCIPAL,
        roles=(),
        sites=(),
        owners=(),
        clearance="NONE",
        registered_seq=seq,
        custody="server",
    )


@rule(KeyRegistered)
def key_registered(
    state: StateView, body: KeyRegistered, signers: Signers, ctx: Context
) -> list[Change]:
    require_role(signers, ADMIN, ctx, what="register keys")
    if is_reserved_principal(body.user):
        raise Rejected(
            "reserved-user",
            f"'{body.user}' is reserved for the service's own keys",
            field="entry.user",
            seq=ctx.seq,
        )
    kid = key_id(bytes.fromhex(body.public_key))
    if state.key(kid) is not None:
        raise Rejected(
            "key-exists",
            "this public key is already registered (a revoked key is never re-registered)",
            field="entry.public_key",
            seq=ctx.seq,
        )
    roles = tuple(body.roles)
    if not roles or len(set(roles)) != len(roles):
        raise Rejected("roles", "give one or more distinct roles", field="entry.roles", seq=ctx.seq)
    # Separation of duties (DESIGN.md, roles): whoever administers keys does nothing else,
    # across all of that person's keys.
    others = state.active_keys_of(body.user)
    is_admin = ADMIN in roles
    if is_admin and len(roles) > 1:
        raise Rejected(
            "separation-of-duties",
            "a security admin holds no other role",
            field="entry.roles",
            seq=ctx.seq,
        )
    if any((ADMIN in k.roles) != is_admin for k in others):
        raise Rejected(
            "separation-of-duties",
            f"user '{body.user}' already holds keys with "
            + ("other roles" if is_admin else "the security admin role"),
            field="entry.roles",
            seq=ctx.seq,
        )
    if len(set(body.sites)) != len(body.sites) or len(set(body.owners)) != len(body.owners):
        raise Rejected(
            "scope", "site and owner scopes list each code once", field="entry.sites", seq=ctx.seq
        )
    _check_scope_exists(state, body, roles, ctx)
    record = KeyRecord(
        key_id=kid,
        public_key=body.public_key,
        user=body.user,
        roles=roles,
        sites=tuple(body.sites),
        owners=tuple(body.owners),
        clearance=body.clearance,
        registered_seq=ctx.seq,
        custody=body.custody,
    )
    return [PutKey(record)]


def _check_scope_exists(
    state: StateView, body: KeyRegistered, roles: tuple[str, ...], ctx: Context
) -> None:
    """Issue #12: a key's scope names sites and owners that exist, and an operator's
    names at least one site (an operator without a site can record nothing, and a scope
    naming a site registered later would silently widen when it appears).

    Registrations recorded before :data:`KEY_SCOPE_CHECKED_FROM` are not judged by this
    rule: logs written before it registered keys before their sites, and an auditor must
    still verify them. The cut is the log's own clock, which never runs backwards and
    stays within 24 hours of the authors' signed ``created_at``, so no later
    registration can claim to be older."""
    if ctx.recorded_at < KEY_SCOPE_CHECKED_FROM:
        return
    if OPERATOR in roles and not body.sites:
        raise Rejected(
            "key-scope",
            "an operator records movements at their sites: name at least one site",
            field="entry.sites",
            seq=ctx.seq,
        )
    for table, what, codes in (("sites", "site", body.sites), ("owners", "owner", body.owners)):
        for code in codes:
            # A scoped replay may lack another owner's registration (withheld, issue #14):
            # the full verify checks this for every key.
            if state.get(table, code) is None and not ctx.partial:
                raise Rejected(
                    "key-scope",
                    f"{what} {code} is not registered: register the {what} before a key that names it",
                    field=f"entry.{table}",
                    seq=ctx.seq,
                )


@rule(KeyRevoked)
def key_revoked(state: StateView, body: KeyRevoked, signers: Signers, ctx: Context) -> list[Change]:
    target = state.key(body.key_id)
    if target is None:
        raise Rejected("unknown-key", "no such key in this log", field="entry.key_id", seq=ctx.seq)
    if ADMIN not in signers.author.roles and target.user != signers.author.user:
        raise Rejected(
            "role",
            "only a security admin or the key's owner may revoke a key",
            field="entry.author",
            seq=ctx.seq,
        )
    if target.revoked_seq is not None:
        raise Rejected(
            "already-revoked",
            f"key was already revoked at seq {target.revoked_seq}",
            field="entry.key_id",
            seq=ctx.seq,
        )
    if target.user == LOG_PRINCIPAL:
        raise Rejected(
            "log-key", "the log key is rotated, not revoked", field="entry.key_id", seq=ctx.seq
        )
    if ADMIN in target.roles and state.active_admin_count() <= 1:
        raise Rejected(
            "last-admin",
            "this is the last security admin key; register another first",
            field="entry.key_id",
            seq=ctx.seq,
        )
    return [PutKey(_revoked(target, ctx.seq))]


def _revoked(rec: KeyRecord, seq: int) -> KeyRecord:
    return replace(rec, revoked_seq=seq)


@rule(LogKeyRotated)
def log_key_rotated(
    state: StateView, body: LogKeyRotated, signers: Signers, ctx: Context
) -> list[Change]:
    info = state.log_info()
    assert info is not None  # apply() refuses every entry before genesis
    if signers.author.user != LOG_PRINCIPAL or signers.author.public_key != info.log_key:
        raise Rejected(
            "log-key",
            "a rotation is signed first by the current log key",
            field="sigs[0]",
            seq=ctx.seq,
        )
    new_id = key_id(bytes.fromhex(body.new_key))
    if state.key(new_id) is not None:
        raise Rejected(
            "key-exists",
            "the new log key is already registered",
            field="entry.new_key",
            seq=ctx.seq,
        )
    return [
        SetLogInfo(replace(info, log_key=body.new_key)),
        PutKey(_revoked(signers.author, ctx.seq)),
        PutKey(_log_key_record(body.new_key, ctx.seq)),
    ]
