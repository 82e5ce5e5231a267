"""The verification report as a JSON-ready document (issue #10; shape in README.md).

Built from what the :class:`~ledger.audit_report.collect.Collector` saw pass and, when
verification failed, the :class:`~ledger.errors.VerificationFailed`: which check failed,
at which entry (``seq``), which reducer rule, and the evidence (the entry's kind, id,
author, times and signing keys, read from the source). Everything from the log is data
here; the HTML renderer escapes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from ledger.audit_report.collect import COMMON_RULES, Collector
from ledger.crypto import key_id
from ledger.errors import VerificationFailed
from ledger.records import OrderRec, RequestRec
from ledger.timefmt import now
from ledger.verify import Report

FORMAT = "reserve-ledger/verification-report/v1"
MAX_TEXT = 200  # characters of any one text taken from a failing entry

# Every check, in the order the verifier runs them; ``per_entry`` checks run on each
# entry as it streams, the others once at the end.
CHECKS: tuple[tuple[str, bool, str], ...] = (
    ("bundle-files", False, "every bundle file has the SHA-256 its manifest lists"),
    ("schema", True, "each entry is canonical JSON (RFC 8785) of a known kind, strictly typed"),
    ("sequence", True, "each entry is at its place: seq 0, 1, 2... (nothing deleted or reordered)"),
    ("hash-chain", True, "each entry's prev_hash is the leaf hash of the one before"),
    ("clock", True, "the log's clock (recorded_at) never runs backwards"),
    ("database-columns", True, "the indexed columns say what the signed leaf says"),
    ("signatures", True, "every Ed25519 signature verifies over the entry (RFC 8032)"),
    ("rules", True, "the reducer accepts every entry: the rules in force at that point"),
    ("checkpoints", True, "each checkpoint's root matches the entries and its note verifies"),
    ("coverage", False, "every entry is covered by a signed checkpoint; nothing truncated"),
    ("held-checkpoint", False, "the history extends the checkpoint the auditor kept"),
    ("trust-anchor", False, "the trusted log key is one of this log's keys"),
    ("projections", False, "the server's projections equal the replayed state"),
    ("checkpoint-columns", False, "stored checkpoint roots and times match the signed notes"),
    ("tree-nodes", False, "the stored Merkle tree nodes match the entries"),
    ("log-head", False, "the log head names the last entry"),
    ("access-log", False, "the access log's chain and signed checkpoints"),
)

# Failure message -> check, first match wins (messages of ledger.verify, ledger.bundle,
# ledger.store.audit, ledger.access_log; the tamper tests pin each case).
_CLASSIFY: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), c)
    for p, c in (
        (r"^bundle file ", "bundle-files"),
        (r"^checkpoints\.jsonl line", "checkpoints"),
        (r"^malformed entry", "schema"),
        (r"^entry out of place", "sequence"),
        (r"^hash chain broken", "hash-chain"),
        (r"^recorded_at runs backwards", "clock"),
        (r"^stored column", "database-columns"),
        (r"^rule broken", "rules"),
        (r"checkpoint you hold", "held-checkpoint"),
        (r"stored root or time differs", "checkpoint-columns"),
        (r"^checkpoint at size", "checkpoints"),
        (r"^history truncated|not covered by any signed checkpoint|history is empty", "coverage"),
        (r"^the trusted log key", "trust-anchor"),
        (r"^projection ", "projections"),
        (r"tree node", "tree-nodes"),
        (r"log head", "log-head"),
        (r"^access (log|checkpoint)", "access-log"),
        (r"signature|signed twice|base64", "signatures"),
    )
)


def classify(exc: VerificationFailed) -> str:
    """The check a failure belongs to (see :data:`CHECKS`), ``"other"`` if none."""
    for pattern, check in _CLASSIFY:
        if pattern.search(exc.public_message):
            return check
    return "other"


def build_document(
    col: Collector,
    *,
    report: Report | None,
    failure: VerificationFailed | None,
    source: dict[str, Any],
    entry_at: Callable[[int], bytes | None] | None = None,
    skipped: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The report document. ``skipped`` names checks that do not apply to this source
    (``database-columns`` for a bundle, ``bundle-files`` for a database...)."""
    failed_check = classify(failure) if failure is not None else None
    failures = []
    if failure is not None:
        failures.append(_failure(failure, failed_check or "other", entry_at))
    damaged = source.get("bundle_files")  # the manifest's complaint, when entries said more
    if damaged and failed_check != "bundle-files":
        failures.append(
            {"seq": None, "check": "bundle-files", "rule": None, "message": damaged,
             "evidence": {"message": damaged}}
        )  # fmt: skip
    state = col.state
    keys = state.keys_snapshot() if state is not None else {}
    return {
        "format": FORMAT,
        "generated_at": now(),
        "result": "failed" if failure is not None else "passed",
        "source": source,
        "log": {
            "log_id": (report.log_id if report else col.log_id),
            "size": report.size if report else None,  # unknown: it did not verify
            "root": report.root.hex() if report else None,
            "log_keys": list(report.log_keys) if report else [],
        },
        "failures": failures,
        "checks": _checks(col, failure, failed_check, skipped, damaged=bool(damaged)),
        "entries": {
            "verified": col.entries,
            "by_kind": dict(sorted(col.by_kind.items())),
            "first_recorded_at": col.first_at or None,
            "last_recorded_at": col.last_at or None,
        },
        "signatures": {"verified": col.signatures},
        "keys": [
            {
                "key_id": k.key_id,
                "user": k.user,
                "roles": list(k.roles),
                "custody": k.custody,
                "valid_from_seq": k.registered_seq,
                "valid_until_seq": k.revoked_seq,
                "signatures": col.sigs_by_key.get(k.public_key, 0),
            }
            for k in sorted(keys.values(), key=lambda k: (k.registered_seq, k.key_id))
        ],
        "checkpoints": {
            "verified": col.checkpoints,
            "last_size": col.last_checkpoint,
            "cosignatures": dict(sorted(col.cosignatures.items())),
            "cosignatures_checked": bool(source.get("witnesses")),
        },
        "rules": [
            {"rule": r, "kinds": sorted(col.kinds_of_rule[r]), "entries": n}
            for r, n in sorted(col.by_rule.items())
        ],
        "common_rules": [
            {"rule": name, "what": what, "entries": col.entries} for name, what in COMMON_RULES
        ],
        "stock": _stock(col),
        "losses": {
            "events": col.loss_events,
            "listed": col.losses,
            "totals": [
                {"account": a, "material": m, "quantity": q}
                for (a, m), q in sorted(col.loss_totals.items())
            ],
        },
        "releases": _releases(col),
        "access_log": source.get("access_log"),
    }


