"""Test apps for the API tests (issue #4): a ledger with a realistic scenario and REAL
sealed locations, the services and the FastAPI app over it, and helpers to forge tokens
and to capture every log line.

The scenario is built once per session on SQLite (a template directory holding the
database and the keystore) and copied for each world, so a test that writes gets its own
ledger for the cost of a file copy and one keystore unlock. PostgreSQL worlds are built
directly in the ``pg_url`` schema.

Sites (``SITE_K`` is outside the scope of every JP or EU user; ``GHOST`` is never
registered and has the same length as the real codes, so "out of scope" and "does not
exist" can be compared byte for byte)::

    SITE_A  SITE-7F3K  SECRET        custodian JP, owners JP EU
    SITE_B  SITE-2B9Q  CONFIDENTIAL  custodian EU, owners EU JP
    SITE_K  SITE-KR04  RESTRICTED    custodian KR, owners KR

Users: see ``USERS``. ``MATRIX_USERS`` holds one user per role, each cleared and in
scope for ``SITE_A``; every other user is there to be uncleared or out of scope.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import api.auth
import api.services
import keys.factory
from api.app import create_app
from api.auth import TOKEN_TYPE, TokenSettings
from api.config import ApiSettings
from api.services import TOKEN_KEY_NAME, Services, build_services
from keys import Ed25519Signer, FileKeystore
from keys.sealing import SEALING_KEY_FILE, load_or_create_sealer
from ledger.config import Settings
from ledger.entries import sign_body
from ledger.locations import Location
from ledger.policy import ADMIN, AUDITOR, MINISTER, OFFICIAL, OPERATOR
from ledger.service import Ledger, new_body
from ledger.store.locations import open_location
from ledger.store.schema import access_log, entries
from ledger.timefmt import now
from tests.conftest import PASSPHRASE, make_ledger

JP, EU, KR = "JP-RESERVE", "EU-JOINT", "KR-KOMIR"
NDPR, DY, GA = "NDPR-OXIDE", "DY-METAL", "GA-METAL"
LOT_NDPR, LOT_DY, LOT_GA, LOT_KR = "NDPR-2025-001", "DY-2025-001", "GA-2025-4N", "KR-GA-001"

SITE_A = "SITE-7F3K"
SITE_B = "SITE-2B9Q"
SITE_K = "SITE-KR04"
GHOST = "SITE-ZZ99"  # never registered; same length as the real codes
SITES = (SITE_A, SITE_B, SITE_K)
CLASSIFICATION = {SITE_A: "SECRET", SITE_B: "CONFIDENTIAL", SITE_K: "RESTRICTED"}

# Distinctive strings: none of them may ever appear in a response other than a granted
# reveal, nor in any log line.
LOCATIONS: dict[str, Location] = {
    SITE_A: Location(
        name="Bunker Aurora-7731",
        address="17 Quarry Lane, 515900 Zlatna, Alba County",
        latitude=46.1123457,
        longitude=23.2278913,
        notes="blast door behind the Ravenscroft silo",
    ),
    SITE_B: Location(
        name="Depot Kestrel-4420",
        address="Mineshaft Road 88, Bischofshofen-Nord",
        latitude=47.4176321,
        longitude=13.2199874,
        notes="entrance via the Wexmoor tunnel",
    ),
    SITE_K: Location(
        name="Cavern Halcyon-0917",
        address="3 Granite Hollow, Jeongseon-gun",
        latitude=37.3801156,
        longitude=128.6607421,
        notes="",
    ),
}


# Words of each location distinctive enough that finding one anywhere is a leak.
KEYWORDS: dict[str, list[str]] = {
    SITE_A: ["Aurora-7731", "Quarry Lane", "Zlatna", "Ravenscroft"],
    SITE_B: ["Kestrel-4420", "Mineshaft Road", "Bischofshofen", "Wexmoor"],
    SITE_K: ["Halcyon-0917", "Granite Hollow", "Jeongseon"],
}


def location_needles(site: str) -> list[str]:
    """Every string of a site's location, its distinctive words and its coordinates
    (as Python writes them, and rounded as a renderer might)."""
    loc = LOCATIONS[site]
    out = [loc.name, loc.address, *KEYWORDS[site]]
    if loc.notes:
        out.append(loc.notes)
    for x in (loc.latitude, loc.longitude):
        out += [repr(x), f"{x:.5f}", f"{x:.4f}"]
    return sorted(set(out))


def salt_needles(salt: bytes) -> list[str]:
    b64 = base64.b64encode(salt).decode()
    url = base64.urlsafe_b64encode(salt).decode()
    return [b64, b64.rstrip("="), url.rstrip("="), salt.hex(), salt.hex().upper()]


# user, roles, sites, owners, clearance
USERS: list[tuple[str, list[str], list[str], list[str], str]] = [
    ("olga", [OPERATOR], [SITE_A], [], "SECRET"),  # cleared operator at A
    ("oscar", [OPERATOR], [SITE_A], [], "RESTRICTED"),  # uncleared operator at A
    ("omar", [OPERATOR], [SITE_B], [], "CONFIDENTIAL"),  # cleared at B; A, K out of scope
    ("kim", [OPERATOR], [SITE_K], [], "RESTRICTED"),  # cleared at K
    ("fiona", [OFFICIAL], [], [JP], "SECRET"),  # cleared official, JP
    ("felix", [OFFICIAL], [], [JP], "NONE"),  # uncleared official, JP
    ("elena", [OFFICIAL], [], [EU], "NONE"),  # uncleared official, EU
    ("max", [MINISTER], [], [JP, EU], "SECRET"),  # cleared minister
    ("mina", [MINISTER], [], [JP], "NONE"),  # uncleared minister
    ("audrey", [AUDITOR], [], [], "SECRET"),  # auditors never open locations
]
MATRIX_USERS = {
    OPERATOR: "olga",
    OFFICIAL: "fiona",
    MINISTER: "max",
    AUDITOR: "audrey",
    ADMIN: "admin",
}
SELF_CUSTODY_USER = "sam"  # operator at A whose key never touches the server
SPARES_PER_USER = 3  # extra self-custody keys per matrix user, for revocation tests
LOG_ID = "test.local/ledger"


@dataclass
class Template:
    """The scenario, built once: a directory to copy and what the tests need to know."""

    home: Path
    salts: dict[str, bytes]
    spares: dict[str, list[str]]  # user -> key ids of spare keys (custody "self")
    sam: Ed25519Signer  # the self-custody user's own key (held by "the client")
    transfer_id: str
    sealer: Any = None  # the sealing key as unlocked when the template was built
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class World:
    """One running app over one copy of the scenario."""

    home: Path
    db_url: str
    svc: Services
    app: FastAPI
    client: TestClient
    template: Template

    @property
    def salts(self) -> dict[str, bytes]:
        return self.template.salts

    def token(self, user: str, **kw: Any) -> str:
        assert self.svc.issuer is not None
        return self.svc.issuer.issue(user, **kw)

    def auth(self, user: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, **kw)}"}

    def keystore(self) -> FileKeystore:
        return FileKeystore(self.home / "keys", passphrase=PASSPHRASE)

    def sign_token(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """A token signed by the service's REAL issuer key, with any claims and header
        (for tokens the issuer itself would never produce: no exp, wrong typ...)."""
        signer = self.keystore().load(TOKEN_KEY_NAME)
        hdr = {"typ": TOKEN_TYPE, "kid": signer.key_id}
        hdr.update(headers or {})
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return api.auth._signing_jws.encode(
            payload,
            signer,  # type: ignore[arg-type]
            algorithm="EdDSA",
            headers=hdr,
        )

    def good_claims(self, user: str, **over: Any) -> dict[str, Any]:
        t = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.svc.settings.token.issuer,
            "aud": self.svc.settings.token.audience,
            "sub": user,
            "iat": t,
            "nbf": t,
            "exp": t + 600,
            "jti": f"jti-{time.time_ns()}",
        }
        claims.update(over)
        return {k: v for k, v in claims.items() if v is not DROP}

    def signed_entry(
        self, author: str, kind: str, *, signer: Any = None, **fields: Any
    ) -> dict[str, Any]:
        """A submission signed client-side (the author's custodial key, loaded from the
        keystore as the user's own machine would hold it, unless ``signer`` is given)."""
        body = new_body(kind, author, **fields)
        return sign_body(body, [signer or self.keystore().load(author)], log_id=self.svc.log_id)

    def entry_count(self) -> int:
        with self.svc.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(entries)).scalar_one())

    def access_events(self) -> list[dict[str, Any]]:
        with self.svc.reader.connect() as conn:
            rows = conn.execute(select(access_log.c.leaf).order_by(access_log.c.seq))
            return [json.loads(bytes(r.leaf)) for r in rows]

    def access_leaves(self) -> list[bytes]:
        with self.svc.reader.connect() as conn:
            rows = conn.execute(select(access_log.c.leaf).order_by(access_log.c.seq))
            return [bytes(r.leaf) for r in rows]

    def close(self) -> None:
        self.client.close()
        committer = getattr(self.svc, "committer", None)  # the group-commit thread
        if committer is not None:
            committer.close()
        self.svc.ledger.engine.dispose()
        self.svc.reader.dispose()


