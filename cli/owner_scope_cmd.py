"""Owner-scoped audit on the command line (issue #14).

* ``reserve owner-scope enable`` (server admin): the log writes v2 leaves from its next
  entry on; every owner registered so far gets its scoped-audit secret.
* ``reserve owner-scope rotate CODE``: a new epoch of the owner's secret, for new leaves.
* ``reserve owner-scope key CODE --out FILE``: the key file (every epoch) to hand to the
  owner's auditors out of band; written 0600, never printed.
* ``reserve export --owner CODE DIR`` and ``reserve verify-bundle DIR --owner CODE
  --owner-key FILE --trust ...`` are branches of the existing commands (``cli.main``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import ConfigError, KeystoreError

if TYPE_CHECKING:
    from ledger.config import Settings


def add_parser(sub: Any) -> None:
    grp = sub.add_parser(
        "owner-scope", help="owner-scoped audit: enable it, rotate and hand out owners' keys"
    )
    gsub = grp.add_subparsers(dest="owner_scope_command", required=True, metavar="ACTION")
    sp = gsub.add_parser("enable", help="write v2 leaves (owner commitments) from the next entry on")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.set_defaults(fn=cmd_enable)
    sp = gsub.add_parser("rotate", help="a new epoch of an owner's scoped-audit secret")
    sp.add_argument("owner", metavar="CODE")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.set_defaults(fn=cmd_rotate)
    sp = gsub.add_parser("key", help="write an owner's key file for its auditors (every epoch)")
    sp.add_argument("owner", metavar="CODE")
    sp.add_argument("--out", required=True, metavar="FILE", help="created 0600; must not exist")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.add_argument("--as", dest="as_user", metavar="USER", help="client mode: the auditor (or RESERVE_USER)")
    # Client mode (RESERVE_URL): an auditor scoped to the owner fetches it from the
    # service (GET /owners/CODE/scope-key); on the server it is read from the database.
    sp.set_defaults(fn=cmd_key, client_ok=True, from_url=None)
    sp = gsub.add_parser(
        "seal", help="seal owners' secrets stored in the clear before migration 0015 (as the schema owner)"
    )
    sp.add_argument("--db", help="database URL of a role that may seal rows (default RESERVE_DB)")
    sp.set_defaults(fn=cmd_seal)


def _engine(args: argparse.Namespace, s: Settings) -> Any:
    from ledger.store.db import make_engine

    return make_engine(args.db or s.db_url)


def _sealer(s: Settings) -> Any:
    """The keystore's sealing key (the one that seals site locations)."""
    from keys import open_keystore, passphrase_from_env_or_prompt

    backend = open_keystore(s, passphrase=lambda: passphrase_from_env_or_prompt(env=os.environ, prompt=True))
    return backend.sealer()


def _keyring(s: Settings) -> Any:
    """The owners' secrets are sealed with the keystore's sealing key (migration 0015);
    the keystore is opened only when a secret is first sealed or opened."""
    from ledger.store.owner_scope import OwnerKeyring

    return OwnerKeyring(lambda: _sealer(s))


