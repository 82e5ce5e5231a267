"""Logical backups of a whole ledger database, and restores that must verify (issue #11).

A backup is one text file of JSON lines, written from one consistent snapshot::

    line 1   the manifest: format, schema revision, log id, size, root, the signed
             checkpoint the backup ends at, and per table its row count and the SHA-256
             of its lines
    then     {"r": {column: value}, "t": table} per row, table by table in the
             manifest's order, rows by primary key (binary columns in base64)

Every table the service needs is in it: the log, checkpoints, tree nodes, projections,
sealed site locations (ciphertext only: opening them needs the same sealing key), the
access log and its checkpoints, revoked tokens and idempotency keys. Nothing in it is a
key.

A restore goes into an EMPTY database only. It first checks the whole file against its
manifest (count and digest of every table) without touching the database, then, in ONE
transaction, creates the schema, writes the rows and runs the full verification over
what it wrote: signatures, chain, checkpoints, rules, projections, tree nodes, the access
log, against the log key and the checkpoint the operator supplies (the history must be
consistent with it). Any failure rolls the transaction back: nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, LargeBinary, Table, inspect, select
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.access_log import verify_access_log
from ledger.checkpoint import parse_checkpoint
from ledger.errors import ConfigError, LedgerError, StorageError, VerificationFailed
from ledger.store.access import iter_access, iter_access_checkpoints
from ledger.store.audit import verify_connection
from ledger.store.db import _alembic_config, write_transaction
from ledger.store.schema import checkpoints, log_state, metadata

__all__ = ["FORMAT", "BackupInfo", "RestoreInfo", "read_manifest", "restore", "write_backup"]

FORMAT: Final = "reserve-ledger-backup/1"
_CHUNK: Final = 1000
#: A line longer than this is not one we wrote (the largest leaf is far smaller).
_MAX_LINE: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class BackupInfo:
    size: int
    root: str
    checkpoint: str
    rows: int


@dataclass(frozen=True)
class RestoreInfo:
    size: int
    root: str
    checkpoint: str
    rows: int


def _tables() -> list[Table]:
    return list(metadata.sorted_tables)


def _head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the project always has migrations
        raise ConfigError("no schema migrations found")
    return head


def _line(table: str, row: dict[str, Any]) -> bytes:
    return (
        json.dumps({"r": row, "t": table}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        + "\n"
    ).encode("utf-8")


def _encode_row(table: Table, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        value = getattr(row, col.name)
        if value is not None and isinstance(col.type, LargeBinary):
            value = base64.b64encode(bytes(value)).decode("ascii")
        out[col.name] = value
    return out


def _decode_row(table: Table, row: Any, n: int) -> dict[str, Any]:
    if not isinstance(row, dict) or set(row) != {c.name for c in table.columns}:
        raise VerificationFailed(f"backup line {n}: the columns of {table.name} differ")
    out: dict[str, Any] = {}
    for col in table.columns:
        value = row[col.name]
        if value is not None and isinstance(col.type, LargeBinary):
            if not isinstance(value, str):
                raise VerificationFailed(f"backup line {n}: {table.name}.{col.name} is not base64")
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise VerificationFailed(
                    f"backup line {n}: {table.name}.{col.name} is not base64"
                ) from None
        out[col.name] = value
    return out


# -- backup ---------------------------------------------------------------------------


def _create(path: Path) -> IO[bytes]:
    """A new file readable by its owner only: a backup holds no key, but it does hold the
    sealed locations, the access log and every user's scope."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    return os.fdopen(fd, "wb")


