"""Reports people can hand on (issue #12): the CRMA aggregate and an order's report to
parliament as a table, CSV, or a readable page (Markdown or HTML), in tonnes, naming
sites by code only (the reports carry no location: ``ledger.store.reports`` and
``ledger.store.releases`` never read one).

Pure functions from the JSON document the API returns (the same in local and client
mode) to text. Every text that comes from the log is untrusted (an author chooses a
recipient, a purpose, a comment): HTML escapes it (``html.escape``, quotes too) under a
Content-Security-Policy that forbids every fetch; Markdown escapes its own punctuation,
so a purpose cannot open a link or break a table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #bbb;padding:.2em .5em;"
    "text-align:left}td.n{text-align:right}h2{margin-top:1.5em}"
)
# Inline Markdown (emphasis, code, links, HTML, tables): every line we write starts with
# our own words or a "|", so block syntax (#, -, 1.) cannot start a line from log text.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def grams(d: dict[str, Any], key: str) -> int | None:
    """A quantity in grams from a document: ``key_g`` where the API gives the exact
    integer beside the display text, else ``key`` itself when it is the integer."""
    v = d.get(f"{key}_g", d.get(key))
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def tonnes(g: int | None) -> str:
    """Exact tonnes (1 t = 10^6 g), never rounded."""
    if g is None:
        return "-"
    return f"{(Decimal(g) / Decimal(1_000_000)).normalize():f} t"


def _t(value: Any) -> str:
    """A tonnes figure the report already holds as a decimal string."""
    return "-" if value is None else f"{Decimal(str(value)).normalize():f} t"


# -- the CRMA aggregate -------------------------------------------------------------------

CRMA_HEADERS = ["MATERIAL", "NAME", "FORM", "HELD", "ANNUAL CONSUMPTION", "% OF CONSUMPTION", "PURITY"]


def crma_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for m in doc.get("materials", []):
        purity = "; ".join(f"{p['purity']} % {p['basis']}" for p in m.get("purity", [])) or "-"
        pct = m.get("percent_of_consumption")
        rows.append([
            m["material"], m["name"], m["form"], _t(m["tonnes_held"]),
            _t(m.get("annual_consumption_tonnes")), "-" if pct is None else f"{pct} %", purity,
        ])
    return rows


def crma_page(doc: dict[str, Any], fmt: str) -> str:
    owners = ", ".join(doc.get("owners") or []) or "all owners"
    title = f"Strategic stocks of critical raw materials, {doc['year']} (CRMA Art. 22)"
    intro = [
        f"Owners: {owners}. Generated at {doc['generated_at']} from the signed ledger as of seq "
        f"{doc['as_of_seq']}. Quantities in tonnes; no site is named.",
    ]
    sections: list[tuple[str, list[str], list[list[str]]]] = [("Stock by material", CRMA_HEADERS, crma_rows(doc))]
    years = sorted({p["year"] for m in doc.get("materials", []) for p in m.get("trend", [])})
    if years:
        trend = [
            [m["material"], *[_t({p["year"]: p["tonnes"] for p in m["trend"]}.get(y)) for y in years]]
            for m in doc.get("materials", [])
        ]
        sections.append(("Held at the end of each year", ["MATERIAL", *map(str, years)], trend))
    return _page(fmt, title, intro, sections)


# -- an order's report to parliament ----------------------------------------------------------

EXEC_HEADERS = ["SEQ", "RECORDED", "KIND", "SITE", "LOT", "QUANTITY", "TO", "ON LOAN"]
APPROVAL_HEADERS = ["APPROVED BY", "SEQ", "AT", "CONDITION", "COUNTS", "COMMENT"]


def execution_rows(doc: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for e in doc.get("executions", []):
        out = grams(e, "loan_outstanding")
        rows.append([
            e["seq"], e["recorded_at"], e["kind"], e["site"], e["lot"], tonnes(grams(e, "quantity")),
            e["counterparty"], "-" if out is None else tonnes(out) + (" OVERDUE" if e.get("overdue") else ""),
        ])
    return rows


def approval_rows(doc: dict[str, Any]) -> list[list[Any]]:
    return [
        [a["user"], a["seq"], a["recorded_at"], tonnes(grams(a, "cap")) if grams(a, "cap") is not None else "-",
         "yes" if a["counts"] else f"no ({a.get('note', '')})", a.get("comment", "") or "-"]
        for a in doc.get("approvals", [])
    ]


def order_summary(doc: dict[str, Any]) -> list[str]:
    o = doc["order"]
    lines = [
        f"To: {doc['report_to']}. Generated at {doc['generated_at']} from the signed ledger as of seq "
        f"{doc['as_of_seq']}. Quantities in tonnes; sites by code only.",
        f"Order {o['id']} (seq {o['seq']}) by minister {o['minister']} at {o['recorded_at']}: {o['status']}.",
        f"Regime: {o['regime']}; {o['material']} of {o['owner']} to {o['recipient']}.",
        f"Requested by {doc['requester']} at {doc['requested_at']}: {tonnes(grams(doc, 'quantity_requested'))}, "
        f"purpose: {doc['purpose']}.",
        f"Cap {tonnes(grams(o, 'cap'))}, executed {tonnes(grams(o, 'executed'))}, remaining "
        f"{tonnes(grams(o, 'remaining'))}; valid {o['valid_from']} to {o['valid_until']} at "
        f"{', '.join(o['sites'])}.",
        f"Quorum {doc['quorum']} (policy of seq {doc['policy_seq']}); on loan {tonnes(grams(doc, 'on_loan'))}.",
    ]
    if o.get("revoked_seq") is not None:
        lines.append(f"Revoked at seq {o['revoked_seq']} by {o['revoked_by']}: {o['revoke_reason']}.")
    return lines


def order_page(doc: dict[str, Any], fmt: str) -> str:
    title = f"Report on release order {doc['order']['id'][:12]} to {doc['report_to']}"
    return _page(fmt, title, order_summary(doc), [
        ("Approvals", APPROVAL_HEADERS, approval_rows(doc)),
        ("Executions", EXEC_HEADERS, execution_rows(doc)),
    ])


# -- rendering ---------------------------------------------------------------------------------


def md_escape(text: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def _page(fmt: str, title: str, intro: Sequence[str], sections: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]]) -> str:
    if fmt == "md":
        out = [f"# {md_escape(title)}", "", *[md_escape(p) + "\n" for p in intro]]
        for name, headers, rows in sections:
            out += [f"## {md_escape(name)}", ""]
            if not rows:
                out += ["None.", ""]
                continue
            out.append("| " + " | ".join(md_escape(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
            out.append("")
        return "\n".join(out)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        *[f"<p>{e(p)}</p>" for p in intro],
    ]
    for name, headers, rows in sections:
        parts.append(f"<h2>{e(name)}</h2>")
        if not rows:
            parts.append("<p>None.</p>")
            continue
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