DROP = object()  # good_claims(user, exp=DROP) leaves the claim out


def _register_location_site(led: Ledger, code: str, custodian: str, owners: list[str]) -> None:
    led.register_site(
        admin="admin",
        code=code,
        classification=CLASSIFICATION[code],
        custodian=custodian,
        owners=owners,
        location=LOCATIONS[code],
    )


def build_scenario(led: Ledger) -> dict[str, Any]:
    """Record the API scenario on an initialised ledger (genesis only, ``admin``)."""
    act = led.act
    for code, name, country in (
        (JP, "JOGMEC national reserve", "JP"),
        (EU, "EU joint stockpile", "EU"),
        (KR, "KOMIR public stockpile", "KR"),
    ):
        act("admin", "owner.registered", code=code, name=name, country=country)
    for code, name, form, basis in (
        (NDPR, "Neodymium-praseodymium oxide", "oxide", "TREO"),
        (DY, "Dysprosium metal", "metal", "TREM"),
        (GA, "Gallium metal", "metal", "Ga"),
    ):
        act(
            "admin",
            "material.registered",
            code=code,
            name=name,
            form=form,
            base_unit="g",
            grade_basis=basis,
        )
    _register_location_site(led, SITE_A, JP, [JP, EU])
    _register_location_site(led, SITE_B, EU, [EU, JP])
    _register_location_site(led, SITE_K, KR, [KR])
    for user, roles, sites, owners, clearance in USERS:
        led.register_key(
            admin="admin", user=user, roles=roles, sites=sites, owners=owners, clearance=clearance
        )
    spares: dict[str, list[str]] = {}
    for user in MATRIX_USERS.values():
        u_roles, u_sites, u_owners, u_clear = _profile(user)
        for _ in range(SPARES_PER_USER):
            pub = Ed25519Signer.generate().public_key
            led.register_key(
                admin="admin",
                user=user,
                roles=u_roles,
                sites=u_sites,
                owners=u_owners,
                clearance=u_clear,
                public_key=pub,
            )
            spares.setdefault(user, []).append(_key_id(pub))
    sam = Ed25519Signer.generate()
    led.register_key(
        admin="admin",
        user=SELF_CUSTODY_USER,
        roles=[OPERATOR],
        sites=[SITE_A],
        owners=[],
        clearance="NONE",
        public_key=sam.public_key,
    )

    for i, (code, material, who) in enumerate(
        ((LOT_NDPR, NDPR, "olga"), (LOT_DY, DY, "olga"), (LOT_GA, GA, "omar"), (LOT_KR, GA, "kim"))
    ):
        act(
            who,
            "lot.registered",
            code=code,
            material=material,
            origin="AU",
            supplier="Lynas Rare Earths",
            purity="99.50",
            basis="TREO",
            certificate_sha256=f"{i + 1:02x}" * 32,
            containers=[{"id": f"{code}-C1", "type": "drum", "net_mass": 250_000}],
        )

    def receipt(who: str, site: str, owner: str, lot: str, qty: int, ref: str) -> None:
        act(
            who,
            "stock.receipt",
            site=site,
            owner=owner,
            lot=lot,
            quantity=qty,
            occurred_at=now(),
            supplier="Lynas Rare Earths",
            accepted_purity="99.50",
            reference=ref,
        )

    receipt("olga", SITE_A, JP, LOT_NDPR, 50_000_000, "PO-JP-0001")
    receipt("olga", SITE_A, EU, LOT_DY, 2_000_000, "PO-EU-0007")
    receipt("omar", SITE_B, EU, LOT_GA, 3_000_000, "PO-EU-0008")
    receipt("omar", SITE_B, JP, LOT_NDPR, 10_000_000, "PO-JP-0002")
    receipt("kim", SITE_K, KR, LOT_KR, 4_000_000, "PO-KR-0001")
    res = act(
        "olga",
        "stock.dispatch",
        site=SITE_A,
        owner=JP,
        lot=LOT_NDPR,
        quantity=12_000_000,
        occurred_at=now(),
        to_site=SITE_B,
        reference="TR-0001",
    )
    with led.engine.connect() as conn:
        transfer_id = str(
            conn.execute(
                select(entries.c.entry_id).where(entries.c.seq == res.first_seq)
            ).scalar_one()
        )
    act(
        "omar",
        "stock.arrival",
        site=SITE_B,
        transfer=transfer_id,
        quantity=11_998_500,
        occurred_at=now(),
        shortfall_reason="one drum seal damaged in transit",
    )
    valid_from, valid_to = "2025-01-01T00:00:00Z", "2030-12-31T00:00:00Z"
    for who, owner, material, annual in (
        ("fiona", JP, NDPR, 120_000_000),
        ("elena", EU, GA, 20_000_000),
    ):
        act(
            who,
            "target.set",
            owner=owner,
            material=material,
            days_of_cover=90,
            annual_quantity=annual,
            basis="consumption",
            valid_from=valid_from,
            valid_to=valid_to,
        )
    return {"spares": spares, "sam": sam, "transfer_id": transfer_id}


