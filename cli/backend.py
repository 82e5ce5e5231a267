"""One interface, two backends (issue #9): what every ``reserve`` command calls.

``LocalBackend`` drives ``ledger`` on the server's own database and keystore (the
administrators' mode, today's behaviour). ``RemoteBackend`` (``cli/remote.py``) talks to
the service over HTTP and signs with the acting user's own key. Commands build entry
bodies themselves and hand them to :meth:`Backend.append`; reads name an API path
(``/balances``, ``/registry/owners``...) and get back the JSON document that route
returns, so ``--format json`` prints the same shape in both modes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ledger.errors import ConfigError, Forbidden

if TYPE_CHECKING:
    from ledger.config import Settings
    from ledger.service import Ledger

class ServiceFailed(Exception):
    """The service answered 5xx: its failure, not the user's (the CLI exits 70)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"the service failed (HTTP {status}): {detail}")
        self.status = status


@dataclass(frozen=True)
class Written:
    """What a write did: appended at ``seq``, or opened ``proposal`` (still unsigned by
    the co-signers, so not in the log)."""

    kind: str
    seq: int | None = None
    proposal: dict[str, Any] | None = None


class Backend(Protocol):
    """What commands call; implemented by :class:`LocalBackend` and ``RemoteBackend``."""

    mode: str  # "local" or "client"

    def acting_user(self) -> str: ...

    def append(self, body: dict[str, Any], *, cosigners: Sequence[str] = ()) -> Written:
        """Sign ``body`` with the acting user's key and append it; with ``cosigners``,
        the entry needs their signatures too."""
        ...

    def entry_ref(self, ref: str, *, kinds: Sequence[str] = ()) -> str:
        """An entry id from a seq, an id or a unique id prefix (``ledger.refs``; issue
        #12), of one of ``kinds`` when given."""
        ...

    def key_ref(self, ref: str) -> str:
        """A key id from an id, an id prefix or its user's name (one active key)."""
        ...

    def read(self, path: str, **params: Any) -> Any:
        """The JSON document of the API route ``path`` (query ``params``)."""
        ...

    def local_ledger(self, what: str) -> Ledger:
        """The embedded ledger, for what only the server's administrators do (sites'
        sealed locations, the log key); refused in client mode."""
        ...


@dataclass
class LocalBackend:
    """The ledger on this machine: database ``RESERVE_DB``, keystore ``RESERVE_HOME``."""

    settings: Settings
    user: str | None
    ledger_for: Callable[[Settings], Ledger]
    mode: str = "local"
    _led: Ledger | None = field(default=None, repr=False)
    _engine: Any = field(default=None, repr=False)

    def acting_user(self) -> str:
        if not self.user:
            raise ConfigError("say who acts: --as USER or RESERVE_USER")
        return self.user

    def ledger(self) -> Ledger:
        if self._led is None:
            self._led = self.ledger_for(self.settings)
        return self._led

    def local_ledger(self, what: str) -> Ledger:
        return self.ledger()

    def engine(self) -> Any:
        if self._engine is None:
            from ledger.store.db import make_engine

            self._engine = make_engine(self.settings.db_url, readonly=True)
        return self._engine

    def append(self, body: dict[str, Any], *, cosigners: Sequence[str] = ()) -> Written:
        led = self.ledger()
        signers = [led.signer_for(body["author"])]
        if cosigners:
            # Nobody signs as somebody else (issue #9 item 4): keys of several people in
            # one keystore prove nothing about what each of them agreed to.
            if not led.is_demo():
                raise Forbidden(
                    "co-signatures come from each signer's own key: run this in client mode "
                    "(RESERVE_URL) to open a proposal that "
                    + ", ".join(cosigners)
                    + " signs; one keystore may sign for several people only on a demo ledger"
                )
            import structlog

            structlog.get_logger("reserve.cli").warning(
                "unsafe_cosign_from_one_keystore", cosigners=list(cosigners)
            )
            print(
                "warning: demo ledger: the co-signatures come from this one keystore and are "
                "not independent",
                file=sys.stderr,
            )
            signers += [led.signer_for(c) for c in cosigners]
        res = led.submit(body, signers)
        return Written(kind=body["kind"], seq=res.first_seq)

    def entry_ref(self, ref: str, *, kinds: Sequence[str] = ()) -> str:
        from ledger.refs import resolve_entry

        with self.engine().connect() as conn:
            return resolve_entry(conn, ref, kinds=kinds or None).entry_id

    def key_ref(self, ref: str) -> str:
        from ledger.refs import resolve_key

        with self.engine().connect() as conn:
            return resolve_key(conn, ref).key_id

    def read(self, path: str, **params: Any) -> Any:
        from cli import local_views

        with self.engine().begin() as conn:
            return local_views.read(conn, path, {k: v for k, v in params.items() if v is not None})


def make_backend(
    settings: Settings,
    *,
    server: str | None,
    user: str | None,
    ledger_for: Callable[[Settings], Ledger],
) -> Backend:
    """Client mode when a server URL is given (``--server`` or ``RESERVE_URL``)."""
    url = server or os.environ.get("RESERVE_URL") or None
    if url:
        from cli.remote import RemoteBackend

        return RemoteBackend.from_env(settings, url=url, user=user)
    return LocalBackend(settings, user, ledger_for)