def write_backup(engine: Engine, path: Path) -> BackupInfo:
    """Write the database behind ``engine`` (a read-only snapshot engine) to ``path``.

    Refuses to overwrite ``path``. The file appears complete or not at all.
    """
    if os.path.lexists(path):
        raise ConfigError(f"{path} exists; a backup never overwrites a file")
    parent = path.parent if str(path.parent) else Path(".")
    body = parent / f".{path.name}.body-{secrets.token_hex(4)}"
    final_tmp = parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        with engine.begin() as conn:
            head = conn.execute(select(log_state)).first()
            if head is None:
                raise ConfigError("the database holds no log: nothing to back up")
            cp = conn.execute(
                select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)
            ).first()
            if cp is None or int(cp.size) != int(head.size):
                raise StorageError("the log head is not covered by a checkpoint; try again")
            tables: dict[str, dict[str, Any]] = {}
            total = 0
            with _create(body) as out:
                for table in _tables():
                    digest = hashlib.sha256()
                    count = 0
                    pk = list(table.primary_key.columns)
                    for row in conn.execute(select(table).order_by(*pk)):
                        line = _line(table.name, _encode_row(table, row))
                        digest.update(line)
                        out.write(line)
                        count += 1
                    tables[table.name] = {"rows": count, "sha256": digest.hexdigest()}
                    total += count
                out.flush()
                os.fsync(out.fileno())
            manifest = {
                "format": FORMAT,
                "schema_revision": _head_revision(),
                "log_id": head.log_id,
                "size": int(head.size),
                "root": bytes(cp.root).hex(),
                "checkpoint": cp.note,
                "tables": tables,
            }
        with _create(final_tmp) as out, body.open("rb") as src:
            out.write(json.dumps(manifest, sort_keys=True).encode("utf-8") + b"\n")
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.link(final_tmp, path)  # never replaces a file that appeared meanwhile
    except FileExistsError:
        raise ConfigError(f"{path} exists; a backup never overwrites a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot write the backup: {exc.strerror or 'error'}") from None
    except OperationalError as exc:
        raise StorageError("cannot read the database") from exc
    finally:
        for tmp in (body, final_tmp):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return BackupInfo(size=int(head.size), root=manifest["root"], checkpoint=cp.note, rows=total)


# -- restore --------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read the backup {path}: {exc.strerror or 'error'}") from None


def _manifest_from(fh: IO[bytes]) -> dict[str, Any]:
    first = fh.readline(_MAX_LINE)
    try:
        manifest = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        raise VerificationFailed("the backup's manifest (line 1) is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VerificationFailed(f"not a backup of format {FORMAT}")
    expected = {t.name for t in _tables()}
    tables = manifest.get("tables")
    if not isinstance(tables, dict) or set(tables) != expected:
        raise VerificationFailed("the backup's manifest does not list this schema's tables")
    for name, info in tables.items():
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("rows"), int)
            or not isinstance(info.get("sha256"), str)
        ):
            raise VerificationFailed(f"the backup's manifest entry for {name} is malformed")
    for field, kind in (("size", int), ("root", str), ("checkpoint", str), ("log_id", str)):
        if not isinstance(manifest.get(field), kind):
            raise VerificationFailed(f"the backup's manifest has no valid '{field}'")
    try:
        cp = parse_checkpoint(manifest["checkpoint"])
    except LedgerError:
        raise VerificationFailed("the backup's checkpoint is not a checkpoint note") from None
    if cp.size != manifest["size"] or cp.root.hex() != manifest["root"]:
        raise VerificationFailed("the backup's checkpoint does not match its size and root")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    with _open(path) as fh:
        return _manifest_from(fh)


def _rows(fh: IO[bytes], manifest: dict[str, Any]) -> Iterator[tuple[Table, dict[str, Any]]]:
    """Every row, decoded, in order; checks each table's count and digest as it ends and
    refuses a line out of place. Raises VerificationFailed on the first difference."""
    by_name = {t.name: t for t in _tables()}
    order = [t.name for t in _tables()]
    digests = {name: hashlib.sha256() for name in order}
    counts = dict.fromkeys(order, 0)
    pos = 0
    n = 1

    def close(upto: int) -> None:
        for name in order[pos:upto]:
            want = manifest["tables"][name]
            if counts[name] != want["rows"] or digests[name].hexdigest() != want["sha256"]:
                raise VerificationFailed(f"table {name} in the backup does not match its manifest")

    for raw in iter(lambda: fh.readline(_MAX_LINE), b""):
        n += 1
        if not raw.endswith(b"\n"):
            raise VerificationFailed(f"backup line {n} is truncated or too long")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise VerificationFailed(f"backup line {n} is not valid JSON") from None
        name = obj.get("t") if isinstance(obj, dict) else None
        if not isinstance(name, str) or name not in by_name or set(obj) != {"r", "t"}:
            raise VerificationFailed(f"backup line {n} names no table of this schema")
        idx = order.index(name)
        if idx < pos:
            raise VerificationFailed(f"backup line {n}: table {name} out of order")
        if idx > pos:
            close(idx)
            pos = idx
        digests[name].update(raw)
        counts[name] += 1
        if counts[name] > manifest["tables"][name]["rows"]:
            raise VerificationFailed(f"table {name} in the backup does not match its manifest")
        yield by_name[name], _decode_row(by_name[name], obj["r"], n)
    close(len(order))


