"""The pages. Each one names the API route whose data it shows; its roles are that
route's (``session.require``), and its data comes from that route's own function, so the
scope filtering is ``ledger.policy``'s as in the API. Nothing here decides a rule."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import services
from api.params import RefPath
from api.routes import inbox as inbox_routes
from api.routes import log as log_routes
from api.routes import proposals as proposal_routes
from api.routes import reads, registry, releases
from api.services import Services
from api.web.render import render
from api.web.session import PageRefused, may, page_principal, require
from ledger import policy
from ledger.errors import LedgerError
from ledger.policy import ADMIN, AUDITOR, MINISTER, OFFICIAL, OPERATOR, Principal
from ledger.timefmt import now

router = APIRouter(include_in_schema=False)

# Where each role starts (the first it holds, in this order).
HOMES = (
    (OPERATOR, "/web/operator"),
    (OFFICIAL, "/web/releases"),
    (MINISTER, "/web/releases"),
    (AUDITOR, "/web/audit"),
    (ADMIN, "/web/admin"),
)
NAV = (
    ("/web/operator", "Stock and movements", "POST", "/stock/receive"),
    ("/web/releases", "Releases and cover", "GET", "/releases/requests"),
    ("/web/audit", "Audit", "GET", "/log/access"),
    ("/web/reveal", "Reveal a location", "POST", "/sites/{code}/reveal"),
    ("/web/admin", "Keys", "POST", "/keys"),
)


def _nav(request: Request, p: Principal) -> list[dict[str, str]]:
    return [
        {"href": href, "label": label}
        for href, label, method, path in NAV
        if may(request.app, p, method, path)
    ]


def _page(request: Request, p: Principal, template: str, title: str, **ctx: Any) -> HTMLResponse:
    me = {
        "user": p.user,
        "roles": sorted(p.roles),
        "sites": sorted(p.sites),
        "owners": sorted(p.owners),
        "clearance": p.clearance,
    }
    return render(
        request,
        template,
        {"title": title, "me": me, "nav": _nav(request, p), "path": request.url.path, **ctx},
    )


async def _call(fn: Any, /, **kw: Any) -> Any:
    """An API route's function, off the event loop (they read the database); a ledger
    refusal becomes a page refusal (same status as the API would answer)."""
    try:
        return await run_in_threadpool(lambda: fn(**kw))
    except LedgerError as exc:
        from api.errors import status_for

        status = status_for(exc)
        raise PageRefused(
            status if status in (403, 404, 422) else 409, exc.code, exc.public_message
        ) from None


# -- sign-in and enrolment ----------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def signin(request: Request, svc: Services = Depends(services)) -> HTMLResponse:
    demo = bool(svc.settings.unsafe_demo_login and svc.issuer is not None)
    return render(
        request,
        "signin.html",
        {"title": "Sign in", "me": None, "nav": [], "demo_login": demo, "log_id": svc.log_id},
    )


@router.get("/web/enrol", response_class=HTMLResponse)
async def enrol(request: Request, svc: Services = Depends(services)) -> HTMLResponse:
    return render(
        request,
        "enrol.html",
        {"title": "Make your key", "me": None, "nav": [], "log_id": svc.log_id},
    )


@router.get("/web/home")
async def home(p: Principal = Depends(page_principal)) -> Response:
    for role, href in HOMES:
        if role in p.roles:
            return RedirectResponse(href, status_code=303)
    raise PageRefused(403, "forbidden", "no page for your roles")


# -- operator ---------------------------------------------------------------------------------


@router.get("/web/operator", response_class=HTMLResponse)
async def operator(
    request: Request, p: Principal = Depends(page_principal), svc: Services = Depends(services)
) -> HTMLResponse:
    require(request.app, p, "POST", "/stock/receive")
    stock = await _call(reads.balances, owner=None, site=None, material=None, lot=None,
                        as_of_seq=None, as_of=None, p=p, svc=svc)  # fmt: skip
    sites = await _call(reads.list_sites, p=p, svc=svc)
    lots = await _call(registry.lots, svc=svc)
    owners = await _call(registry.owners, svc=svc)
    waiting = await _call(proposal_routes.list_proposals, for_="me", p=p, svc=svc)
    # The API's inboxes (issue #12): what is on its way to the operator's sites, and the
    # orders they may execute there now (the rules' executable_at, not re-derived here).
    inbound = await _call(inbox_routes.transfers, inbound=True, p=p, svc=svc)
    moving = await _call(inbox_routes.transfers, inbound=False, p=p, svc=svc)
    executable = await _call(inbox_routes.orders, executable=True, p=p, svc=svc)
    inbound_ids = {t["id"] for t in inbound["transfers"]}
    return _page(
        request,
        p,
        "operator.html",
        "Stock and movements",
        balances=stock["balances"],
        sites=[s["code"] for s in sites["sites"]],
        lots=lots["lots"],
        owners=owners["owners"],
        inbound=inbound["transfers"],
        outbound=[t for t in moving["transfers"] if t["id"] not in inbound_ids],
        orders=executable["orders"],
        executes=_executing_forms(),
        recipient_field={"release": "recipient", "sale": "buyer", "loan": "borrower"},
        verbs={"release": "Release", "sale": "Sell", "loan": "Lend"},
        proposals=waiting["proposals"],
        now=now(),
    )


# The operator page's form for each movement kind that executes an order.
_FORM_OF_KIND = {"stock.release": "release", "stock.sale": "sale", "stock.loan_out": "loan"}


def _executing_forms() -> dict[str, str]:
    """Regime -> the form that executes an order of it: the rules' table
    (``ledger.rules.release.EXECUTING_KINDS``), not a copy."""
    from ledger.reducer import apply  # noqa: F401  (loads the rule book: rules import each other)
    from ledger.rules.release import EXECUTING_KINDS

    return {regime: _FORM_OF_KIND[kinds[0]] for regime, kinds in EXECUTING_KINDS.items()}


# -- officials and ministers ----------------------------------------------------------------------


@router.get("/web/releases", response_class=HTMLResponse)
async def release_page(
    request: Request, p: Principal = Depends(page_principal), svc: Services = Depends(services)
) -> HTMLResponse:
    require(request.app, p, "GET", "/releases/requests")
    app = request.app
    cover = (
        await _call(reads.cover, at=None, p=p, svc=svc)
        if may(app, p, "GET", "/cover")
        else {"cover": []}
    )
    reqs = await _call(releases.open_requests, p=p, svc=svc)
    orders = await _call(releases.orders, p=p, svc=svc)
    materials = await _call(registry.materials, svc=svc)
    sites = await _call(reads.list_sites, p=p, svc=svc)
    waiting = await _call(proposal_routes.list_proposals, for_="me", p=p, svc=svc)
    owners = (
        sorted(p.owners)
        if policy.owner_scope(p) is not None
        else [o["code"] for o in (await _call(registry.owners, svc=svc))["owners"]]
    )
    return _page(
        request,
        p,
        "releases.html",
        "Releases and cover",
        cover=cover["cover"],
        chart=_cover_chart(cover["cover"]),
        requests=reqs["requests"],
        orders=orders["orders"],
        materials=materials["materials"],
        owners=owners,
        sites=[s["code"] for s in sites["sites"]],
        proposals=waiting["proposals"],
        may_request=may(app, p, "POST", "/releases/requests"),
        may_price=may(app, p, "POST", "/releases/prices"),
        may_approve=may(app, p, "POST", "/releases/requests/{request_id}/approve"),
        may_order=may(app, p, "POST", "/releases/orders"),
        may_revoke=may(app, p, "POST", "/releases/orders/{order_id}/revoke"),
        now=now(),
    )


def _cover_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars of days held against the target, scaled to the largest value (layout only;
    the days themselves are the report's, ``ledger.store.reports.cover``)."""
    bars = []
    top = max([1.0] + [max(float(r["days_held"]), float(r["target_days"])) for r in rows])
    width, left = 400.0, 220.0
    for i, r in enumerate(rows):
        held = float(r["days_held"])
        target = float(r["target_days"])
        bars.append(
            {
                "y": 10 + i * 44,
                "label": f"{r['owner']} {r['material']}",
                "held_w": round(width * held / top, 1),
                "value_x": round(left + 6 + width * held / top, 1),
                "target_x": round(left + width * target / top, 1),
                "held": r["days_held"],
                "target": r["target_days"],
                "met": held >= target,
            }
        )
    return {"bars": bars, "height": 20 + 44 * len(rows)}


