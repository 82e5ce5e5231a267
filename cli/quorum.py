"""``--witness VKEY`` (repeatable) and ``--quorum K`` for every verifying command
(issue #10): a checkpoint without K valid cosignatures from distinct given witnesses is
refused, so a log cannot show this auditor a history its witnesses did not see."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.checkpoint import parse_checkpoint
from ledger.cosignature import Cosigner, check_quorum, parse_cosigner_vkey
from ledger.errors import ConfigError, LedgerError, VerificationFailed

if TYPE_CHECKING:
    from ledger.verify import Report


def add_quorum_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--witness", action="append", default=[], metavar="VKEY",
        help="a witness's verifier key (repeatable); its cosignatures count toward the quorum",
    )
    sp.add_argument(
        "--quorum", type=int, default=None, metavar="K",
        help="valid cosignatures required from distinct --witness keys (default: all given, 0 if none)",
    )


def witness_policy(args: argparse.Namespace) -> tuple[list[Cosigner], int]:
    """The witnesses and quorum the command line asks for, checked before any work."""
    try:
        witnesses = list(dict.fromkeys(parse_cosigner_vkey(v) for v in args.witness))
    except LedgerError as exc:
        raise ConfigError(f"--witness: {exc.public_message}") from None
    quorum = len(witnesses) if args.quorum is None else args.quorum
    if not 0 <= quorum <= len(witnesses):
        raise ConfigError(f"--quorum {quorum} cannot be met by {len(witnesses)} distinct --witness key(s)")
    return witnesses, quorum


def check_note_quorum(args: argparse.Namespace, note: str) -> int:
    """Refuse ``note`` without the quorum; return the quorum that was required."""
    witnesses, quorum = witness_policy(args)
    check_quorum(note, witnesses=witnesses, quorum=quorum)
    return quorum


def check_bundle_quorum(args: argparse.Namespace, note_path: Path, report: Report) -> None:
    """``checkpoint.note`` must be the newest checkpoint the verifier just checked (the
    same size and root) before its cosignatures are counted."""
    witnesses, quorum = witness_policy(args)
    if quorum == 0:
        return
    try:
        note = note_path.read_text()
        cp = parse_checkpoint(note)
    except (OSError, UnicodeDecodeError, LedgerError):
        raise VerificationFailed("the bundle's checkpoint.note is missing or malformed") from None
    if cp.size != report.size or cp.root != report.root:
        raise VerificationFailed(
            f"the bundle's checkpoint.note (size {cp.size}) is not its newest verified checkpoint"
        )
    check_quorum(note, witnesses=witnesses, quorum=quorum)
