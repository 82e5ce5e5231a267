"""Co-signature proposals from the command line (issue #9 item 3, client mode).

    reserve pending [--format F]          what waits for your signature
    reserve cosign ID [--yes]             show exactly what you sign, then sign it
    reserve proposal show ID [--format F]
    reserve proposal withdraw ID          (the proposer)

A proposal is opened by the commands that need a second person:
``reserve release policy ... --cosign MINISTER`` and ``reserve stock count ...
--second-officer NAME``. Proposals live in the service; each person signs with their own
key, and the entry enters the log only when the last signature arrives.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from cli.output import add_format, emit
from ledger.errors import ConfigError, LedgerError, Rejected
from ledger.units import format_quantity

if TYPE_CHECKING:
    from cli.backend import Backend
    from cli.remote import RemoteBackend

# Entry fields that hold grams: shown in human units before anyone signs.
QUANTITY_FIELDS = ("quantity", "quantity_in", "quantity_out", "book", "counted", "cap", "annual_quantity")


def _remote(b: Backend) -> RemoteBackend:
    if b.mode != "client":
        raise ConfigError("proposals live in the service: set RESERVE_URL or --server (client mode)")
    from cli.remote import RemoteBackend

    assert isinstance(b, RemoteBackend)
    return b


def describe(entry: dict[str, Any]) -> list[str]:
    """The entry, field by field, quantities in human units: what the signature covers."""
    lines = [f"{entry.get('kind')} by {entry.get('author')} (entry {entry.get('id')}, created {entry.get('created_at')})"]
    for key in sorted(entry):
        if key in ("kind", "author", "id", "created_at"):
            continue
        value = entry[key]
        if key in QUANTITY_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            shown = f"{format_quantity(value)} ({value} g)"
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value, ensure_ascii=False)
        lines.append(f"  {key}: {shown}")
    return lines


def _status_line(p: dict[str, Any]) -> str:
    signed = ", ".join(str(x) for x in p.get("signed_by") or []) or "-"
    waiting = ", ".join(str(x) for x in p.get("cosigners") or []) or "-"
    out = f"proposal {p.get('id')}: {p.get('status')}; signed by {signed}; co-signers {waiting}"
    if p.get("expires_at"):
        out += f"; expires {p['expires_at']}"
    outcome = p.get("outcome")
    if isinstance(outcome, dict) and outcome.get("result") == "appended":
        out += f"; appended at seq {outcome.get('seq')}"
    elif isinstance(outcome, dict) and outcome.get("result") == "refused":
        problem = outcome.get("problem") or {}
        rule = str(problem.get("type", "")).rsplit("/rule/", 1)
        why = f" ({rule[1]})" if len(rule) == 2 else ""
        out += f"; refused{why}: {problem.get('detail')}"
    elif outcome:
        out += f"; outcome: {json.dumps(outcome)}"
    return out


def pending(b: Backend, a: argparse.Namespace) -> int:
    doc = _remote(b).read("/proposals", **{"for": "me"})
    items = doc.get("proposals", doc) if isinstance(doc, dict) else doc
    rows = [
        [p.get("id"), (p.get("entry") or {}).get("kind", p.get("kind", "-")), p.get("proposer", (p.get("entry") or {}).get("author", "-")),
         ",".join(p.get("signed_by") or []) or "-", p.get("status"), p.get("expires_at", "-")]
        for p in items
    ]
    return emit(a.format, doc=doc, headers=["ID", "KIND", "PROPOSER", "SIGNED BY", "STATUS", "EXPIRES"], rows=rows)


def show(b: Backend, a: argparse.Namespace) -> int:
    p = _remote(b).proposal(a.id)

    def text() -> None:
        print(_status_line(p))
        if isinstance(p.get("summary"), str):
            print(f"  summary: {p['summary']}")
        for line in describe(p.get("entry") or {}):
            print(line)

    return emit(a.format, doc=p, headers=["ID", "STATUS"], rows=[[p.get("id"), p.get("status")]], text=text)


def _confirm(yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError("not on a terminal: pass --yes to sign without being asked")
    answer = input("sign exactly this entry with your key? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise LedgerError("not signed")


def cosign(b: Backend, a: argparse.Namespace) -> int:
    r = _remote(b)
    p = r.proposal(a.id)
    entry = p.get("entry")
    if not isinstance(entry, dict):
        raise LedgerError(f"proposal {a.id} has no entry to sign")
    print(f"you ({r.acting_user()}) are asked to sign:")
    for line in describe(entry):
        print(line)
    _confirm(a.yes)
    sys.stdout.flush()
    result = {**p, **r.cosign(a.id, entry)}
    outcome = result.get("outcome")
    if isinstance(outcome, dict) and outcome.get("result") == "refused":
        # The last signature made the entry complete and the ledger refused it: exit 1
        # with the rule, as a refused write does in every other command.
        problem = outcome.get("problem") or {}
        parts = str(problem.get("type", "")).rsplit("/rule/", 1)
        detail = str(problem.get("detail") or "refused")
        if len(parts) == 2:
            raise Rejected(parts[1], detail, field=problem.get("field"))
        raise LedgerError(detail)
    print(_status_line(result))
    return 0


def withdraw(b: Backend, a: argparse.Namespace) -> int:
    result = _remote(b).withdraw(a.id)
    print(_status_line({"id": a.id, **result}))
    return 0


def add_parser(sub: Any, *, wrap: Any) -> None:
    def acting(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--as", dest="as_user", metavar="USER", help="who you are (or RESERVE_USER)")
        return sp

    sp = acting(add_format(sub.add_parser("pending", help="proposals waiting for your signature (client mode)")))
    sp.set_defaults(fn=wrap(pending))
    sp = acting(sub.add_parser("cosign", help="show a proposal's entry and sign it with your own key (client mode)"))
    sp.add_argument("id")
    sp.add_argument("--yes", action="store_true", help="sign without asking (scripts)")
    sp.set_defaults(fn=wrap(cosign))
    g = sub.add_parser("proposal", help="co-signature proposals (client mode)").add_subparsers(
        dest="proposal_command", required=True, metavar="ACTION"
    )
    sp = acting(add_format(g.add_parser("show", help="a proposal: its entry, who signed, status, outcome")))
    sp.add_argument("id")
    sp.set_defaults(fn=wrap(show))
    sp = acting(g.add_parser("withdraw", help="withdraw your proposal"))
    sp.add_argument("id")
    sp.set_defaults(fn=wrap(withdraw))
