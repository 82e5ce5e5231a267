"""The verification report as one self-contained HTML page (issue #10).

No template engine and no external asset: inline CSS, inline SVG plots drawn here, a
Content-Security-Policy that forbids every fetch, so the page works offline and cannot
call home. Every text that comes from the log is untrusted (an author chooses a lot code,
a purpose, a recipient): all of it goes through :func:`e` (``html.escape``, quotes too),
numbers through ``int``/``float``. The log holds no location, and neither does this page.
"""

from __future__ import annotations

import html
from typing import Any

from ledger.timefmt import parse_time
from ledger.units import format_quantity

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;width:100%}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.2em .8em;border-radius:.3em;color:#fff;font-weight:bold}
.passed{background:#1a7f37}.failed{background:#c62828}.not-run{background:#888}
.not-applicable{background:#bbb}.mono{font-family:ui-monospace,monospace;word-break:break-all}
.fail{background:#fdecea}svg{background:#fafafa;border:1px solid #ddd;margin:.5em 0}
.small{color:#666;font-size:.9em}
"""


def e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def q(grams: Any) -> str:
    return e(format_quantity(int(grams))) if isinstance(grams, int) else e(grams)


def _table(headers: list[str], rows: list[list[str]], *, classes: list[str] | None = None) -> str:
    """``rows`` hold already-escaped cell HTML."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{e(classes[i])}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(status: str) -> str:
    return f'<span class="badge {e(status)}">{e(status)}</span>'


def render(doc: dict[str, Any]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
        f"<title>Verification report: {e(doc['log']['log_id'])}</title>",
        f"<style>{CSS}</style></head><body>",
        _header(doc),
        _failures(doc),
        _checks(doc),
        _stock(doc),
        _losses(doc),
        _releases(doc),
        _keys(doc),
        _rules(doc),
        _checkpoints(doc),
        "</body></html>",
    ]
    return "\n".join(parts)


def _header(doc: dict[str, Any]) -> str:
    log, src, ent = doc["log"], doc["source"], doc["entries"]
    rows = [
        ["log", f'<span class="mono">{e(log["log_id"])}</span>'],
        ["size", e(log["size"] if log["size"] is not None else "- (did not verify)")],
        ["root", f'<span class="mono">{e(log["root"] or "-")}</span>'],
        ["source", e(src.get("kind"))],
        ["trust anchor", e(src.get("trust"))],
        ["entries verified", e(ent["verified"])],
        ["signatures verified", e(doc["signatures"]["verified"])],
        ["log time", f"{e(ent['first_recorded_at'])} to {e(ent['last_recorded_at'])}"],
        ["report generated", e(doc["generated_at"])],
    ]
    return (
        f"<h1>Verification report {_badge(doc['result'])}</h1>"
        + _table(["", ""], rows)
        + '<p class="small">Produced offline by <code>reserve</code>. Texts shown here come '
        "from the signed log and are shown as data. The log holds no site location.</p>"
    )


def _failures(doc: dict[str, Any]) -> str:
    if not doc["failures"]:
        return '<h2 id="failures">Failures</h2><p>None: every check below passed.</p>'
    rows = []
    for f in doc["failures"]:
        ev = f["evidence"]
        entry = ev.get("entry") or {}
        detail = "".join(
            f"<div><b>{e(k)}</b>: <span class=\"mono\">{e(_show(v))}</span></div>"
            for k, v in [("field", ev.get("field")), *entry.items()]
            if v is not None
        )
        rows.append(
            [
                e(f["seq"] if f["seq"] is not None else "-"),
                e(f["check"]),
                e(f["rule"] or "-"),
                e(f["message"]),
                detail or "-",
            ]
        )
    return '<h2 id="failures">Failures</h2>' + _table(
        ["seq", "check", "rule", "what is wrong", "evidence"], rows, classes=["fail"] * len(rows)
    )


def _show(v: Any) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def _checks(doc: dict[str, Any]) -> str:
    rows = [
        [e(c["check"]), e(c["what"]), _badge(c["status"]), e(c.get("entries", ""))]
        for c in doc["checks"]
    ]
    return '<h2 id="checks">What was checked</h2>' + _table(
        ["check", "what", "status", "entries"], rows
    )


# -- plots ----------------------------------------------------------------------------

W, H, PAD = 760, 220, 48


def _plot(series: dict[str, Any], span: tuple[float, float] | None = None) -> str:
    """Held quantity over log time as a step line; each target's required quantity as a
    dashed line over its validity window (clipped to the plotted time)."""
    pts = [(parse_time(at).timestamp(), int(v)) for _seq, at, v in series["points"]]
    if not pts:
        return ""
    targets = []
    for t in series["targets"]:
        try:
            targets.append(
                (parse_time(t["valid_from"]).timestamp(), parse_time(t["valid_to"]).timestamp(), int(t["required"]))
            )
        except Exception:  # noqa: S112 - a target outside the parseable range is not plotted
            continue
    x0, x1 = span if span is not None else (pts[0][0], pts[-1][0])
    x1 = max(x1, x0 + 1)
    ymax = max([v for _, v in pts] + [r for _, _, r in targets] + [1])

    def sx(t: float) -> float:
        return PAD + (min(max(t, x0), x1) - x0) / (x1 - x0) * (W - 2 * PAD)

    def sy(v: int) -> float:
        return H - PAD - v / ymax * (H - 2 * PAD)

    path = []
    prev_y = None
    for t, v in pts:
        x, y = sx(t), sy(v)
        if prev_y is not None:
            path.append(f"L{x:.1f},{prev_y:.1f}")
        path.append(f"{'M' if prev_y is None else 'L'}{x:.1f},{y:.1f}")
        prev_y = y
    path.append(f"L{W - PAD:.1f},{prev_y:.1f}")
    tl = "".join(
        f'<line x1="{sx(a):.1f}" x2="{sx(b):.1f}" y1="{sy(r):.1f}" y2="{sy(r):.1f}" '
        f'stroke="#c62828" stroke-dasharray="6 4" stroke-width="1.5"><title>target {e(format_quantity(r))}</title></line>'
        for a, b, r in targets
        if b >= x0 and a <= x1
    )
    title = f"{series['owner']} {series['material']}: held over log time"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'viewBox="0 0 {W} {H}"><title>{e(title)}</title>'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>'
        f'<text x="{PAD}" y="{PAD - 8}" font-size="11">{e(format_quantity(ymax))}</text>'
        f'<text x="{PAD}" y="{H - PAD + 16}" font-size="11">{e(_iso(x0))}</text>'
        f'<text x="{W - PAD}" y="{H - PAD + 16}" font-size="11" text-anchor="end">{e(_iso(x1))}</text>'
        f'<path d="{" ".join(path)}" fill="none" stroke="#1565c0" stroke-width="2"/>{tl}</svg>'
    )


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _stock(doc: dict[str, Any]) -> str:
    out = ['<h2 id="stock">Stock over time, per owner and material, against target</h2>']
    series = doc["stock"]["series"]
    first, last = doc["entries"]["first_recorded_at"], doc["entries"]["last_recorded_at"]
    span = (parse_time(first).timestamp(), parse_time(last).timestamp()) if first and last else None
    if not series:
        return out[0] + "<p>No stock movements in this history.</p>"
    out.append(
        '<p class="small">Blue: quantity held in physical holdings after each entry (log '
        "time); dashed red: the target's required quantity over its validity.</p>"
    )
    for s in series:
        tgt = "; ".join(
            f"{e(t['days_of_cover'])} days = {q(t['required'])} from {e(t['valid_from'])} to {e(t['valid_to'])}"
            for t in s["targets"]
        )
        out.append(
            f"<h3>{e(s['owner'])} / {e(s['material'])}</h3>"
            f"<p>held now {q(s['held'])}; target: {tgt or 'none set'}</p>{_plot(s, span)}"
        )
    return "\n".join(out)


def _losses(doc: dict[str, Any]) -> str:
    lo = doc["losses"]
    rows = [
        [
            e(x["seq"]),
            e(x["recorded_at"]),
            e(x["kind"]),
            e(x["owner"]),
            e(x["site"]),
            e(x["material"]),
            e(x["lot"]),
            e("loss" if x["account"] == "V/loss" else "gain"),
            q(x["quantity"]),
        ]
        for x in lo["listed"]
    ]
    totals = [[e(t["account"]), e(t["material"]), q(t["quantity"])] for t in lo["totals"]]
    more = (
        f"<p class=\"small\">{e(lo['events'] - len(lo['listed']))} more not listed (counted in the totals).</p>"
        if lo["events"] > len(lo["listed"])
        else ""
    )
    return (
        '<h2 id="losses">Losses and count differences</h2>'
        + (_table(["seq", "recorded", "entry", "owner", "site", "material", "lot", "", "quantity"], rows) if rows else "<p>None.</p>")
        + more
        + (("<h3>Totals</h3>" + _table(["account", "material", "balance"], totals)) if totals else "")
    )


def _releases(doc: dict[str, Any]) -> str:
    rel = doc["releases"]
    out = ['<h2 id="releases">Release orders</h2>']
    if not rel["orders"]:
        out.append("<p>No release order in this history.</p>")
    for o in rel["orders"]:
        status = f"revoked at seq {e(o['revoked_seq'])}" if o["revoked_seq"] is not None else "in force or expired"
        out.append(
            f"<h3>Order {e(o['id'])} (seq {e(o['seq'])}), {e(o['owner'])} / {e(o['material'])}</h3>"
            + _table(
                ["", ""],
                [
                    ["regime", e(o["regime"])],
                    ["recipient", e(o["recipient"])],
                    ["purpose", e(o["purpose"])],
                    ["requested", f"{q(o['quantity_requested'])} by {e(o['requester'])}"],
                    ["evidence", e(o["evidence_type"] or "-")],
                    ["approvals (quorum)", f"{len(o['approvals'])} ({e(o['quorum'])})"],
                    ["ordered by", e(o["minister"])],
                    ["cap", q(o["cap"])],
                    ["executed / remaining", f"{q(o['executed'])} / {q(o['remaining'])}"],
                    ["window", f"{e(o['valid_from'])} to {e(o['valid_until'])}"],
                    ["sites", e(", ".join(o["sites"]))],
                    ["report to", e(o["report_to"])],
                    ["status", status],
                ],
            )
            + "<h4>Approvals</h4>"
            + _table(
                ["seq", "official", "key", "recorded", "cap"],
                [
                    [e(a["seq"]), e(a["user"]), f'<span class="mono">{e(a["key_id"][:16])}</span>', e(a["recorded_at"]), q(a["cap"]) if a["cap"] is not None else "-"]
                    for a in o["approvals"]
                ],
            )
            + "<h4>Executions</h4>"
            + (
                _table(
                    ["seq", "recorded", "kind", "site", "lot", "quantity", "to"],
                    [
                        [e(x["seq"]), e(x["recorded_at"]), e(x["kind"]), e(x["site"]), e(x["lot"]), q(x["quantity"]), e(x["counterparty"])]
                        for x in o["executions"]
                    ],
                )
                if o["executions"]
                else "<p>None yet.</p>"
            )
        )
    if rel["open_requests"]:
        out.append("<h3>Open requests</h3>")
        out.append(
            _table(
                ["seq", "owner", "material", "quantity", "regime", "requester", "approvals"],
                [
                    [e(r["seq"]), e(r["owner"]), e(r["material"]), q(r["quantity"]), e(r["regime"]), e(r["requester"]), e(len(r["approvals"]))]
                    for r in rel["open_requests"]
                ],
            )
        )
    return "\n".join(out)


def _keys(doc: dict[str, Any]) -> str:
    rows = [
        [
            f'<span class="mono">{e(k["key_id"][:16])}</span>',
            e(k["user"]),
            e(", ".join(k["roles"])),
            e(k["valid_from_seq"]),
            e(k["valid_until_seq"] if k["valid_until_seq"] is not None else "-"),
            e(k["signatures"]),
        ]
        for k in doc["keys"]
    ]
    return (
        '<h2 id="keys">Keys and their validity windows</h2>'
        '<p class="small">A key signs validly from its registration until its revocation '
        "(seq); every signature was checked against that window by the reducer.</p>"
        + _table(["key id", "user", "roles", "from seq", "revoked at seq", "signatures"], rows)
        + "<p>Log keys: "
        + ", ".join(f'<span class="mono">{e(k)}</span>' for k in doc["log"]["log_keys"])
        + "</p>"
    )


def _rules(doc: dict[str, Any]) -> str:
    rows = [[e(r["rule"]), e(", ".join(r["kinds"])), e(r["entries"])] for r in doc["rules"]]
    common = [[e(r["rule"]), e(r["what"]), e(r["entries"])] for r in doc["common_rules"]]
    return (
        '<h2 id="rules">Rules of the reducer</h2>'
        + _table(["rule", "entry kinds", "entries"], rows)
        + "<h3>Checked on every entry</h3>"
        + _table(["rule", "what", "entries"], common)
    )


def _checkpoints(doc: dict[str, Any]) -> str:
    cp = doc["checkpoints"]
    cos = ", ".join(f"{e(k)}: {e(v)}" for k, v in cp["cosignatures"].items()) or "none"
    acc = doc.get("access_log")
    acc_html = (
        f"<p>Access log: {e(acc.get('size'))} events, {e(acc.get('checkpoints'))} checkpoints, "
        f"{_badge(str(acc.get('status')))}</p>"
        if isinstance(acc, dict)
        else ""
    )
    return (
        '<h2 id="checkpoints">Checkpoints</h2>'
        f"<p>{e(cp['verified'])} signed checkpoints verified; the last covers {e(cp['last_size'])} entries.</p>"
        f"<p>Cosignatures present: {cos} "
        f"({'checked' if cp['cosignatures_checked'] else 'not checked by this run'}).</p>"
        + acc_html
    )
