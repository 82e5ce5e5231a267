"""``reserve audit``: the auditor's client commands against the service (issue #10).

``audit sync`` keeps the last verified checkpoint and the verifier's state in ``--state
DIR`` and verifies only what is new (``ledger.audit_sync``); ``audit fetch`` downloads
the whole bundle (``GET /log/bundle``) for ``reserve verify-bundle``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cli.quorum import add_quorum_args, witness_policy
from ledger.errors import (
    ConfigError,
    Forbidden,
    LedgerError,
    NotFound,
    Unauthenticated,
    VerificationFailed,
)

TIMEOUT = 60.0


def auth_header(args: argparse.Namespace, settings: Any) -> dict[str, str]:
    """The auditor's credentials for the service, as every client command gets them
    (issue #9): an identity provider's token from ``RESERVE_TOKEN``, else key login with
    the auditor's own key from ``RESERVE_HOME`` (the token cached there, 0600)."""
    from cli.remote import RemoteBackend

    backend = RemoteBackend.from_env(
        settings, url=_base_url(args), user=getattr(args, "as_user", None) or settings.user
    )
    return {"Authorization": f"Bearer {backend.bearer()}"}


def _base_url(args: argparse.Namespace) -> str:
    url = (args.from_url or os.environ.get("RESERVE_URL") or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("say where the log is: --from URL or RESERVE_URL (http:// or https://)")
    return url


class HttpAuditSource:
    """:class:`ledger.audit_sync.AuditSource` over the service's log routes."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        self.base = base_url
        self.headers = headers

    def _open(self, path: str, **query: int) -> IO[bytes]:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        req = urllib.request.Request(url, headers=self.headers)  # noqa: S310 - http(s) checked
        try:
            resp: IO[bytes] = urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310
            return resp
        except urllib.error.HTTPError as exc:
            detail = _problem_detail(exc)
            if exc.code == 401:
                raise Unauthenticated(f"the log refused the credentials: {detail}") from None
            if exc.code == 403:
                raise Forbidden(f"the log refused: {detail}") from None
            if exc.code == 404:
                raise NotFound(f"the log has no {path}: {detail}") from None
            raise LedgerError(f"the log answered HTTP {exc.code} for {path}: {detail}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the log at {self.base}: {getattr(exc, 'reason', exc)}") from None

    def checkpoint(self) -> str:
        with self._open("/log/checkpoint") as r:
            return r.read(1 << 20).decode("utf-8")

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        with self._open("/log/proofs/consistency", old=old_size, new=new_size) as r:
            body = json.loads(r.read(1 << 20))
        return [base64.b64decode(h, validate=True) for h in body["proof"]]

    def leaves(self, start: int, end: int) -> Iterator[bytes]:
        with self._open("/log/leaves", start=start, end=end) as r:
            for line in r:
                yield line.rstrip(b"\n")

    def commitments(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        try:
            resp = self._open("/log/commitments", start=start, end=end)
        except NotFound:
            # A service from before issue #14 has only v1 leaves. Nothing is trusted by
            # this: each commitment is bound into its leaf hash (ledger.audit_sync).
            return
        with resp as r:
            for line in r:
                try:
                    d = json.loads(line)
                    yield int(d["seq"]), bytes.fromhex(d["commitment"])
                except (ValueError, KeyError, TypeError):
                    raise VerificationFailed("the log served a malformed owner commitment line") from None

    def owner_key(self, owner: str) -> str:
        """An owner's scoped-audit key file (GET /owners/CODE/scope-key, issue #14)."""
        with self._open(f"/owners/{urllib.parse.quote(owner, safe='')}/scope-key") as r:
            return r.read(1 << 20).decode("utf-8")

    def bundle(self) -> IO[bytes]:
        return self._open("/log/bundle")


def _problem_detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read(65536)).get("detail", exc.reason))[:200]
    except (ValueError, AttributeError):
        return str(exc.reason)[:200]


def cmd_sync(args: argparse.Namespace, s: Any) -> int:
    from cli.main import _trust
    from cli.owner_scope_cmd import owner_secrets
    from ledger.audit_sync import sync

    witnesses, quorum = witness_policy(args)
    trusted = _trust(args.trust) if args.trust else None
    secrets = owner_secrets(args.owner_key)
    source = HttpAuditSource(_base_url(args), auth_header(args, s))
    result = sync(
        Path(args.state), source, trusted_log_key=trusted, witnesses=witnesses, quorum=quorum,
        owner_secrets=secrets,
    )
    resumed = " (resumed an interrupted sync)" if result.resumed else ""
    print(
        f"OK size {result.size} root {result.root.hex()} log {result.log_id}: verified "
        f"{result.verified} new entries since size {result.old_size}{resumed}; "
        f"witness quorum {quorum}/{len(witnesses)}"
        + (f"; owner commitments checked for {len(secrets)} owners" if secrets else "")
    )
    if trusted is None and result.old_size == 0:
        print("note: no --trust key given; the log key was taken from the log's own genesis")
    return 0


def cmd_fetch(args: argparse.Namespace, s: Any) -> int:
    from ledger.bundle_tar import extract_bundle

    source = HttpAuditSource(_base_url(args), auth_header(args, s))
    with source.bundle() as stream:
        names = extract_bundle(stream, Path(args.dir))
    print(f"fetched a bundle of {len(names)} files into {args.dir}; check it with 'reserve verify-bundle {args.dir} --trust ...'")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``reserve audit ...`` to the top-level parser."""
    p = sub.add_parser("audit", help="an auditor's incremental verification against the service")
    g = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    sp = g.add_parser(
        "sync",
        help="verify what the log added since the last sync (state kept in --state DIR)",
    )
    sp.add_argument("--state", required=True, metavar="DIR", help="where the last verified checkpoint and state live")
    sp.add_argument("--from", dest="from_url", metavar="URL", help="the service (default RESERVE_URL)")
    sp.add_argument("--trust", help="the log's public key file to anchor the first sync to")
    sp.add_argument("--as", dest="as_user", metavar="USER", help="the auditor (or RESERVE_USER)")
    sp.add_argument(
        "--owner-key",
        action="append",
        metavar="FILE",
        help="every owner's scoped-audit key file, to check each new leaf's owner commitment "
        "as 'reserve verify' does (issue #14)",
    )
    add_quorum_args(sp)
    sp.set_defaults(fn=cmd_sync, client_ok=True)

    sp = g.add_parser("fetch", help="download the whole bundle (GET /log/bundle) into DIR")
    sp.add_argument("dir")
    sp.add_argument("--from", dest="from_url", metavar="URL", help="the service (default RESERVE_URL)")
    sp.add_argument("--as", dest="as_user", metavar="USER", help="the auditor (or RESERVE_USER)")
    sp.set_defaults(fn=cmd_fetch, client_ok=True)
