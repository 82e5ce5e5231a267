"""``reserve backup`` and ``reserve restore``: logical backups for the operations team
(issue #11). The storage work is in :mod:`ledger.store.backup`; this only parses and prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.config import Settings
from ledger.errors import ConfigError

__all__ = ["add_parser"]

Trust = Callable[[str], bytes]
Anchor = Callable[[str | None], str | None]


def _db_url(args: argparse.Namespace, s: Settings) -> str:
    return str(args.db or s.db_url)


def add_parser(sub: Any, *, trust: Trust, anchor: Anchor) -> None:
    """Register ``backup`` and ``restore`` on the ``reserve`` command's subparsers."""

    def cmd_backup(args: argparse.Namespace, s: Settings) -> int:
        from ledger.store.backup import write_backup
        from ledger.store.db import make_engine

        info = write_backup(make_engine(_db_url(args, s), readonly=True), Path(args.file))
        print(f"backup {args.file}: {info.rows} rows, log size {info.size}, root {info.root}")
        print("it ends at this checkpoint (keep a copy apart from the backup):")
        print(info.checkpoint, end="" if info.checkpoint.endswith("\n") else "\n")
        if args.checkpoint_out:
            try:
                with open(args.checkpoint_out, "x") as fh:
                    fh.write(info.checkpoint)
            except OSError as exc:
                raise ConfigError(
                    f"cannot write {args.checkpoint_out}: {exc.strerror or 'error'}"
                ) from None
        return 0

    def cmd_restore(args: argparse.Namespace, s: Settings) -> int:
        from ledger.store.backup import restore
        from ledger.store.db import make_engine

        note = anchor(args.checkpoint)
        assert note is not None  # --checkpoint is required
        info = restore(
            make_engine(_db_url(args, s)),
            Path(args.file),
            trusted_log_key=trust(args.trust),
            checkpoint=note,
            jobs=args.jobs,
        )
        print(
            f"restored {info.rows} rows; the log verifies to size {info.size} root {info.root}"
        )
        return 0

    sp = sub.add_parser(
        "backup",
        help="write a logical backup of the database to FILE",
        description="Write every table the service needs, from one consistent snapshot, "
        "with a manifest of SHA-256 digests and the signed checkpoint the backup ends at.",
    )
    sp.add_argument("file", metavar="FILE", help="the backup file to create (never overwritten)")
    sp.add_argument("--db", help="database URL (default RESERVE_DB)")
    sp.add_argument(
        "--checkpoint-out",
        metavar="NOTE_FILE",
        help="also write the checkpoint the backup ends at to NOTE_FILE (new file)",
    )
    sp.set_defaults(fn=cmd_backup)

    sp = sub.add_parser(
        "restore",
        help="restore a backup into an EMPTY database, only if it verifies",
        description="Check FILE against its manifest, then write it into an empty database "
        "in one transaction that commits only if the restored history verifies against "
        "--trust and is consistent with --checkpoint. Otherwise nothing is written.",
    )
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--db", help="database URL of the EMPTY target (default RESERVE_DB)")
    sp.add_argument(
        "--checkpoint",
        required=True,
        metavar="NOTE_FILE",
        help="a signed checkpoint kept apart from the backup (as `reserve backup` printed it, "
        "or one a witness cosigned): the restored log must be consistent with it",
    )
    sp.add_argument(
        "--trust", required=True, metavar="LOG_KEY", help="the log's public key file (log.pub)"
    )
    sp.add_argument("--jobs", type=int, default=1, help="processes for signature checks")
    sp.set_defaults(fn=cmd_restore)