def _profile(user: str) -> tuple[list[str], list[str], list[str], str]:
    if user == "admin":
        return [ADMIN], [], [], "NONE"
    for u, roles, sites, owners, clearance in USERS:
        if u == user:
            return roles, sites, owners, clearance
    raise KeyError(user)


def _key_id(pub: bytes) -> str:
    from ledger.crypto import key_id

    return key_id(pub)


def build_ledger_home(home: Path, db_url: str) -> Template:
    """Initialise ``db_url`` with the scenario; keys in ``home/keys``."""
    keydir = home / "keys"
    led = make_ledger(db_url, keydir)
    sealer = load_or_create_sealer(keydir, passphrase=PASSPHRASE)
    led.sealer = sealer
    meta = build_scenario(led)
    salts = {}
    with led.engine.connect() as conn:
        for site in SITES:
            salts[site] = open_location(conn, site=site, sealer=sealer).salt
    led.engine.dispose()
    return Template(
        home=home,
        salts=salts,
        spares=meta["spares"],
        sam=meta["sam"],
        transfer_id=meta["transfer_id"],
        sealer=sealer,
    )


def api_settings(home: Path, db_url: str, **token: Any) -> ApiSettings:
    return ApiSettings(
        ledger=Settings(home=home, db_url=db_url, user=None, log_level="info"),
        token=TokenSettings(**token),
        unsafe_demo_login=False,
    )


