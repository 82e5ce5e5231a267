"""Entry kinds of the signed log itself: genesis, key registry, log key, test movement."""

from __future__ import annotations

from typing import Literal

from ledger.kinds.base import Body, Clearance, Code, Hex64, Int53, LogId, Role, Text, UserName


class Genesis(Body, tag="genesis", frozen=True):
    """Entry 0: names the log, its checkpoint key and the first security admin."""

    log_id: LogId
    log_key: Hex64
    admin_key: Hex64
    # Set by ``reserve demo`` only (issue #9 item 4): a ledger whose keys may all sit in
    # one keystore. Absent (false) on every real ledger.
    demo: bool = False


class KeyRegistered(Body, tag="key.registered", frozen=True):
    """A security admin binds a public key to a user with roles and scopes."""

    user: UserName
    public_key: Hex64
    roles: list[Role]
    sites: list[Code]
    owners: list[Code]
    clearance: Clearance
    # "server": a custodial key the embedded service generated and holds in its
    # keystore (it signs for the user); "self": the user's own key, never on the server.
    # Every entry signed by the key thereby records which (issue #4).
    custody: Literal["self", "server"]


class KeyRevoked(Body, tag="key.revoked", frozen=True):
    """From this entry on, the key signs nothing valid. Earlier entries stay valid."""

    key_id: Hex64
    reason: Text


class LogKeyRotated(Body, tag="log.key_rotated", frozen=True):
    """The log's checkpoint key changes; signed by both the old and the new key."""

    new_key: Hex64


class TestMovement(Body, tag="test.movement", frozen=True):
    """A generic movement on a named account, kept for tests and benchmarks of the log
    itself; the stock domain has the real movement kinds."""

    account: Code
    delta: Int53