def _checks(
    col: Collector,
    failure: VerificationFailed | None,
    failed: str | None,
    skipped: frozenset[str],
    *,
    damaged: bool = False,
) -> list[dict[str, Any]]:
    names = [c[0] for c in CHECKS]
    fail_at = names.index(failed) if failed in names else len(names)
    failed_per_entry = failed is not None and failed in names and CHECKS[fail_at][1]
    out = []
    for i, (name, per_entry, what) in enumerate(CHECKS):
        if name in skipped:
            status = "not-applicable"
        elif name == failed or (damaged and name == "bundle-files"):
            status = "failed"
        elif failure is None:
            status = "passed"
        elif failed_per_entry:
            # Streaming checks passed for every entry before the bad one; the checks
            # made at the end never ran.
            status = "passed" if per_entry or i < fail_at else "not-run"
        else:
            status = "passed" if i < fail_at else "not-run"
        row: dict[str, Any] = {"check": name, "what": what, "status": status}
        if per_entry and status != "not-applicable":
            row["entries"] = col.entries
        out.append(row)
    return out


_FIELD = re.compile(r"\(([^()]*)\)$")


def _failure(
    exc: VerificationFailed, check: str, entry_at: Callable[[int], bytes | None] | None
) -> dict[str, Any]:
    m = _FIELD.search(exc.public_message)
    evidence: dict[str, Any] = {"message": exc.public_message}
    if m and check in ("schema", "signatures", "rules"):
        evidence["field"] = m.group(1)
    if exc.seq is not None and entry_at is not None:
        line = entry_at(exc.seq)
        if line is not None:
            evidence["entry"] = _entry_evidence(line)
    return {
        "seq": exc.seq,
        "check": check,
        "rule": exc.rule,
        "message": exc.public_message,
        "evidence": evidence,
    }


def _text(v: Any) -> Any:
    if isinstance(v, bool | int) or v is None:
        return v
    return str(v)[:MAX_TEXT]