def cmd_enable(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store import owner_scope

    seq = owner_scope.enable(_engine(args, s), keyring=_keyring(s))
    print(f"owner-scoped audit enabled: leaves from seq {seq} on carry owner commitments")
    return 0


def cmd_rotate(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store import owner_scope

    epoch = owner_scope.rotate(_engine(args, s), args.owner, keyring=_keyring(s))
    print(f"owner {args.owner}: secret epoch {epoch} is used from the next entry on; "
          f"hand the new key file to its auditors (reserve owner-scope key {args.owner} --out FILE)")
    return 0


def _fetch_key(args: argparse.Namespace, s: Settings) -> str:
    """Client mode: the key file from the service, for an auditor scoped to the owner."""
    from cli.audit import HttpAuditSource, _base_url, auth_header
    from ledger.owner_scope import read_key_file

    text = HttpAuditSource(_base_url(args), auth_header(args, s)).owner_key(args.owner)
    read_key_file(text, owner=args.owner)  # a key file of this owner, or refused unwritten
    return text


def cmd_key(args: argparse.Namespace, s: Settings) -> int:
    from cli.main import _client_url
    from ledger.store import owner_scope

    if _client_url(args):
        text = _fetch_key(args, s)
    else:
        text = owner_scope.key_file(_engine(args, s), args.owner, keyring=_keyring(s))
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{args.out} exists: the key file is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote the scoped-audit key file of {args.owner} to {args.out} (a secret: hand it over out of band)")
    return 0


def verify_keyring(engine: Any, s: Settings) -> Any:
    """For ``reserve verify``: the keyring that opens the owners' sealed secrets, so every
    leaf's owner commitment is checked; None (with a note) if the keystore is not at hand."""
    from ledger.store import owner_scope

    with engine.connect() as conn:
        if not owner_scope.has_sealed(conn):
            return None
    try:
        return owner_scope.OwnerKeyring(_sealer(s))
    except (ConfigError, KeystoreError) as exc:
        print(
            f"note: owner commitments not checked: the owners' secrets are sealed and the keystore "
            f"is not available ({exc.public_message}); an auditor checks them with every owner's "
            "key file (verify-bundle --owner-key, audit sync --owner-key)",
            file=sys.stderr,
        )
        return None


def cmd_seal(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store import owner_scope

    n = owner_scope.seal_cleartext(_engine(args, s), keyring=_keyring(s))
    print(f"sealed {n} owner secrets stored in the clear" if n else "every owner secret is already sealed")
    return 0


def export_owner(args: argparse.Namespace, reader: Any, keyring: Any) -> int:
    from ledger.store.owner_export import export_owner_bundle

    size, root, given = export_owner_bundle(reader, args.owner, Path(args.dir), keyring=keyring)
    print(f"exported {args.owner}'s scoped bundle of {size} entries ({given} in full) to {args.dir} (root {root.hex()})")
    return 0


def verify_owner(args: argparse.Namespace, trusted: bytes) -> int:
    """``verify-bundle --owner``: the scoped verification, then the witnesses' quorum."""
    from cli.files import read_text
    from cli.quorum import check_bundle_quorum
    from ledger.owner_bundle import verify_owner_bundle
    from ledger.verify import Report

    if not args.owner_key or len(args.owner_key) != 1:
        raise ConfigError("--owner needs the owner's key file: --owner-key FILE (once)")
    if getattr(args, "report", None) or getattr(args, "report_json", None) or args.checkpoint:
        raise ConfigError("--report, --report-json and --checkpoint are not available with --owner yet")
    key_text = read_text(args.owner_key[0], what="owner key file", stdin_ok=False)
    rep = verify_owner_bundle(Path(args.dir), owner=args.owner, key_file=key_text, trusted_log_key=trusted)
    check_bundle_quorum(args, Path(args.dir) / "checkpoint.note", Report(size=rep.size, root=rep.root))
    print(f"verified {args.owner}'s scoped bundle: size {rep.size} root {rep.root.hex()} log {rep.log_id}")
    print(f"  {rep.given} entries given in full, {rep.withheld} withheld and shown not to touch {args.owner}")
    print(f"  {rep.checkpoints} checkpoints; {len(rep.balances)} holdings of {args.owner} replayed")
    print("OK", file=sys.stderr)
    return 0


def owner_secrets(paths: list[str] | None) -> dict[str, list[bytes]] | None:
    """Key files given to a full ``verify-bundle``: every owner's, to check every leaf's
    owner commitment offline (the full auditor's duty, README)."""
    if not paths:
        return None
    from cli.files import read_text
    from ledger.owner_scope import read_key_file

    out: dict[str, list[bytes]] = {}
    for p in paths:
        _, owner, epochs = read_key_file(read_text(p, what="owner key file", stdin_ok=False))
        out[owner] = [e.secret for e in epochs]
    return out
