"""``reserve``: the command line of the ledger.

Errors are one line on stderr and a non-zero exit, never a traceback: 1 for a refusal or
a failed verification, 2 for bad usage or configuration. ``verify-bundle`` imports only
``ledger`` modules free of the database and of secrets, so an auditor can run it on a
machine with nothing else: ``pip install reserve-ledger`` (no extra) is enough for
``verify-bundle`` and ``bundle ...``; structlog, SQLAlchemy and the web stack come with the
``server`` extra, and a command that needs them says so in one line (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.backend import ServiceFailed
from cli.output import add_format
from ledger.config import Settings, load_settings, raise_problems
from ledger.errors import ConfigError, LedgerError, Rejected, StorageError, VerificationFailed

if TYPE_CHECKING:
    from cli.backend import Backend
    from ledger.service import Ledger
    from ledger.verify import Report

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 70
# Modules of the ``server`` extra: a missing one means the extra is not installed.
SERVER_MODULES = frozenset(
    {"sqlalchemy", "alembic", "psycopg", "structlog", "fastapi", "uvicorn", "jwt", "starlette"}
)


def _configure_logging(level: str, fmt: str = "json") -> None:
    # Imported here, after argument parsing: structlog (and the asyncio it pulls in)
    # costs ~60 ms that ``reserve --help`` and usage errors need not pay.
    try:
        from ledger.logconfig import configure_logging
    except ModuleNotFoundError:  # the core install (no structlog): verifying commands log nothing
        return
    configure_logging(level, fmt)


def _ledger(settings: Settings, *, prompt: bool = True) -> Ledger:
    from keys import open_keystore, passphrase_from_env_or_prompt
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    backend = open_keystore(
        settings, passphrase=lambda: passphrase_from_env_or_prompt(env=os.environ, prompt=prompt)
    )
    return Ledger(make_engine(settings.db_url), backend.keystore, backend.sealer)


def _reader(settings: Settings) -> Any:
    from ledger.store.db import make_engine

    return make_engine(settings.read_url, readonly=True)  # the replica, if RESERVE_DB_READ


def _acting_user(args: argparse.Namespace, settings: Settings) -> str:
    user = getattr(args, "as_user", None) or settings.user
    if not user:
        raise ConfigError("say who acts: --as USER or RESERVE_USER")
    return str(user)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _print_report(report: Report) -> None:
    print(
        f"OK size {report.size} root {report.root.hex()} checkpoints {report.checkpoints} log {report.log_id}"
    )


# -- commands -------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, s: Settings) -> int:
    from ledger.pubkey import to_pem

    s.home.mkdir(parents=True, exist_ok=True)
    led = _ledger(s)
    log_id = args.log_id or f"reserve.local/ledger/{os.urandom(4).hex()}"
    # Owner-scoped from the start (issue #14): no v1 prefix reaches a scoped auditor.
    res = led.init(log_id=log_id, admin=args.admin, owner_scoped=True)
    s.log_pub_path.write_text(to_pem(led.log_signer().public_key))
    print(
        f"initialised log {log_id}: admin '{args.admin}', log key in {s.log_pub_path}, size {res.size}; "
        "owner-scoped audit enabled"
    )
    return 0


def cmd_keys_generate(args: argparse.Namespace, s: Settings) -> int:
    if _client_url(args):
        return _keys_generate_own(args, s)
    led = _ledger(s)
    signer = led.keystore.generate(args.name)
    print(f"{args.name} {signer.key_id}")
    return 0


def cmd_keys_upgrade(args: argparse.Namespace, s: Settings) -> int:
    """Re-encrypt key files with the current KDF (scrypt N=2^17; issue #9 item 5)."""
    from keys import FileKeystore, passphrase_from_env_or_prompt

    store = FileKeystore(s.keystore_dir, passphrase=passphrase_from_env_or_prompt(env=os.environ, prompt=True))
    for name in args.names or store.names():
        done = store.upgrade(name)
        info = store.key_file_info(name)
        state = "upgraded" if done else "up to date"
        print(f"{name} {state}: {info.kdf} N=2^{info.n.bit_length() - 1} r={info.r} p={info.p}")
    return 0


def _keys_generate_own(args: argparse.Namespace, s: Settings) -> int:
    """Client mode: a keystore holding this user's key alone (issue #9 item 4); the
    public key is printed for a security admin to register."""
    from keys import FileKeystore, passphrase_from_env_or_prompt

    ks = FileKeystore(s.keystore_dir, passphrase=passphrase_from_env_or_prompt(env=os.environ, prompt=True))
    others = [n for n in ks.names() if n != args.name]
    if others:
        raise ConfigError(
            f"the keystore in {s.keystore_dir} already holds another person's key: "
            "a client keystore holds its user's key alone (use another RESERVE_HOME)"
        )
    signer = ks.load(args.name) if ks.exists(args.name) else ks.generate(args.name)
    print(f"{args.name} {signer.key_id}")
    print(f"public key (hex): {signer.public_key.hex()}")
    print(
        "give it to a security admin: reserve keys register --user "
        f"{args.name} --roles ... --public-key-file FILE"
    )
    return 0


def cmd_keys_register(b: Backend, args: argparse.Namespace) -> int:
    from ledger.bodies import new_body

    pub = None
    if args.public_key_file:
        from cli.files import read_text
        from ledger.pubkey import parse_public_key

        pub = parse_public_key(read_text(args.public_key_file, what="public key", stdin_ok=False))
    if pub is None:
        # A custodial key kept in the server's keystore: only local mode has one.
        led = b.local_ledger("registering a key without --public-key-file (a server-held key)")
        res = led.register_key(
            admin=b.acting_user(),
            user=args.user,
            roles=_csv(args.roles),
            sites=_csv(args.sites),
            owners=_csv(args.owners),
            clearance=args.clearance,
        )
        print(f"registered a key for '{args.user}' at seq {res.first_seq}")
        return 0
    body = new_body(
        "key.registered",
        b.acting_user(),
        user=args.user,
        public_key=pub.hex(),
        roles=_csv(args.roles),
        sites=_csv(args.sites),
        owners=_csv(args.owners),
        clearance=args.clearance,
        custody="self",
    )
    print(f"registered a key for '{args.user}' at seq {b.append(body).seq}")
    return 0


def cmd_keys_revoke(b: Backend, args: argparse.Namespace) -> int:
    from ledger.bodies import new_body

    key_id = b.key_ref(args.key_id)  # id, id prefix or user name (issue #12)
    body = new_body("key.revoked", b.acting_user(), key_id=key_id, reason=args.reason)
    print(f"revoked key {key_id[:16]}... at seq {b.append(body).seq}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace, s: Settings) -> int:
    from ledger.pubkey import to_pem

    led = _ledger(s)
    res = led.rotate_log_key()
    s.log_pub_path.write_text(to_pem(led.log_signer().public_key))
    print(f"log key rotated at seq {res.first_seq}; new public key in {s.log_pub_path}")
    return 0


def cmd_keys_list(b: Backend, args: argparse.Namespace) -> int:
    from cli.output import emit

    doc = b.read("/registry/keys")
    rows = [
        [
            k["key_id"],
            k["user"],
            f"revoked@{k['revoked_seq']}" if k["revoked_seq"] is not None else "active",
            f"registered@{k['registered_seq']}",
        ]
        for k in doc["keys"]
    ]
    return emit(args.format, doc=doc, headers=["KEY", "USER", "STATE", "REGISTERED"], rows=rows)


def cmd_user_list(b: Backend, args: argparse.Namespace) -> int:
    from cli.output import emit

    doc = b.read("/registry/users")
    rows = [
        [
            u["user"],
            ",".join(u["roles"]) or "-",
            ",".join(u["sites"]) or "-",
            ",".join(u["owners"]) or "-",
            u["clearance"],
            f"{u['active_keys']} active/{u['keys']}",
        ]
        for u in doc["users"]
    ]
    return emit(args.format, doc=doc, headers=["USER", "ROLES", "SITES", "OWNERS", "CLEARANCE", "KEYS"], rows=rows)


def cmd_move(args: argparse.Namespace, s: Settings) -> int:
    led = _ledger(s)
    res = led.act(_acting_user(args, s), "test.movement", account=args.account, delta=args.delta)
    print(f"appended at seq {res.first_seq}; size {res.size}")
    return 0


def cmd_verify(args: argparse.Namespace, s: Settings) -> int:
    from cli.quorum import check_note_quorum, witness_policy
    from cli.report_opts import run_verification
    from ledger.store.audit import entry_line, verify_access, verify_database
    from ledger.store.witnesses import cosigned_note

    _witnesses, quorum = witness_policy(args)  # a usage error before, not after, the long run
    trusted = _trust(args.trust) if args.trust else None
    reader = engine = _reader(_with_db(args, s))
    anchor = _read_anchor(args.checkpoint)
    from cli.owner_scope_cmd import verify_keyring

    keyring = verify_keyring(engine, _with_db(args, s))
    source: dict[str, Any] = {
        "kind": "database",
        "trust": "the given key" if trusted else "the database's own genesis (not anchored)",
        "held_checkpoint": anchor is not None,
    }

    def run(observer: Any) -> Report:
        rep = verify_database(
            engine, trusted_log_key=trusted, jobs=args.jobs, anchor=anchor, observer=observer,
            keyring=keyring,
        )
        source["access_log"] = {"status": "failed"}  # until it passes
        source["access_log"] = {
            **verify_access(
                engine, log_id=rep.log_id, log_keys=[bytes.fromhex(k) for k in rep.log_keys]
            ),
            "status": "passed",
        }
        return rep

    report = run_verification(
        args,
        run,
        source=source,
        entry_at=lambda seq: entry_line(engine, seq),
        skipped=frozenset(
            {"bundle-files"}
            | (set() if anchor else {"held-checkpoint"})
            | (set() if trusted else {"trust-anchor"})
        ),
    )
    if quorum:
        with reader.connect() as conn:
            check_note_quorum(args, cosigned_note(conn, report.size))
    _print_report(report)
    if trusted is None:
        print("note: no --trust key given; the log key was taken from the database's own genesis")
    return 0


def cmd_export(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store.access import record
    from ledger.store.audit import export_bundle
    from ledger.store.log import head

    settings = _with_db(args, s)
    led = _ledger(settings)  # the log key signs the access log's checkpoint
    reader = _reader(settings)
    # Every export is in the access log (issue #10), written first: no record, no export.
    h = head(reader)
    if h is None:
        raise ConfigError("the database holds no log: run 'reserve init' first")
    event = {"actor": s.user or "local-admin", "action": "export", "outcome": "started",
             "size": int(h.size), "via": "cli", **({"owner": args.owner} if args.owner else {})}
    from sqlalchemy.exc import SQLAlchemyError

    try:  # on the primary (RESERVE_DB), even when the bundle is read from a replica
        record(led.engine, event, log_signer=led.log_signer(), log_id=h.log_id)
    except SQLAlchemyError:
        raise StorageError(
            "the export could not be recorded in the access log (the primary database did "
            "not take the write), so nothing was exported"
        ) from None
    if args.owner:  # an owner-scoped bundle (issue #14)
        from cli.owner_scope_cmd import export_owner

        return export_owner(args, reader, led.owner_keyring())
    size, root = export_bundle(reader, Path(args.dir))
    print(f"exported {size} entries to {args.dir} (root {root.hex()})")
    return 0


def cmd_verify_bundle(args: argparse.Namespace, s: Settings) -> int:
    from cli.quorum import check_bundle_quorum, witness_policy
    from cli.report_opts import DATABASE_ONLY, run_verification
    from ledger.bundle import Bundle
    from ledger.verify import verify_history

    witness_policy(args)
    b = Bundle(Path(args.dir))
    trusted = _trust(args.trust, bundle_dir=Path(args.dir))
    from cli.owner_scope_cmd import owner_secrets, verify_owner

    if args.owner or b.scope is not None:  # owner-scoped (issue #14)
        if args.owner != b.scope:
            raise ConfigError(f"this bundle is scoped to owner {b.scope}: verify it with --owner {b.scope}"
                              if b.scope else "this bundle is of the whole log: verify it without --owner")
        return verify_owner(args, trusted)
    secrets = owner_secrets(args.owner_key)
    anchor = _read_anchor(args.checkpoint)

    source: dict[str, Any] = {
        "kind": "bundle",
        "trust": "the given key",
        "held_checkpoint": anchor is not None,
    }

    def run(observer: Any) -> Report:
        from ledger.bundle import CHECKPOINTS, ENTRIES

        damaged = None
        try:
            b.check_files()
        except VerificationFailed as exc:
            # The manifest is unsigned and says only that a file changed; the signed
            # entries say which entry and how (issue #10). Verify them and name it; if
            # they pass, the damaged manifest is the failure.
            if exc.public_message not in {
                f"bundle file {n} does not match the manifest" for n in (ENTRIES, CHECKPOINTS)
            }:
                raise
            damaged = exc
            source["bundle_files"] = exc.public_message
        rep = verify_history(
            b.rows(),
            b.checkpoints(),
            trusted_log_key=trusted,
            projections=b.projections(),
            jobs=args.jobs,
            expected_size=b.manifest.get("size"),
            anchor=anchor,
            observer=observer,
            owner_secrets=secrets,
        )
        if damaged is not None:
            raise damaged
        return rep

    report = run_verification(
        args,
        run,
        source=source,
        entry_at=b.line,
        skipped=DATABASE_ONLY | (frozenset() if anchor else {"held-checkpoint"}),
    )
    check_bundle_quorum(args, Path(args.dir) / "checkpoint.note", report)
    _print_report(report)
    return 0


def cmd_demo(args: argparse.Namespace, s: Settings) -> int:
    from cli.demo import run_demo

    s.home.mkdir(parents=True, exist_ok=True)
    led = _ledger(s)
    if not led.is_initialised():
        from ledger.pubkey import to_pem

        led.init(log_id="reserve.local/demo", admin="admin", demo=True, owner_scoped=True)
        s.log_pub_path.write_text(to_pem(led.log_signer().public_key))
    size = run_demo(led)
    print(f"demo history written: {size} entries in {s.db_url}")
    return 0


def cmd_serve(args: argparse.Namespace, s: Settings) -> int:
    from cli import serve

    return serve.run(args, _configure_logging)


def cmd_token(args: argparse.Namespace, s: Settings) -> int:
    from api.config import load_api_settings
    from api.services import build_services
    from keys import passphrase_from_env_or_prompt
    from ledger.errors import NotFound

    svc = build_services(load_api_settings(), passphrase=lambda: passphrase_from_env_or_prompt(env=os.environ, prompt=True))
    if svc.issuer is None:
        raise ConfigError("tokens come from the identity provider (RESERVE_JWKS_URL is set)")
    if not any(k.user == args.user and k.revoked_seq is None for k in svc.ledger.registered_keys()):
        raise NotFound(f"no registered user '{args.user}'")
    print(svc.issuer.issue(args.user))
    return 0


def cmd_login(b: Backend, args: argparse.Namespace) -> int:
    """Key login; the token is cached 0600 in RESERVE_HOME and never printed."""
    if b.mode != "client":
        raise ConfigError("login is for client mode: set RESERVE_URL or --server")
    from cli.remote import RemoteBackend

    assert isinstance(b, RemoteBackend)
    ttl = b.login()
    print(f"logged in as {b.acting_user()} at {b.http.base}; token valid {ttl // 60} min, cached in RESERVE_HOME")
    return 0


def _with_db(args: argparse.Namespace, s: Settings) -> Settings:
    if getattr(args, "db", None):
        return replace(s, db_url=args.db, read_db_url=None)
    return s


def _read_anchor(path: str | None) -> str | None:
    if path is None:
        return None
    from cli.files import read_text

    return read_text(path, what="checkpoint", stdin_ok=False)


def _trust(value: str, *, bundle_dir: Path | None = None) -> bytes:
    from cli.trust import trusted_key

    return trusted_key(value, bundle_dir=bundle_dir)


# -- parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from cli.quorum import add_quorum_args
    from cli.report_opts import add_report_options

    p = argparse.ArgumentParser(
        prog="reserve",
        description="Signed ledger of strategic reserve stock. Local mode drives the ledger on "
        "this machine (the server's administrators); with --server or RESERVE_URL, reserve is a "
        "client of the service and signs with your own key from RESERVE_HOME.",
    )
    p.add_argument("--server", metavar="URL", help="the service to talk to (or RESERVE_URL): client mode")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Any, help_: str, *, acts: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        if acts:
            sp.add_argument(
                "--as", dest="as_user", metavar="USER", help="whose key signs (or RESERVE_USER)"
            )
        return sp

    sp = add("init", cmd_init, "create the database, keystore and genesis entry")
    sp.add_argument(
        "--log-id", help="the log's origin name (default: reserve.local/ledger/<random>)"
    )
    sp.add_argument(
        "--admin", default="admin", help="name of the first security admin (default: admin)"
    )

    keys = sub.add_parser("keys", help="generate, register, revoke and rotate keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def kadd(name: str, fn: Any, help_: str, *, acts: bool = False) -> argparse.ArgumentParser:
        sp = ksub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        if acts:
            sp.add_argument(
                "--as", dest="as_user", metavar="USER", help="whose key signs (or RESERVE_USER)"
            )
        return sp

    sp = kadd(
        "generate",
        cmd_keys_generate,
        "create a key pair in the keystore (client mode: your own keystore, your key alone)",
    )
    sp.set_defaults(client_ok=True)
    sp.add_argument("name")
    sp = kadd("register", wrap(cmd_keys_register), "register a user's key (security admin)", acts=True)
    sp.add_argument("--user", required=True)
    sp.add_argument(
        "--roles",
        required=True,
        help="comma-separated: operator, official, minister, auditor, security_admin",
    )
    sp.add_argument("--sites", help="comma-separated site codes in scope")
    sp.add_argument("--owners", help="comma-separated owner codes in scope")
    sp.add_argument(
        "--clearance", default="NONE", choices=["NONE", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
    )
    sp.add_argument(
        "--public-key-file", help="the user's own public key (PEM or hex); default: keystore key"
    )
    sp = kadd(
        "revoke", wrap(cmd_keys_revoke), "revoke a key (security admin, or the key's owner)", acts=True
    )
    sp.add_argument(
        "key_id", metavar="KEY", help="key id, id prefix (8+ characters), or the user's name (one active key)"
    )
    sp.add_argument("--reason", required=True)
    kadd("rotate", cmd_keys_rotate, "rotate the log's checkpoint key")
    add_format(kadd("list", wrap(cmd_keys_list), "list registered keys"))
    sp = kadd("upgrade", cmd_keys_upgrade, "re-encrypt key files with scrypt (older files: PBKDF2)")
    sp.add_argument("names", nargs="*", metavar="NAME", help="default: every key in the keystore")
    sp.set_defaults(client_ok=True)  # a client's own keystore too

    user = sub.add_parser("user", help="registered users")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    sp = add_format(usub.add_parser("list", help="users with their roles and scopes"))
    sp.set_defaults(fn=wrap(cmd_user_list))

    sp = add("move", cmd_move, "append a generic test movement (operator)", acts=True)
    sp.add_argument("account")
    sp.add_argument("delta", type=int)

    sp = add(
        "verify",
        cmd_verify,
        "verify the database: signatures, chain, checkpoints, rules, projections",
    )
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.add_argument(
        "--trust",
        help="the log key to anchor to: a file (e.g. $RESERVE_HOME/log.pub), 64 hex digits, "
        "or a note verifier key",
    )
    sp.add_argument(
        "--jobs", type=int, default=1, help="processes for signature checks (default 1)"
    )
    sp.add_argument("--checkpoint", help="a signed checkpoint kept from an earlier audit; the log must extend it")
    add_quorum_args(sp)
    add_report_options(sp)

    sp = add("export", cmd_export, "write an audit bundle to DIR")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.add_argument("--owner", metavar="CODE", help="only this owner's part, with proof of completeness (issue #14)")
    sp.add_argument("dir")

    sp = add("verify-bundle", cmd_verify_bundle, "verify an export bundle offline")
    sp.set_defaults(client_ok=True)
    sp.add_argument("dir")
    sp.add_argument("--owner", metavar="CODE", help="the bundle is this owner's scoped bundle (issue #14)")
    sp.add_argument(
        "--owner-key",
        action="append",
        metavar="FILE",
        help="an owner's scoped-audit key file: with --owner, that owner's; without, give every "
        "owner's to check every leaf's owner commitment",
    )
    sp.add_argument(
        "--trust",
        required=True,
        help="the log key, obtained out of band: 64 hex digits, a note verifier key "
        "(name+hash+base64), or a file holding one or a PEM key (log.pub)",
    )
    sp.add_argument(
        "--checkpoint",
        help="a signed checkpoint you kept from an earlier audit (checkpoint.note): the history "
        "must extend it, so a rolled-back or rewritten log fails",
    )
    sp.add_argument(
        "--jobs", type=int, default=1, help="processes for signature checks (default 1)"
    )
    add_quorum_args(sp)
    add_report_options(sp)

    add("demo", cmd_demo, "initialise if needed and write a sample history")

    sp = add("serve", cmd_serve, "run the HTTP service on the ledger named by RESERVE_DB / RESERVE_HOME")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--print-tokens", action="store_true", help="print how to get a token for each user")
    from cli import serve as cli_serve

    cli_serve.add_arguments(sp)
    sp = add("token", cmd_token, "print a short-lived access token for a registered user")
    sp.add_argument("--user", required=True)

    sp = sub.add_parser("login", help="client mode: log in with your own key (proof of possession)")
    sp.add_argument("--as", dest="as_user", metavar="USER", help="who you are (or RESERVE_USER)")
    sp.set_defaults(fn=wrap(cmd_login))

    from cli import audit as cli_audit
    from cli import bundle_cmd as cli_bundle
    from cli import inbox as cli_inbox
    from cli import ops as cli_ops
    from cli import proposals as cli_proposals
    from cli import release as cli_release
    from cli import stock as cli_stock
    from cli import witness as cli_witness

    cli_stock.register(sub, wrap=wrap)
    cli_release.register(sub, wrap=wrap)
    cli_inbox.register(sub, wrap=wrap)  # issue #12: inboxes
    cli_proposals.add_parser(sub, wrap=wrap)
    cli_ops.add_parser(sub, trust=_trust, anchor=_read_anchor)
    cli_witness.add_parser(sub)
    cli_audit.add_parser(sub)
    cli_bundle.add_parser(sub)
    from cli import owner_scope_cmd

    owner_scope_cmd.add_parser(sub)
    return p


def wrap(fn: Callable[[Backend, argparse.Namespace], int]) -> Any:
    """A handler of ``(backend, args)`` as a parser ``fn``: the backend is local, or the
    service when a server URL is given. Such commands run in both modes."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        from cli.backend import make_backend

        backend = make_backend(
            settings,
            server=getattr(args, "server", None),
            user=getattr(args, "as_user", None) or settings.user,
            ledger_for=_ledger,
        )
        return int(fn(backend, args))

    run.client_ok = True  # type: ignore[attr-defined]
    return run


def _client_url(args: argparse.Namespace) -> str | None:
    return getattr(args, "server", None) or os.environ.get("RESERVE_URL") or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.fn in (cmd_serve, cmd_token):  # the service's variables too, in one list
            from api.config import api_problems

            raise_problems(api_problems(os.environ, workers=getattr(args, "workers", None)))
        settings = load_settings(strict=True)  # every problem at once, one line each
        _configure_logging(settings.log_level, settings.log_format)
        if (
            _client_url(args)
            and not getattr(args.fn, "client_ok", False)
            and not getattr(args, "client_ok", False)
        ):
            raise ConfigError(
                f"'{args.command}' runs on the server in local mode: unset RESERVE_URL / --server"
            )
        return int(args.fn(args, settings))
    except VerificationFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except Rejected as exc:
        # A refusal names no seq: the entry was not appended (issue #8, item 10).
        print(f"refused ({exc.rule}), the entry was not appended: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except LedgerError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ServiceFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNEXPECTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            return _unexpected(exc)
        print(
            f"error: '{args.command}' needs the server extra (missing {exc.name}): "
            "pip install 'reserve-ledger[server]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:  # never a traceback on the terminal (issue #2)
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    try:
        import structlog
    except ModuleNotFoundError:
        pass
    else:
        log = structlog.get_logger("reserve.cli")
        log.error("unexpected", error_class=type(exc).__name__)
        log.debug("unexpected_traceback", exc_info=True)  # RESERVE_LOG_LEVEL=debug
    print(
        f"error: unexpected failure ({type(exc).__name__}); nothing more was written",
        file=sys.stderr,
    )
    return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
