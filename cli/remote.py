"""``RemoteBackend``: ``reserve`` as a client of the service (issue #9).

Reads are GETs of the API. Writes are built here, signed with the acting user's OWN key
from their own keystore (``$RESERVE_HOME/keys``, the key stored under the user's name),
and sent to ``POST /entries`` with an ``Idempotency-Key`` (so a retry after a lost answer
appends once). Entries that need several people become proposals (``POST /proposals``).

Authentication is key login (proof of possession of the registered key): a challenge
from ``POST /auth/challenge`` signed under the login domain and exchanged at
``POST /auth/token``. The token is cached 0600 in ``$RESERVE_HOME/token.json`` with its
expiry and renewed by a new challenge when it expires or is refused. A token from an
identity provider can be given in ``RESERVE_TOKEN`` instead. The token is never printed
or logged.

Only the standard library does HTTP here (``urllib.request`` + ``ssl``): it is imported
lazily and much faster than httpx (README, "Libraries") and keeps ``reserve --help`` fast. ``RESERVE_CA`` names a CA file for TLS.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from cli.backend import ServiceFailed, Written
from ledger.errors import (
    ConfigError,
    Forbidden,
    InvalidEntry,
    LedgerError,
    NotFound,
    Rejected,
    Unauthenticated,
)

if TYPE_CHECKING:
    import ssl

    from ledger.config import Settings
    from ledger.crypto import Signer
    from ledger.service import Ledger

TOKEN_FILE = "token.json"  # noqa: S105 - a file name, not a secret
RENEW_MARGIN_S = 30  # renew a token this long before it expires
TIMEOUT_S = 30.0


def _problem_error(status: int, problem: Any) -> Exception:
    """An RFC 9457 problem as the error the local mode would raise, so the CLI prints
    the same line and exits with the same code."""
    p = problem if isinstance(problem, dict) else {}
    detail = str(p.get("detail") or p.get("title") or f"HTTP {status}")
    fld = p.get("field") if isinstance(p.get("field"), str) else None
    seq = p.get("seq") if isinstance(p.get("seq"), int) else None
    type_ = str(p.get("type") or "")
    if status >= 500:
        return ServiceFailed(status, detail)
    if status == 401:
        return Unauthenticated(detail)
    if status == 403:
        return Forbidden(detail, field=fld)
    if status == 404:
        return NotFound(detail)
    if status == 409 and "/rule/" in type_:
        return Rejected(type_.rsplit("/rule/", 1)[1], detail, field=fld, seq=seq)
    if status == 422:
        return InvalidEntry(detail, field=fld, seq=seq)
    return LedgerError(detail, field=fld, seq=seq)


@dataclass
class Http:
    """A minimal JSON-over-HTTP client for one service URL."""

    base: str
    ca_file: str | None = None
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("the service URL must be http:// or https:// with a host (RESERVE_URL, --server)")
        self.base = self.base.rstrip("/")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigError("cannot read the CA file named by RESERVE_CA")

    def _context(self) -> ssl.SSLContext | None:
        if not self.base.startswith("https:"):
            return None
        if self._ctx is None:
            import ssl

            try:
                self._ctx = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError):
                raise ConfigError("the CA file named by RESERVE_CA is not a PEM certificate") from None
        return self._ctx

    def _opener(self) -> Any:
        """No redirects: a redirect to another host would carry the bearer token there."""
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        handlers: list[Any] = [NoRedirect()]
        ctx = self._context()
        if ctx is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        return urllib.request.build_opener(*handlers)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, decoded body)``; 4xx/5xx are raised as typed errors, except 401,
        returned so the caller can log in again."""
        import urllib.error
        import urllib.request

        url = self.base + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked in __post_init__
        req.add_header("Accept", "application/json, application/problem+json, text/plain")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self._opener().open(req, timeout=TIMEOUT_S) as resp:
                return resp.status, _decode(resp.read(), resp.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
            exc.close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(f"cannot reach the service at {self.base}: {_one_line(str(reason))}") from None
        if status == 401:
            return status, _decode(raw, ctype)
        raise _problem_error(status, _decode(raw, ctype))


def _decode(raw: bytes, ctype: str) -> Any:
    if "json" in ctype:
        try:
            return json.loads(raw)
        except ValueError:
            return {}
    return raw.decode("utf-8", "replace")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


@dataclass
class TokenCache:
    """``$RESERVE_HOME/token.json``: one token per service URL and user, mode 0600."""

    path: Path

    def load(self, *, url: str, user: str) -> str | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("url") != url or data.get("user") != user:
            return None
        expires = data.get("expires_at")
        token = data.get("access_token")
        if not isinstance(expires, int | float) or not isinstance(token, str):
            return None
        return token if expires - RENEW_MARGIN_S > time.time() else None

    def store(self, *, url: str, user: str, token: str, expires_in: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"url": url, "user": user, "access_token": token, "expires_at": int(time.time()) + int(expires_in)}
        tmp = self.path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
        # Created 0600 (never world-readable, not even for an instant), then renamed over.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(doc).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def sign_entry(body: dict[str, Any], signers: list[Signer], *, log_id: str) -> dict[str, Any]:
    """The submission ``{"entry", "sigs"}``, signed for this log (v2 signatures bind the
    log id, issue #9 item 6)."""
    from ledger.entries import sign_body

    return sign_body(body, signers, log_id=log_id)


@dataclass
class RemoteBackend:
    """The service at ``url``; the acting user signs with their own keystore."""

    settings: Settings
    http: Http
    user: str | None
    env_token: str | None = None
    mode: str = "client"
    _token: str | None = field(default=None, repr=False)
    _signer: Signer | None = field(default=None, repr=False)
    _log_id: str | None = None

    @classmethod
    def from_env(cls, settings: Settings, *, url: str, user: str | None) -> RemoteBackend:
        return cls(
            settings,
            Http(url, ca_file=os.environ.get("RESERVE_CA") or None),
            user,
            env_token=os.environ.get("RESERVE_TOKEN") or None,
        )

    # -- identity ------------------------------------------------------------------------
    def acting_user(self) -> str:
        if not self.user:
            raise ConfigError("say who acts: --as USER or RESERVE_USER")
        return self.user

    def signer(self) -> Signer:
        """The acting user's own key, from their own keystore."""
        if self._signer is None:
            from keys import FileKeystore, passphrase_from_env_or_prompt

            user = self.acting_user()
            ks = FileKeystore(
                self.settings.keystore_dir,
                passphrase=passphrase_from_env_or_prompt(env=os.environ, prompt=True),
            )
            if not ks.exists(user):
                raise ConfigError(
                    f"no key for '{user}' in {self.settings.keystore_dir}: create it with "
                    f"'reserve keys generate {user}' and have a security admin register it"
                )
            self._signer = ks.load(user)
        return self._signer

    def log_id(self) -> str:
        """The log's id: the origin line of its signed checkpoint."""
        if self._log_id is None:
            _, note = self.http.call("GET", "/log/checkpoint")
            origin = str(note).split("\n", 1)[0].strip()
            if not origin:
                raise ServiceFailed(200, "the service's checkpoint names no log")
            self._log_id = origin
        return self._log_id

    def _cache(self) -> TokenCache:
        return TokenCache(self.settings.home / TOKEN_FILE)

    def login(self) -> int:
        """Key login: sign a fresh challenge; returns the token's lifetime in seconds."""
        user = self.acting_user()
        signer = self.signer()
        status, ch = self.http.call("POST", "/auth/challenge", body={"user": user})
        if status == 401 or not isinstance(ch, dict):
            raise Unauthenticated(str(ch.get("detail") if isinstance(ch, dict) else "login refused"))
        nonce, log_id = str(ch.get("nonce", "")), str(ch.get("log_id", ""))
        from ledger.login import login_message

        signature = signer.sign(login_message(log_id=log_id, nonce=nonce))
        status, tok = self.http.call(
            "POST",
            "/auth/token",
            body={
                "nonce": nonce,
                "public_key": signer.public_key.hex(),
                "signature": base64.b64encode(signature).decode(),
            },
        )
        if status == 401 or not isinstance(tok, dict) or not isinstance(tok.get("access_token"), str):
            detail = tok.get("detail") if isinstance(tok, dict) else None
            raise Unauthenticated(str(detail or "key login refused"))
        self._token = tok["access_token"]
        self._log_id = self._log_id or log_id or None
        expires_in = int(tok.get("expires_in") or 300)
        self._cache().store(url=self.http.base, user=user, token=self._token, expires_in=expires_in)
        return expires_in

    def bearer(self) -> str:
        """A valid access token for the acting user (cached, renewed by key login)."""
        return self._bearer()

    def _bearer(self, *, fresh: bool = False) -> str:
        if self.env_token is not None:
            return self.env_token
        if self._token is None and not fresh:
            self._token = self._cache().load(url=self.http.base, user=self.acting_user())
        if self._token is None or fresh:
            self.login()
        assert self._token is not None
        return self._token

    def authed(self, method: str, path: str, **kw: Any) -> Any:
        """A call with the bearer token; on 401 log in again once (a token may expire or
        be revoked between the cache check and the call)."""
        status, body = self.http.call(method, path, token=self._bearer(), **kw)
        if status == 401 and self.env_token is None:
            self._cache().clear()
            status, body = self.http.call(method, path, token=self._bearer(fresh=True), **kw)
        if status == 401:
            raise _problem_error(401, body)
        return body

    # -- the Backend interface -----------------------------------------------------------
    def append(self, body: dict[str, Any], *, cosigners: Sequence[str] = ()) -> Written:
        if body.get("author") != self.acting_user():
            raise Forbidden("the CLI signs only with the acting user's own key")
        submission = sign_entry(body, [self.signer()], log_id=self.log_id())
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        if cosigners:
            got = self.authed(
                "POST", "/proposals", body={**submission, "cosigners": list(cosigners)}, headers=headers
            )
            return Written(kind=body["kind"], proposal=got if isinstance(got, dict) else {})
        got = self.authed("POST", "/entries", body=submission, headers=headers)
        return Written(kind=body["kind"], seq=int(got["seq"]))

    def entry_ref(self, ref: str, *, kinds: Sequence[str] = ()) -> str:
        params = {"kind": ",".join(kinds)} if kinds else {}
        got = self.authed("GET", f"/registry/refs/{quote(ref.strip(), safe='')}", params=params)
        return str(got["entry_id"])

    def key_ref(self, ref: str) -> str:
        return str(self.authed("GET", f"/registry/keys/{quote(ref.strip(), safe='')}")["key_id"])

    def read(self, path: str, **params: Any) -> Any:
        return self.authed("GET", path, params={k: v for k, v in params.items() if v is not None})

    def local_ledger(self, what: str) -> Ledger:
        raise ConfigError(
            f"{what} is done on the server by its administrators (local mode, without RESERVE_URL)"
        )

    # -- proposals -----------------------------------------------------------------------
    def proposal(self, pid: str) -> dict[str, Any]:
        got = self.authed("GET", f"/proposals/{quote(pid, safe='')}")
        return got if isinstance(got, dict) else {}

    def cosign(self, pid: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Sign exactly ``entry`` (as shown to the user) and send the signature."""
        sig = sign_entry(entry, [self.signer()], log_id=self.log_id())["sigs"][0]
        got = self.authed("POST", f"/proposals/{quote(pid, safe='')}/cosign", body={"sig": sig})
        return got if isinstance(got, dict) else {}

    def withdraw(self, pid: str) -> dict[str, Any]:
        got = self.authed("POST", f"/proposals/{quote(pid, safe='')}/withdraw", body={})
        return got if isinstance(got, dict) else {}
