"""One error hierarchy for the whole project.

Every error carries a stable ``code`` (the API turns it into the RFC 9457 ``type``) and a
``public_message`` that is safe to show to the caller: it never contains a key, a token, a
salt or a location. The API maps these classes to HTTP statuses in one place; the CLI
prints ``public_message`` on one line and exits non-zero.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the project raises on purpose."""

    code = "ledger-error"

    def __init__(self, message: str, *, field: str | None = None, seq: int | None = None):
        super().__init__(message)
        self.public_message = message
        self.field = field
        self.seq = seq

    def __str__(self) -> str:
        parts = []
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.public_message}" if prefix else self.public_message


class ConfigError(LedgerError):
    """The environment or the command line is not usable (missing keystore, bad URL...)."""

    code = "config"


class InvalidEntry(LedgerError):
    """An entry is malformed: unknown field, wrong type, oversize, not canonical."""

    code = "invalid-entry"


class SignatureInvalid(LedgerError):
    """A signature does not verify over the entry's canonical bytes."""

    code = "bad-signature"


class KeyNotAuthorised(LedgerError):
    """The signing key is unknown, revoked, or not the author's at that point of the log."""

    code = "key-not-authorised"


class Rejected(LedgerError):
    """The reducer refused an entry: a rule of the ledger would be broken.

    ``rule`` names the rule (stable, used as the problem ``type``).
    """

    code = "rejected"

    def __init__(
        self, rule: str, message: str, *, field: str | None = None, seq: int | None = None
    ):
        super().__init__(message, field=field, seq=seq)
        self.rule = rule


class NotFound(LedgerError):
    """The thing asked for does not exist (or is outside the caller's scope)."""

    code = "not-found"


class Conflict(LedgerError):
    """The write raced another writer or repeats one already done."""

    code = "conflict"


class StorageError(LedgerError):
    """The database refused or failed an operation; the batch was rolled back."""

    code = "storage"


class ClockBehind(StorageError):
    """The server clock is behind the log's last ``recorded_at`` by more than the allowed
    skew: the log refuses to append rather than pin its time (issue #8, item 8). The
    operator must fix the clock; it is the service's fault, never the caller's."""

    code = "clock-behind"


class KeystoreError(LedgerError):
    """A key could not be created, opened or used (wrong passphrase, missing file...)."""

    code = "keystore"


class InvalidProof(LedgerError):
    """A Merkle inclusion or consistency proof does not verify (RFC 9162 section 2.1.3/2.1.4)."""

    code = "invalid-proof"


class VerificationFailed(LedgerError):
    """The verifier found the history inconsistent; ``seq`` is the first bad entry."""

    code = "verification-failed"


class HeldCheckpointInvalid(VerificationFailed):
    """The checkpoint an auditor holds (``--checkpoint``) is malformed, names another log
    or is not signed by this log's keys: it says nothing about this log, so the log is not
    blamed for it (issue #8, item 6)."""

    code = "held-checkpoint-invalid"


class Unauthenticated(LedgerError):
    """No valid credentials: missing, expired, forged or revoked token."""

    code = "unauthenticated"


class Forbidden(LedgerError):
    """Authenticated, but the role or scope does not allow this."""

    code = "forbidden"


class OutcomePending(LedgerError):
    """A write was queued but its outcome is not known yet (the caller's wait ran out).

    Not a failure: the write may still be appended. The service answers 202 and the
    caller fetches the outcome by its idempotency key (issue #8, item 2); it never answers
    5xx for a write that may yet commit.
    """

    code = "outcome-pending"

    def __init__(self, message: str, *, idempotency_key: str | None = None):
        super().__init__(message)
        self.idempotency_key = idempotency_key