def check_backup(path: Path) -> dict[str, Any]:
    """The manifest, once every table of the file matches it (reads the file, writes
    nothing)."""
    with _open(path) as fh:
        manifest = _manifest_from(fh)
        for _ in _rows(fh, manifest):
            pass
    return manifest


def _sqlite_file(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database
    return Path(db) if db and db != ":memory:" else None


def _ensure_empty(engine: Engine) -> None:
    try:
        names = inspect(engine).get_table_names()
    except (OperationalError, DBAPIError) as exc:
        raise StorageError("cannot reach the target database") from exc
    if names:
        raise ConfigError("the target database is not empty; restore only into an empty database")


def restore(
    engine: Engine, path: Path, *, trusted_log_key: bytes, checkpoint: str, jobs: int = 1
) -> RestoreInfo:
    """Restore ``path`` into the empty database behind ``engine``; commit only if the
    restored history verifies against ``trusted_log_key`` and is consistent with the
    operator's ``checkpoint``. Anything else: an error, and nothing written."""
    manifest = check_backup(path)  # a damaged or altered file stops here, untouched
    if manifest.get("schema_revision") != _head_revision():
        raise ConfigError(
            "the backup was made at another schema revision; restore it with the release "
            "that made it, then upgrade"
        )
    sqlite_file = _sqlite_file(engine)
    created = sqlite_file is not None and not sqlite_file.exists()
    _ensure_empty(engine)
    try:
        report_size, rows = _restore_in_one_transaction(
            engine, path, manifest, trusted_log_key=trusted_log_key, checkpoint=checkpoint, jobs=jobs
        )
    except BaseException:
        engine.dispose()
        if created and sqlite_file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(sqlite_file) + suffix).unlink()
        raise
    return RestoreInfo(
        size=report_size, root=manifest["root"], checkpoint=manifest["checkpoint"], rows=rows
    )


def _restore_in_one_transaction(
    engine: Engine,
    path: Path,
    manifest: dict[str, Any],
    *,
    trusted_log_key: bytes,
    checkpoint: str,
    jobs: int,
) -> tuple[int, int]:
    cfg = _alembic_config()
    total = 0
    try:
        with write_transaction(engine) as conn, _open(path) as fh:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            _manifest_from(fh)
            batch: list[dict[str, Any]] = []
            current: Table | None = None
            for table, row in _rows(fh, manifest):
                if table is not current or len(batch) >= _CHUNK:
                    _flush(conn, current, batch)
                    current = table
                batch.append(row)
                total += 1
            _flush(conn, current, batch)
            report = verify_connection(
                conn, trusted_log_key=trusted_log_key, jobs=jobs, anchor=checkpoint
            )
            if report.size != manifest["size"] or report.root.hex() != manifest["root"]:
                raise VerificationFailed("the restored log does not end at the backup's checkpoint")
            keys = [bytes.fromhex(k) for k in report.log_keys]
            verify_access_log(
                iter_access(conn),
                iter_access_checkpoints(conn),
                log_id=report.log_id,
                log_keys=keys,
            )
    except (OperationalError, DBAPIError) as exc:
        raise StorageError("the database refused the restore; nothing was written") from exc
    return report.size, total


def _flush(conn: Connection, table: Table | None, batch: list[dict[str, Any]]) -> None:
    if table is not None and batch:
        conn.execute(table.insert(), batch)
    batch.clear()