@router.get("/web/orders/{order_id}", response_class=HTMLResponse)
async def order_report(
    order_id: RefPath,
    request: Request,
    p: Principal = Depends(page_principal),
    svc: Services = Depends(services),
) -> HTMLResponse:
    """The order named as the API's report route takes it (issue #12): its seq, id, an
    id prefix, or its request; resolved and refused by that route's own function."""
    require(request.app, p, "GET", "/releases/orders/{order_id}/report")
    rep = await _call(releases.order_report, order_id=order_id, p=p, svc=svc)
    return _page(request, p, "order.html", "Order report", report=rep)


# -- auditors -------------------------------------------------------------------------------


@router.get("/web/audit", response_class=HTMLResponse)
async def audit(
    request: Request,
    action: str | None = Query(default=None, max_length=32, pattern=r"^[a-z-]*$"),
    outcome: str | None = Query(default=None, max_length=32, pattern=r"^[a-z-]*$"),
    actor: str | None = Query(default=None, max_length=64, pattern=r"^[a-z0-9._-]*$"),
    start: int = Query(default=0, ge=0, le=2**53 - 1),
    p: Principal = Depends(page_principal),
    svc: Services = Depends(services),
) -> HTMLResponse:
    require(request.app, p, "GET", "/log/access")
    note = await _call(log_routes.latest_checkpoint, svc=svc)
    body, _, sigs = note.partition("\n\n")
    page = await _call(log_routes.access_log_page, start=start, limit=1000, svc=svc)
    # Each record is {"seq", "at", "prev_hash", "event": {...}}: shown flat, by event.
    events = [
        {"seq": r.get("seq"), "at": r.get("at"), **r.get("event", {})} for r in page["events"]
    ]
    shown = [
        e
        for e in events
        if (not action or e.get("action") == action)
        and (not outcome or e.get("outcome") == outcome)
        and (not actor or e.get("actor") == actor)
    ]
    checked = await _call(log_routes.access_log_verify, svc=svc)
    return _page(
        request,
        p,
        "audit.html",
        "Audit",
        checkpoint=body.splitlines(),
        signatures=[line for line in sigs.splitlines() if line.strip()],
        events=shown[-200:],
        total=len(events),
        filters={
            "action": action or "",
            "outcome": outcome or "",
            "actor": actor or "",
            "start": start,
        },
        actions=sorted({str(e.get("action", "")) for e in events}),
        outcomes=sorted({str(e.get("outcome", "")) for e in events}),
        access_check=checked,
        as_json=lambda e: json.dumps(e, sort_keys=True, ensure_ascii=False),
    )