def open_world(
    home: Path,
    db_url: str,
    template: Template,
    *,
    settings: ApiSettings | None = None,
    reuse_sealer: bool = False,
) -> World:
    """Services and app over ``home``. ``reuse_sealer``: the sealing key file is a copy
    of the template's, so hand build_services the key the template already unlocked
    instead of paying scrypt (~0.4 s) again; the file is checked to be that copy."""
    settings = settings or api_settings(home, db_url)
    if reuse_sealer and template.sealer is not None:
        same = (home / "keys" / SEALING_KEY_FILE).read_bytes() == (
            template.home / "keys" / SEALING_KEY_FILE
        ).read_bytes()
        assert same, "not a copy of the template's keystore"
        with mock.patch.object(
            keys.factory, "load_or_create_sealer", lambda *a, **k: template.sealer
        ):
            svc = build_services(settings, passphrase=PASSPHRASE)
    else:
        svc = build_services(settings, passphrase=PASSPHRASE)
    app = create_app(svc)
    # Server errors must come back as responses (the tests check their bodies), not as
    # exceptions raised into the test.
    client = TestClient(app, raise_server_exceptions=False)
    return World(home=home, db_url=db_url, svc=svc, app=app, client=client, template=template)


def copy_world(template: Template, dest: Path, **kw: Any) -> World:
    shutil.copytree(template.home, dest)
    db_url = f"sqlite:///{dest / 'ledger.db'}"
    kw.setdefault("reuse_sealer", True)
    return open_world(dest, db_url, template, **kw)


