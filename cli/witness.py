"""``reserve witness``: run a witness, and tell the log about its witnesses (issue #10).

A partner runs ``init`` and ``serve`` on its own machine (the witness key never leaves
``--state DIR``); the log's administrator runs ``add``/``list``/``feed`` on the server.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ledger.config import Settings
    from ledger.store.witness_feed import WitnessFeeder

KEY_NAME = "witness"
INFO_FILE = "witness.json"
STATE_FILE = "state.json"


def _keystore(state: Path) -> Any:
    from keys import FileKeystore, passphrase_from_env_or_prompt

    return FileKeystore(state / "keys", passphrase=passphrase_from_env_or_prompt(env=os.environ, prompt=True))


def _info(state: Path) -> dict[str, str]:
    try:
        data = json.loads((state / INFO_FILE).read_text())
        return {"name": str(data["name"]), "vkey": str(data["vkey"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{state} is not a witness state directory (run 'reserve witness init')") from None


def cmd_init(args: argparse.Namespace, s: Settings) -> int:
    from ledger.cosignature import Cosigner, cosigner_key_hash

    state = Path(args.state)
    cosigner_key_hash(name=args.name, public_key=bytes(32))  # validates the name first
    if (state / INFO_FILE).exists():
        raise ConfigError(f"{state} already holds a witness")
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = _keystore(state).generate(KEY_NAME)  # 0600, encrypted with the passphrase
    vkey = Cosigner(name=args.name, public_key=signer.public_key).vkey
    (state / INFO_FILE).write_text(json.dumps({"name": args.name, "vkey": vkey}, indent=1) + "\n")
    print(vkey)
    return 0


def build_witness(state: Path, log_vkeys: list[str]) -> Any:
    """The :class:`ledger.witness.Witness` kept in ``state`` for the given logs."""
    from ledger.checkpoint import parse_note_verifier_key
    from ledger.witness import FileWitnessStore, Witness

    if not log_vkeys:
        raise ConfigError("say which log to witness: --log LOG_VKEY (the bundle's log.vkey)")
    logs: dict[str, list[bytes]] = {}
    for vkey in log_vkeys:
        origin, key = parse_note_verifier_key(vkey.strip())
        logs.setdefault(origin, []).append(key)
    info = _info(state)
    return Witness(
        name=info["name"],
        signer=_keystore(state).load(KEY_NAME),
        logs=logs,
        store=FileWitnessStore(state / STATE_FILE),
    )


def cmd_serve(args: argparse.Namespace, s: Settings) -> int:
    from witness.server import make_server

    server = make_server(build_witness(Path(args.state), args.log), args.host, args.port)
    host, port = server.server_address[:2]
    print(f"witness listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _engine(args: argparse.Namespace, s: Settings) -> Engine:
    from ledger.store.db import make_engine

    return make_engine(getattr(args, "db", None) or s.db_url)


def cmd_add(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store.witnesses import add_witness

    row = add_witness(_engine(args, s), name=args.name, url=args.url, vkey=args.vkey)
    print(f"witness {row.name} added ({row.url}); the service sends it each new checkpoint")
    return 0


def cmd_list(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store.witnesses import last_cosigned_size, list_witnesses

    with _engine(args, s).connect() as conn:
        for w in list_witnesses(conn):
            print(f"{w.name}  {w.url}  cosigned up to {last_cosigned_size(conn, w.name)}  {w.vkey}")
    return 0


def cmd_feed(args: argparse.Namespace, s: Settings) -> int:
    from ledger.store.witness_feed import feed_witnesses
    from witness.transport import UrllibWitnessTransport

    outcomes = feed_witnesses(_engine(args, s), UrllibWitnessTransport())
    for name, outcome in sorted(outcomes.items()):
        print(f"{name}: {outcome}")
    return 0


def start_feeder(engine: Engine) -> WitnessFeeder:
    """The service's background sender (``reserve serve``); ``RESERVE_WITNESS_INTERVAL``
    seconds between rounds (default 2)."""
    from ledger.store.witness_feed import WitnessFeeder
    from witness.transport import UrllibWitnessTransport

    try:
        interval = float(os.environ.get("RESERVE_WITNESS_INTERVAL") or 2.0)
    except ValueError:
        raise ConfigError("RESERVE_WITNESS_INTERVAL must be a number of seconds") from None
    feeder = WitnessFeeder(engine, UrllibWitnessTransport(), interval=max(interval, 0.1))
    feeder.start()
    return feeder


def add_parser(sub: Any) -> None:
    """Add ``reserve witness ...`` to the top-level parser."""
    p = sub.add_parser("witness", help="witnesses that cosign the log's checkpoints (C2SP tlog-witness)")
    g = p.add_subparsers(dest="witness_command", required=True, metavar="ACTION")

    sp = g.add_parser("init", help="make a witness key in DIR and print its verifier key")
    sp.add_argument("name", help="the witness's name, e.g. witness.example.org/w1")
    sp.add_argument("--state", required=True, metavar="DIR")
    sp.set_defaults(fn=cmd_init, client_ok=True)

    sp = g.add_parser("serve", help="answer POST /add-checkpoint (C2SP tlog-witness)")
    sp.add_argument("--state", required=True, metavar="DIR")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument(
        "--log", action="append", default=[], metavar="LOG_VKEY",
        help="the log's note verifier key (log.vkey); repeatable",
    )
    sp.set_defaults(fn=cmd_serve, client_ok=True)

    sp = g.add_parser("add", help="register a witness with this log (administrator, on the server)")
    sp.add_argument("name")
    sp.add_argument("url", help="the witness's submission prefix, e.g. https://w.example.org")
    sp.add_argument("vkey", help="the witness's verifier key (printed by 'witness init')")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.set_defaults(fn=cmd_add)

    sp = g.add_parser("list", help="the log's witnesses and how far each has cosigned")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.set_defaults(fn=cmd_list)

    sp = g.add_parser("feed", help="send the newest checkpoint to every witness now (one round)")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.set_defaults(fn=cmd_feed)
