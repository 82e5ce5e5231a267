"""Verifying an owner-scoped bundle directory (``reserve verify-bundle DIR --owner CODE``,
issue #14): the files, then :func:`ledger.owner_scope_verify.verify_scoped`.

Core install only: no database, no web.
"""

from __future__ import annotations

from pathlib import Path

from ledger.bundle import Bundle
from ledger.errors import ConfigError
from ledger.owner_scope import read_key_file
from ledger.owner_scope_verify import ScopedReport, verify_scoped


def verify_owner_bundle(
    root: Path, *, owner: str, key_file: str, trusted_log_key: bytes
) -> ScopedReport:
    """Check ``owner``'s scoped bundle at ``root`` with the owner's key file (its text)."""
    b = Bundle(root)
    if b.scope != owner:
        shown = "the whole log" if b.scope is None else f"owner {b.scope}"
        raise ConfigError(f"this bundle is for {shown}, not owner {owner}")
    log_id, _, epochs = read_key_file(key_file, owner=owner)
    b.check_files()
    return verify_scoped(
        b.scoped_rows(),
        b.checkpoints(),
        owner=owner,
        secrets=[e.secret for e in epochs],
        log_id=log_id,
        trusted_log_key=trusted_log_key,
        expected_size=b.manifest.get("size"),
        expected_balances=b.owner_balances(),
    )