# -- fixtures (import them into a test module to use them) ---------------------------


SHM = Path("/dev/shm")


@contextmanager
def scratch_dir(fallback: Path) -> Iterator[Path]:
    """A directory in memory (tmpfs) where there is one: every append fsyncs, and a busy
    disk would otherwise dominate the run time. Removed afterwards."""
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="reserve-api-test-", dir=SHM))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
    else:
        fallback.mkdir(parents=True, exist_ok=True)
        yield fallback


@pytest.fixture(scope="session")
def api_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    with scratch_dir(tmp_path_factory.mktemp("api-template")) as base:
        home = base / "home"
        home.mkdir()
        yield build_ledger_home(home, f"sqlite:///{home / 'ledger.db'}")


@pytest.fixture
def world(api_template: Template, tmp_path: Path) -> Iterator[World]:
    """A fresh copy of the scenario (for tests that write or break things)."""
    with scratch_dir(tmp_path) as base:
        w = copy_world(api_template, base / "home")
        yield w
        w.close()


@pytest.fixture(scope="module")
def shared_world(
    api_template: Template, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One copy per module, for tests whose writes do not disturb each other. Built
    through the real start-up path, keystore unlock included."""
    with scratch_dir(tmp_path_factory.mktemp("api-shared")) as base:
        w = copy_world(api_template, base / "home", reuse_sealer=False)
        yield w
        w.close()


@pytest.fixture
def pg_world(pg_url: str, tmp_path: Path) -> Iterator[World]:
    with scratch_dir(tmp_path) as base:
        home = base / "pg-home"
        home.mkdir()
        template = build_ledger_home(home, pg_url)
        w = open_world(home, pg_url, template, reuse_sealer=True)
        yield w
        w.close()


# -- tokens ---------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for tokens PyJWT would refuse to produce)."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{h}.{p}.{b64url(signature)}"


def foreign_token(claims: dict[str, Any], kid: str, key: Ed25519PrivateKey | None = None) -> str:
    """A well-formed EdDSA token signed by a key the service does not trust."""
    key = key or Ed25519PrivateKey.generate()
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": TOKEN_TYPE, "kid": kid})


# -- logs -----------------------------------------------------------------------------


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every structlog event, rendered as one JSON line with the bound context (request
    id, user), as the service would write it. The processor list is changed in place so
    loggers already cached by an earlier ``structlog.configure`` are captured too."""
    lines: list[str] = []

    def sink(logger: Any, method: str, event_dict: dict[str, Any]) -> Any:
        lines.append(json.dumps(event_dict, default=repr, sort_keys=True))
        raise structlog.DropEvent

    config = structlog.get_config()
    procs = config["processors"]
    saved = list(procs)
    # Another test may have configured level filtering and logger caching (the CLI
    # does): lift both while capturing, so info lines are seen too.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    procs.clear()
    procs.extend(
        [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, sink]
    )
    try:
        yield lines
    finally:
        procs.clear()
        procs.extend(saved)
        structlog.configure(
            wrapper_class=config["wrapper_class"],
            cache_logger_on_first_use=config["cache_logger_on_first_use"],
        )


class ListHandler(logging.Handler):
    """Standard-library log records of the server side (not the test client's)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):
            return  # the test client logs the URLs it calls; that is not the service
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {msg}")


@contextmanager
def captured_stdlib_logs() -> Iterator[list[str]]:
    handler = ListHandler()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
