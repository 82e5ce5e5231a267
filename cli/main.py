"""``reserve``: the command line of the ledger.

Errors are one line on stderr and a non-zero exit, never a traceback: 1 for a refusal or
a failed verification, 2 for bad usage or configuration. ``verify-bundle`` imports only
``ledger`` modules free of the database and of secrets, so an auditor can run it on a
machine with nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ledger.config import Settings, load_settings, raise_problems
from ledger.errors import ConfigError, LedgerError, Rejected, VerificationFailed

if TYPE_CHECKING:
    from ledger.service import Ledger
    from ledger.verify import Report

EXIT_REFUSED = 1
EXIT_USAGE = 2


def _configure_logging(level: str, fmt: str = "json") -> None:
    from ledger.logconfig import configure_logging

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
    res = led.init(log_id=log_id, admin=args.admin)
    s.log_pub_path.write_text(to_pem(led.log_signer().public_key))
    print(
        f"initialised log {log_id}: admin '{args.admin}', log key in {s.log_pub_path}, size {res.size}"
    )
    return 0


def cmd_keys_generate(args: argparse.Namespace, s: Settings) -> int:
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


def cmd_keys_register(args: argparse.Namespace, s: Settings) -> int:
    led = _ledger(s)
    pub = None
    if args.public_key_file:
        from ledger.pubkey import parse_public_key

        pub = parse_public_key(Path(args.public_key_file).read_text())
    res = led.register_key(
        admin=_acting_user(args, s),
        user=args.user,
        roles=_csv(args.roles),
        sites=_csv(args.sites),
        owners=_csv(args.owners),
        clearance=args.clearance,
        public_key=pub,
    )
    print(f"registered a key for '{args.user}' at seq {res.first_seq}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, s: Settings) -> int:
    led = _ledger(s)
    res = led.revoke_key(actor=_acting_user(args, s), key_id=args.key_id, reason=args.reason)
    print(f"revoked key {args.key_id[:16]}... at seq {res.first_seq}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace, s: Settings) -> int:
    from ledger.pubkey import to_pem

    led = _ledger(s)
    res = led.rotate_log_key()
    s.log_pub_path.write_text(to_pem(led.log_signer().public_key))
    print(f"log key rotated at seq {res.first_seq}; new public key in {s.log_pub_path}")
    return 0


def cmd_keys_list(args: argparse.Namespace, s: Settings) -> int:
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    led = Ledger(make_engine(s.db_url), keystore=None)  # type: ignore[arg-type]
    for k in led.registered_keys():
        state = f"revoked@{k.revoked_seq}" if k.revoked_seq is not None else "active"
        print(f"{k.key_id}  {k.user:<16} {state:<14} registered@{k.registered_seq}")
    return 0


def cmd_user_list(args: argparse.Namespace, s: Settings) -> int:
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    led = Ledger(make_engine(s.db_url), keystore=None)  # type: ignore[arg-type]
    users: dict[str, list[Any]] = {}
    for k in led.registered_keys():
        if k.user != "log":
            users.setdefault(k.user, []).append(k)
    print(f"{'USER':<16} {'ROLES':<24} {'SITES':<20} {'OWNERS':<20} {'CLEARANCE':<12} KEYS")
    for user, recs in sorted(users.items()):
        active = [r for r in recs if r.revoked_seq is None]
        latest = (active or recs)[-1]
        print(
            f"{user:<16} {','.join(latest.roles) or '-':<24} {','.join(latest.sites) or '-':<20} "
            f"{','.join(latest.owners) or '-':<20} {latest.clearance:<12} {len(active)} active/{len(recs)}"
        )
    return 0


def cmd_move(args: argparse.Namespace, s: Settings) -> int:
    led = _ledger(s)
    res = led.act(_acting_user(args, s), "test.movement", account=args.account, delta=args.delta)
    print(f"appended at seq {res.first_seq}; size {res.size}")
    return 0


def cmd_verify(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store.audit import verify_database

    trusted = _trust(args.trust) if args.trust else None
    report = verify_database(
        _reader(_with_db(args, s)), trusted_log_key=trusted, jobs=args.jobs, anchor=_read_anchor(args.checkpoint)
    )
    _print_report(report)
    if trusted is None:
        print("note: no --trust key given; the log key was taken from the database's own genesis")
    return 0


def cmd_export(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store.audit import export_bundle

    size, root = export_bundle(_reader(_with_db(args, s)), Path(args.dir))
    print(f"exported {size} entries to {args.dir} (root {root.hex()})")
    return 0


def cmd_verify_bundle(args: argparse.Namespace, s: Settings) -> int:
    from ledger.bundle import Bundle
    from ledger.verify import verify_history

    b = Bundle(Path(args.dir))
    b.check_files()
    report = verify_history(
        b.rows(),
        b.checkpoints(),
        trusted_log_key=_trust(args.trust),
        projections=b.projections(),
        jobs=args.jobs,
        expected_size=b.manifest.get("size"),
        anchor=_read_anchor(args.checkpoint),
    )
    _print_report(report)
    return 0


def cmd_demo(args: argparse.Namespace, s: Settings) -> int:
    from cli.demo import run_demo

    s.home.mkdir(parents=True, exist_ok=True)
    led = _ledger(s)
    if not led.is_initialised():
        from ledger.pubkey import to_pem

        led.init(log_id="reserve.local/demo", admin="admin", demo=True)
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


def _with_db(args: argparse.Namespace, s: Settings) -> Settings:
    if getattr(args, "db", None):
        return replace(s, db_url=args.db, read_db_url=None)
    return s


def _read_anchor(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint file {path}") from exc


def _trust(path: str) -> bytes:
    from ledger.pubkey import parse_public_key

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read trust file {path}") from exc
    return parse_public_key(text)


# -- parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reserve", description="Signed ledger of strategic reserve stock."
    )
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

    sp = kadd("generate", cmd_keys_generate, "create a key pair in the keystore")
    sp.add_argument("name")
    sp = kadd("register", cmd_keys_register, "register a user's key (security admin)", acts=True)
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
        "revoke", cmd_keys_revoke, "revoke a key (security admin, or the key's owner)", acts=True
    )
    sp.add_argument("key_id")
    sp.add_argument("--reason", required=True)
    kadd("rotate", cmd_keys_rotate, "rotate the log's checkpoint key")
    kadd("list", cmd_keys_list, "list registered keys")
    sp = kadd("upgrade", cmd_keys_upgrade, "re-encrypt key files with scrypt (older files: PBKDF2)")
    sp.add_argument("names", nargs="*", metavar="NAME", help="default: every key in the keystore")

    user = sub.add_parser("user", help="registered users")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    sp = usub.add_parser("list", help="users with their roles and scopes")
    sp.set_defaults(fn=cmd_user_list)

    sp = add("move", cmd_move, "append a generic test movement (operator)", acts=True)
    sp.add_argument("account")
    sp.add_argument("delta", type=int)

    sp = add(
        "verify",
        cmd_verify,
        "verify the database: signatures, chain, checkpoints, rules, projections",
    )
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.add_argument("--trust", help="log public key file to anchor to (e.g. $RESERVE_HOME/log.pub)")
    sp.add_argument(
        "--jobs", type=int, default=1, help="processes for signature checks (default 1)"
    )
    sp.add_argument("--checkpoint", help="a signed checkpoint kept from an earlier audit; the log must extend it")

    sp = add("export", cmd_export, "write an audit bundle to DIR")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.add_argument("dir")

    sp = add("verify-bundle", cmd_verify_bundle, "verify an export bundle offline")
    sp.add_argument("dir")
    sp.add_argument("--trust", required=True, help="the log's public key file (log.pub)")
    sp.add_argument(
        "--checkpoint",
        help="a signed checkpoint you kept from an earlier audit (checkpoint.note): the history "
        "must extend it, so a rolled-back or rewritten log fails",
    )
    sp.add_argument(
        "--jobs", type=int, default=1, help="processes for signature checks (default 1)"
    )

    add("demo", cmd_demo, "initialise if needed and write a sample history")

    sp = add("serve", cmd_serve, "run the HTTP service on the ledger named by RESERVE_DB / RESERVE_HOME")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--print-tokens", action="store_true", help="print how to get a token for each user")
    from cli import serve as cli_serve

    cli_serve.add_arguments(sp)
    sp = add("token", cmd_token, "print a short-lived access token for a registered user")
    sp.add_argument("--user", required=True)

    from cli import ops as cli_ops
    from cli import release as cli_release
    from cli import stock as cli_stock

    writer = cli_stock.writer_factory(_ledger, _acting_user)
    reader = cli_stock.reader_factory(_reader)
    cli_stock.register(sub, writer=writer, reader=reader)
    cli_release.register(sub, writer=writer, reader=reader)
    cli_ops.add_parser(sub, trust=_trust, anchor=_read_anchor)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.fn in (cmd_serve, cmd_token):  # the service's variables too, in one list
            from api.config import api_problems

            raise_problems(api_problems(os.environ, workers=getattr(args, "workers", None)))
        settings = load_settings(strict=True)  # every problem at once, one line each
        _configure_logging(settings.log_level, settings.log_format)
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # never a traceback on the terminal (issue #2)
        log = structlog.get_logger("reserve.cli")
        log.error("unexpected", error_class=type(exc).__name__)
        log.debug("unexpected_traceback", exc_info=True)  # RESERVE_LOG_LEVEL=debug
        print(
            f"error: unexpected failure ({type(exc).__name__}); nothing more was written",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