def _entry_evidence(line: bytes) -> dict[str, Any]:
    """What identifies the entry found at the failing seq (leniently: it may be the
    forgery). Only envelope fields: no free text beyond :data:`MAX_TEXT` characters."""
    import hashlib

    out: dict[str, Any] = {"leaf_sha256": hashlib.sha256(line).hexdigest(), "bytes": len(line)}
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        out["parse"] = "not JSON"
        return out
    if not isinstance(raw, dict):
        return out
    for k in ("seq", "prev_hash", "recorded_at"):
        if k in raw:
            out[k] = _text(raw[k])
    body = raw.get("entry")
    if isinstance(body, dict):
        for k in ("kind", "id", "author", "created_at"):
            if k in body:
                out[k] = _text(body[k])
    sigs = raw.get("sigs")
    if isinstance(sigs, list):
        ids = []
        for s in sigs[:4]:
            pub = s.get("pub") if isinstance(s, dict) else None
            try:
                ids.append(key_id(bytes.fromhex(pub)) if isinstance(pub, str) else None)
            except ValueError:
                ids.append(None)
        out["signing_key_ids"] = ids
    return out


def _stock(col: Collector) -> dict[str, Any]:
    series = []
    for (owner, material), s in sorted(col.series.items()):
        targets = [
            {
                "valid_from": t.valid_from,
                "valid_to": t.valid_to,
                "days_of_cover": t.days_of_cover,
                "annual_quantity": t.annual_quantity,
                # grams the target asks to hold (rounded up, as reports.cover does)
                "required": -(-t.days_of_cover * t.annual_quantity // 365),
                "set_seq": t.set_seq,
            }
            for t in col.targets.get((owner, material), [])
        ]
        series.append(
            {
                "owner": owner,
                "material": material,
                "held": col.held[(owner, material)],
                "points": [list(p) for p in s.points],
                "targets": targets,
            }
        )
    return {"series": series}


def _releases(col: Collector) -> dict[str, Any]:
    if col.state is None:
        return {"orders": [], "open_requests": []}
    orders = sorted(col.state.table("release_orders").values(), key=lambda o: o.seq)
    requests = sorted(col.state.table("release_requests").values(), key=lambda r: r.seq)
    return {
        "orders": [order_json(o) for o in orders if isinstance(o, OrderRec)],
        "open_requests": [request_json(r) for r in requests if isinstance(r, RequestRec)],
    }


def _approvals(approvals: tuple[tuple[str, str, int, str, int | None], ...]) -> list[dict[str, Any]]:
    return [
        {"user": u, "key_id": k, "seq": s, "recorded_at": at, "cap": cap}
        for u, k, s, at, cap in approvals
    ]


def order_json(o: OrderRec) -> dict[str, Any]:
    """An order as the report and ``reserve bundle releases`` show it (site codes only)."""
    return {
        "id": o.id,
        "seq": o.seq,
        "recorded_at": o.recorded_at,
        "owner": o.owner,
        "material": o.material,
        "regime": o.regime,
        "recipient": o.recipient,
        "purpose": o.purpose,
        "request": o.request,
        "requester": o.requester,
        "quantity_requested": o.quantity_requested,
        "evidence_type": o.evidence_type,
        "approvals": _approvals(o.approvals),
        "quorum": o.quorum,
        "minister": o.minister,
        "cap": o.cap,
        "executed": o.cap - o.remaining,
        "remaining": o.remaining,
        "valid_from": o.valid_from,
        "valid_until": o.valid_until,
        "sites": list(o.sites),
        "report_to": o.report_to,
        "executions": [
            {
                "seq": e[0],
                "entry_id": e[1],
                "recorded_at": e[2],
                "occurred_at": e[3],
                "kind": e[4],
                "site": e[5],
                "lot": e[6],
                "quantity": e[7],
                "counterparty": e[8],
            }
            for e in o.executions
        ],
        "revoked_seq": o.revoked_seq,
        "revoked_by": o.revoked_by,
        "revoke_reason": o.revoke_reason,
    }


def request_json(r: RequestRec) -> dict[str, Any]:
    return {
        "id": r.id,
        "seq": r.seq,
        "recorded_at": r.recorded_at,
        "owner": r.owner,
        "material": r.material,
        "quantity": r.quantity,
        "recipient": r.recipient,
        "regime": r.regime,
        "purpose": r.purpose,
        "requester": r.requester,
        "evidence_type": r.evidence_type,
        "approvals": _approvals(r.approvals),
        "lapses_at": r.lapses_at,
    }