@router.get("/web/audit/report", response_class=HTMLResponse)
async def audit_report(
    request: Request, p: Principal = Depends(page_principal), svc: Services = Depends(services)
) -> HTMLResponse:
    """The verification report (issue #10's document) of the service's own database: a
    convenience; an auditor who trusts nobody runs ``reserve verify-bundle`` on the
    downloaded bundle instead."""
    require(request.app, p, "GET", "/log/access/verify")

    def run() -> str:
        from ledger.audit_report import Collector, build_document
        from ledger.audit_report import render as render_report
        from ledger.errors import VerificationFailed
        from ledger.store.audit import entry_line, verify_database

        col = Collector()
        source: dict[str, Any] = {
            "kind": "database",
            "trust": "the database's own genesis (not anchored)",
        }
        try:
            # With the owners' keyring, each v2 leaf's owner commitment is checked too (#14).
            rep = verify_database(
                svc.reader, trusted_log_key=None, observer=col, keyring=svc.ledger.owner_keyring()
            )
        except VerificationFailed as exc:
            doc = build_document(col, report=None, failure=exc, source=source,
                                 entry_at=lambda seq: entry_line(svc.reader, seq),
                                 skipped=frozenset({"bundle-files", "held-checkpoint", "trust-anchor"}))  # fmt: skip
            return render_report(doc)
        doc = build_document(col, report=rep, failure=None, source=source,
                             skipped=frozenset({"bundle-files", "held-checkpoint", "trust-anchor"}))  # fmt: skip
        return render_report(doc)

    html = await run_in_threadpool(run)
    # The report is self-contained (its own strict CSP, no script): served as is.
    return HTMLResponse(
        html, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    )


# -- locations, keys -------------------------------------------------------------------------------


@router.get("/web/reveal", response_class=HTMLResponse)
async def reveal(
    request: Request, p: Principal = Depends(page_principal), svc: Services = Depends(services)
) -> HTMLResponse:
    """Site codes only; the location comes from ``POST /sites/{code}/reveal`` (which checks
    clearance and writes the access log first) after the user states a purpose."""
    require(request.app, p, "POST", "/sites/{code}/reveal")
    sites = await _call(reads.list_sites, p=p, svc=svc)
    return _page(request, p, "reveal.html", "Reveal a location", sites=sites["sites"])


@router.get("/web/admin", response_class=HTMLResponse)
async def admin(
    request: Request, p: Principal = Depends(page_principal), svc: Services = Depends(services)
) -> HTMLResponse:
    require(request.app, p, "POST", "/keys")
    users = await _call(registry.users, svc=svc)
    roles = list(policy.ALL_ROLES)
    return _page(request, p, "admin.html", "Keys", users=users["users"], roles=roles)
