"""Site locations stay secret: committed in the log, sealed beside it (DESIGN.md, Secrets).

The flow under test: register an owner, then a ``site.registered`` entry whose
``location_commitment`` comes from :func:`ledger.store.locations.seal_location`, appended
with the sealing callback; later a ``site.relocated`` entry with a second version. Every
test runs on SQLite and PostgreSQL (``db_url``) unless it needs no database.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import os
import pickle
import stat
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, func, inspect, select, text, update

from keys import AesGcmSealer, FileKeystore, load_or_create_sealer, load_sealer
from keys.sealing import SEALING_KEY_FILE
from ledger.canonical import canonical
from ledger.entries import decode_leaf
from ledger.errors import InvalidEntry, KeystoreError, NotFound, VerificationFailed
from ledger.kinds.stock import SiteRegistered, SiteRelocated
from ledger.locations import (
    Location,
    Opening,
    commitment,
    location_bytes,
    parse_location,
    verify_opening,
)
from ledger.service import Ledger, new_body
from ledger.store.audit import export_bundle, verify_database
from ledger.store.locations import (
    location_history,
    open_location,
    seal_location,
    sealed_aad,
)
from ledger.store.log import AppendResult, append, head
from ledger.store.schema import entries, site_locations, sites
from tests.conftest import PASSPHRASE, make_ledger
from tests.tamper_helpers import tampering

OWNER = "JP-RESERVE"
SITE = "SITE-7F3K"
OTHER_SITE = "SITE-2Q9W"

LOC = Location(
    name="Kashima Strategic Depot No. 3",
    address="4-2-7 Higashi-Fukashiba, Kamisu, Ibaraki 314-0102",
    latitude=35.9021173,
    longitude=140.6943811,
    notes="Gate B, north fence; night guard post 17",
)
LOC2 = Location(
    name="Tomakomai East Bonded Vault",
    address="112 Yufutsu Industrial Road, Tomakomai, Hokkaido 059-1372",
    latitude=42.6412397,
    longitude=141.7301829,
)
LOC_OTHER = Location(
    name="Sakaide Coastal Magazine",
    address="9 Banshu-cho Pier Road, Sakaide, Kagawa 762-0012",
    latitude=34.3298611,
    longitude=133.8516944,
    notes="Rail siding 4",
)
SALT = bytes(range(32))  # a fixed salt only where a test must look for it; else random


def secret_strings(loc: Location) -> list[bytes]:
    """Every form in which a leaked location would show: each text field, and each
    coordinate as text (cut after 5 decimals, which any longer form contains, and rounded
    to 5 decimals)."""
    out = [loc.name, loc.address]
    if loc.notes:
        out.append(loc.notes)
    for v in (loc.latitude, loc.longitude):
        full = repr(v)
        out += [full[: full.index(".") + 6], f"{v:.5f}"]
    return [s.encode() for s in out]


def salt_forms(salt: bytes) -> list[bytes]:
    return [
        salt,
        salt.hex().encode(),
        base64.b64encode(salt),
        base64.urlsafe_b64encode(salt),
        base64.b64encode(salt).rstrip(b"="),
    ]


def assert_clean(blob: bytes, secrets: list[bytes], where: str) -> None:
    for s in secrets:
        assert s not in blob, f"a location secret leaked into {where}"
        assert s.lower() not in blob.lower(), f"a location secret leaked into {where}"


# -- the flow -------------------------------------------------------------------------


@pytest.fixture
def led(db_url: str, tmp_path: Path) -> Ledger:
    led = make_ledger(db_url, tmp_path / "keys")
    led.act("admin", "owner.registered", code=OWNER, name="JOGMEC", country="JP")
    return led


@pytest.fixture
def sealer() -> AesGcmSealer:
    return AesGcmSealer.generate()


def register_site(
    led: Ledger,
    sealer: Any,
    *,
    site: str = SITE,
    location: Location = LOC,
    salt: bytes | None = None,
) -> tuple[str, AppendResult]:
    commit, also = seal_location(site=site, location=location, sealer=sealer, salt=salt)
    body = new_body(
        "site.registered",
        "admin",
        code=site,
        classification="SECRET",
        custodian=OWNER,
        owners=[OWNER],
        location_commitment=commit,
    )
    result = append(
        led.engine,
        [led.sign(body, [led.signer_for("admin")])],
        log_signer=led.log_signer(),
        also=also,
    )
    return commit, result


def relocate_site(
    led: Ledger, sealer: Any, *, site: str = SITE, location: Location = LOC2
) -> tuple[str, AppendResult]:
    commit, also = seal_location(site=site, location=location, sealer=sealer)
    body = new_body("site.relocated", "admin", site=site, location_commitment=commit)
    result = append(
        led.engine,
        [led.sign(body, [led.signer_for("admin")])],
        log_signer=led.log_signer(),
        also=also,
    )
    return commit, result


def signed_commitment(engine: Engine, seq: int) -> str:
    """The commitment as the signed log holds it (not the sealed table's copy)."""
    with engine.connect() as conn:
        raw = conn.execute(select(entries.c.leaf).where(entries.c.seq == seq)).scalar_one()
    leaf, _ = decode_leaf(bytes(raw))
    assert isinstance(leaf.entry, SiteRegistered | SiteRelocated)
    return leaf.entry.location_commitment


def sealed_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(site_locations).order_by(site_locations.c.site, site_locations.c.version)
            )
        )


def open_(engine: Engine, sealer: Any, site: str = SITE, version: int | None = None) -> Opening:
    with engine.connect() as conn:
        return open_location(conn, site=site, sealer=sealer, version=version)


def database_dump(engine: Engine, url: str) -> bytes:
    """Everything the database holds, as bytes.

    Every column of every table (bytea/BLOB raw, the rest as text), plus on PostgreSQL
    each row cast to text, plus on SQLite the raw database and WAL files."""
    parts: list[bytes] = []
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
        assert "site_locations" in names and "entries" in names
        for name in names:
            for row in conn.execute(text(f'SELECT * FROM "{name}"')):
                for value in row:
                    if isinstance(value, bytes | memoryview | bytearray):
                        parts.append(bytes(value))
                    else:
                        parts.append(str(value).encode())
            if conn.dialect.name == "postgresql":
                for (row_text,) in conn.execute(text(f'SELECT t::text FROM "{name}" t')):
                    parts.append(row_text.encode())
    if url.startswith("sqlite"):
        db = Path(url.removeprefix("sqlite:///"))
        files = sorted(db.parent.glob(db.name + "*"))
        assert db in files
        parts += [f.read_bytes() for f in files]
    return b"\n".join(parts)


# -- opening --------------------------------------------------------------------------


def test_open_returns_location_and_salt_matching_the_signed_entry(
    led: Ledger, sealer: AesGcmSealer
) -> None:
    commit, result = register_site(led, sealer)
    opening = open_(led.engine, sealer)
    assert opening.site == SITE
    assert opening.version == 1
    assert opening.commitment == commit
    assert opening.location == LOC
    assert len(opening.salt) == 32
    # The proof a cleared user checks: the opening against the *signed* commitment.
    in_log = signed_commitment(led.engine, result.first_seq)
    assert in_log == commit
    verify_opening(commitment=in_log, salt=opening.salt, location=location_bytes(LOC))
    opening.verify()
    # The sealed row names the key and the signed commitment, nothing secret.
    (row,) = sealed_rows(led.engine)
    assert (row.site, row.version, row.commitment, row.key_id) == (
        SITE,
        1,
        commit,
        sealer.key_id,
    )
    assert len(bytes(row.nonce)) == 12
    with led.engine.connect() as conn:
        assert (
            conn.execute(
                select(sites.c.location_commitment).where(sites.c.code == SITE)
            ).scalar_one()
            == commit
        )
    # The log still verifies end to end with the sealed table beside it.
    report = verify_database(led.engine, trusted_log_key=led.keystore.public_key("log"))
    assert report.size == result.size


def test_given_salt_is_used_and_random_salts_differ(led: Ledger, sealer: AesGcmSealer) -> None:
    commit, _ = register_site(led, sealer, salt=SALT)
    assert commit == commitment(salt=SALT, location=location_bytes(LOC))
    assert open_(led.engine, sealer).salt == SALT
    c1, _ = seal_location(site=OTHER_SITE, location=LOC, sealer=sealer)
    c2, _ = seal_location(site=OTHER_SITE, location=LOC, sealer=sealer)
    assert c1 != c2 != commit  # same location, fresh salt: unlinkable commitments


def test_ciphertext_and_whole_database_hold_no_location(
    led: Ledger, sealer: AesGcmSealer, db_url: str
) -> None:
    register_site(led, sealer, salt=SALT)
    relocate_site(led, sealer)
    register_site(led, sealer, site=OTHER_SITE, location=LOC_OTHER)
    secrets = secret_strings(LOC) + secret_strings(LOC2) + secret_strings(LOC_OTHER)
    rows = sealed_rows(led.engine)
    assert len(rows) == 3
    for row in rows:
        ct = bytes(row.ciphertext)
        assert_clean(ct, secrets + salt_forms(SALT), "a ciphertext")
        assert_clean(ct, [location_bytes(LOC), location_bytes(LOC2)], "a ciphertext")
    dump = database_dump(led.engine, db_url)
    assert bytes(rows[0].ciphertext) in dump  # the dump does see the sealed table
    assert_clean(dump, secrets + salt_forms(SALT), "the database")


def test_the_dump_would_see_a_leak(led: Ledger, db_url: str) -> None:
    """Control: with a sealer that does not encrypt, the scan above finds the location,
    so its silence there means something."""

    class PlainSealer:
        key_id = "0" * 64

        def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
            return bytes(12), plaintext

        def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
            return ciphertext

    register_site(led, PlainSealer(), salt=SALT)
    dump = database_dump(led.engine, db_url)
    exact = [LOC.name, LOC.address, LOC.notes, repr(LOC.latitude), repr(LOC.longitude)]
    for s in [*(x.encode() for x in exact), *secret_strings(LOC)[:4], base64.b64encode(SALT)]:
        with pytest.raises(AssertionError):
            assert_clean(dump, [s], "the database")


# -- failing closed -------------------------------------------------------------------


def test_wrong_key_fails_closed(led: Ledger, sealer: AesGcmSealer) -> None:
    register_site(led, sealer)
    other = AesGcmSealer.generate()
    assert other.key_id != sealer.key_id
    with pytest.raises(KeystoreError) as ei:
        open_(led.engine, other)
    assert str(ei.value) == "sealed location cannot be opened with this key"

    class Impostor:
        """Another key claiming the right key id: the AEAD itself must refuse."""

        key_id = sealer.key_id

        def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
            return other.seal(plaintext, aad=aad)

        def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
            return other.open(nonce, ciphertext, aad=aad)

    with pytest.raises(KeystoreError) as ei:
        open_(led.engine, Impostor())
    assert str(ei.value) == "sealed location cannot be opened with this key"
    assert ei.value.__cause__ is None and ei.value.__context__ is None


@pytest.mark.parametrize("column", ["ciphertext", "nonce"])
@pytest.mark.parametrize("where", [0, 7, -1])
def test_flipped_byte_fails_closed(
    led: Ledger, sealer: AesGcmSealer, column: str, where: int
) -> None:
    register_site(led, sealer)
    (row,) = sealed_rows(led.engine)
    blob = bytearray(getattr(row, column))
    blob[where] ^= 0x01
    with tampering(led.engine) as conn:
        conn.execute(
            update(site_locations)
            .where(site_locations.c.site == SITE)
            .values({column: bytes(blob)})
        )
    (after,) = sealed_rows(led.engine)
    assert bytes(getattr(after, column)) == bytes(blob)  # the tampering did land
    with pytest.raises(KeystoreError) as ei:
        open_(led.engine, sealer)
    assert str(ei.value) == "sealed location cannot be opened with this key"
    assert ei.value.__cause__ is None and ei.value.__context__ is None


def test_append_only_trigger_guards_the_sealed_table(led: Ledger, sealer: AesGcmSealer) -> None:
    register_site(led, sealer)
    with pytest.raises(Exception, match=r"append-only"), led.engine.begin() as conn:
        conn.execute(update(site_locations).values(ciphertext=b"\x00" * 40))
    assert open_(led.engine, sealer).location == LOC


def test_ciphertext_moved_to_another_site_does_not_open(led: Ledger, sealer: AesGcmSealer) -> None:
    commit_a, _ = register_site(led, sealer)
    register_site(led, sealer, site=OTHER_SITE, location=LOC_OTHER)
    rows = {r.site: r for r in sealed_rows(led.engine)}
    a, b = rows[SITE], rows[OTHER_SITE]
    assert b.version == a.version == 1
    # Only the sealed blob moved (B keeps its own commitment)...
    with tampering(led.engine) as conn:
        conn.execute(
            update(site_locations)
            .where(site_locations.c.site == OTHER_SITE)
            .values(nonce=bytes(a.nonce), ciphertext=bytes(a.ciphertext))
        )
    with pytest.raises(KeystoreError):
        open_(led.engine, sealer, OTHER_SITE)
    # ...or the whole row, commitment included: the site is bound in too.
    with tampering(led.engine) as conn:
        conn.execute(
            update(site_locations)
            .where(site_locations.c.site == OTHER_SITE)
            .values(commitment=commit_a)
        )
    with pytest.raises(KeystoreError):
        open_(led.engine, sealer, OTHER_SITE)
    # Site A is untouched and still opens.
    assert open_(led.engine, sealer).location == LOC


def test_ciphertext_moved_to_another_version_does_not_open(
    led: Ledger, sealer: AesGcmSealer
) -> None:
    register_site(led, sealer)
    relocate_site(led, sealer)
    v1, _ = sealed_rows(led.engine)
    with tampering(led.engine) as conn:
        conn.execute(
            update(site_locations)
            .where(site_locations.c.site == SITE, site_locations.c.version == 2)
            .values(
                nonce=bytes(v1.nonce), ciphertext=bytes(v1.ciphertext), commitment=v1.commitment
            )
        )
    with pytest.raises(KeystoreError):
        open_(led.engine, sealer)
    assert open_(led.engine, sealer, version=1).location == LOC


def test_a_sealed_opening_that_does_not_match_its_commitment_is_refused(
    led: Ledger, sealer: AesGcmSealer
) -> None:
    """Someone holding the key re-seals a different location under the row's commitment:
    the AEAD opens, the commitment check refuses."""
    commit, _ = register_site(led, sealer)
    forged_plain = canonical(
        {
            "location": {
                "address": LOC2.address,
                "latitude": LOC2.latitude,
                "longitude": LOC2.longitude,
                "name": LOC2.name,
                "notes": "",
            },
            "salt": base64.b64encode(SALT).decode(),
        }
    )
    nonce, ct = sealer.seal(forged_plain, aad=sealed_aad(site=SITE, version=1, commitment=commit))
    with tampering(led.engine) as conn:
        conn.execute(
            update(site_locations)
            .where(site_locations.c.site == SITE)
            .values(nonce=nonce, ciphertext=ct)
        )
    with pytest.raises(VerificationFailed) as ei:
        open_(led.engine, sealer)
    assert LOC2.name not in str(ei.value)


def test_open_missing_site_or_version_is_not_found(led: Ledger, sealer: AesGcmSealer) -> None:
    with pytest.raises(NotFound):
        open_(led.engine, sealer)
    register_site(led, sealer)
    with pytest.raises(NotFound):
        open_(led.engine, sealer, version=2)
    with pytest.raises(NotFound):
        open_(led.engine, sealer, OTHER_SITE)


# -- relocation -----------------------------------------------------------------------


def test_relocation_keeps_every_version_provable(led: Ledger, sealer: AesGcmSealer) -> None:
    c1, r1 = register_site(led, sealer)
    c2, r2 = relocate_site(led, sealer)
    assert c1 != c2
    latest = open_(led.engine, sealer)
    old = open_(led.engine, sealer, version=1)
    assert (latest.version, latest.commitment, latest.location) == (2, c2, LOC2)
    assert (old.version, old.commitment, old.location) == (1, c1, LOC)
    # Each opening proves its own signed commitment, and not the other one.
    assert signed_commitment(led.engine, r1.first_seq) == c1
    assert signed_commitment(led.engine, r2.first_seq) == c2
    verify_opening(commitment=c1, salt=old.salt, location=location_bytes(old.location))
    verify_opening(commitment=c2, salt=latest.salt, location=location_bytes(latest.location))
    with pytest.raises(VerificationFailed):
        verify_opening(commitment=c2, salt=old.salt, location=location_bytes(old.location))
    with pytest.raises(VerificationFailed):
        verify_opening(commitment=c1, salt=latest.salt, location=location_bytes(latest.location))
    with led.engine.connect() as conn:
        history = location_history(conn, SITE)
        assert [(v, c) for v, c, _ in history] == [(1, c1), (2, c2)]
        assert history[0][2] <= history[1][2]
        assert location_history(conn, OTHER_SITE) == []
        assert (
            conn.execute(
                select(sites.c.location_commitment).where(sites.c.code == SITE)
            ).scalar_one()
            == c2
        )


# -- nothing leaks ----------------------------------------------------------------------


def test_no_location_in_export_entries_or_logs(
    led: Ledger,
    sealer: AesGcmSealer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    seen_errors: list[str] = []
    with structlog.testing.capture_logs() as events:
        register_site(led, sealer, salt=SALT)
        relocate_site(led, sealer)
        opening = open_(led.engine, sealer, version=1)
        for bad in (AesGcmSealer.generate(),):
            try:
                open_(led.engine, bad)
            except KeystoreError as exc:
                seen_errors.append("".join(traceback.format_exception(exc)))
        try:
            verify_opening(commitment="0" * 64, salt=opening.salt, location=location_bytes(LOC))
        except VerificationFailed as exc:
            seen_errors.append("".join(traceback.format_exception(exc)))
        size, _ = export_bundle(led.engine, tmp_path / "bundle")
        logging.getLogger("ledger").info("done with %r %r", opening, LOC)  # reprs hide them
    assert len(seen_errors) == 2
    assert any(e.get("event") == "location_sealed" for e in events)  # capture works
    out, err = capsys.readouterr()
    secrets = secret_strings(LOC) + secret_strings(LOC2) + salt_forms(SALT)

    files = sorted(p for p in (tmp_path / "bundle").rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"checkpoint.note", "genesis.json"}
    for p in files:
        assert_clean(p.read_bytes(), secrets, f"bundle file {p.name}")
    with led.engine.connect() as conn:
        leaves = b"\n".join(bytes(r.leaf) for r in conn.execute(select(entries.c.leaf)))
        assert conn.execute(select(func.count()).select_from(entries)).scalar_one() == size
    assert b"site.relocated" in leaves
    assert_clean(leaves, secrets, "the entries table")
    assert_clean(repr(events).encode(), secrets, "structlog events")
    assert_clean(caplog.text.encode(), secrets, "stdlib logging")
    assert_clean((out + err).encode(), secrets, "stdout/stderr")
    for e in seen_errors:
        assert_clean(e.encode(), secrets, "an error traceback")
    assert_clean(repr(opening).encode(), secrets, "repr(Opening)")
    assert "hidden" in repr(opening) and repr(LOC) == "Location(<hidden>)"


# -- parsing --------------------------------------------------------------------------

GOOD = {
    "name": "Kashima Strategic Depot No. 3",
    "address": "4-2-7 Higashi-Fukashiba",
    "latitude": 35.9021173,
    "longitude": 140.6943811,
}
SECRET = "Ultra-Secret Vault Qx7"


def _json(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return canonical({k: v for k, v in doc.items() if v is not None})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_json(name=""), "name"),
        (_json(name=SECRET * 20), "name"),
        (_json(name=12345), "name"),
        (_json(address=SECRET * 40), "address"),
        (_json(notes=SECRET * 200), "notes"),
        (_json(latitude=90.0001), "latitude"),
        (_json(latitude=-91), "latitude"),
        (_json(latitude=SECRET), "latitude"),
        (_json(latitude=True), "latitude"),
        (_json(longitude=180.5), "longitude"),
        (_json(longitude=-180.0001), "longitude"),
        (_json(longitude=None), "longitude"),
        (_json(name=None), "name"),
        (_json(secret_field=SECRET), "secret_field"),
        (
            _json(name=SECRET).replace(b'"name"', b'"address":"' + SECRET.encode() + b'","name"'),
            "address",
        ),
        (_json(name="Depot \\ud800" + SECRET).replace(b"\\\\ud800", b"\\ud800"), "name"),
    ],
)
def test_parse_location_errors_name_the_field_never_the_value(data: bytes, field: str) -> None:
    with pytest.raises(InvalidEntry) as ei:
        parse_location(data)
    exc = ei.value
    assert exc.field == field
    rendered = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    for needle in (SECRET, "Qx7", "90.0001", "180.0001", "Depot"):
        assert needle not in rendered
    assert exc.__cause__ is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[1, 2]",
        b'{"name": "Ultra-Secret Vault Qx7", ',
        b'{"name": NaN}',
        b"\xff\xfe" + SECRET.encode(),
        b'{"Ultra-Secret Vault Qx7": 1}',
        b" " * 70_000,
    ],
)
def test_parse_location_rejects_malformed_without_quoting(data: bytes) -> None:
    with pytest.raises(InvalidEntry) as ei:
        parse_location(data)
    rendered = str(ei.value) + "".join(traceback.format_exception(ei.value))
    assert "Qx7" not in rendered
    assert ei.value.__cause__ is None and ei.value.__context__ is None


def test_parse_location_accepts_and_canonicalises() -> None:
    loc = parse_location(b'{"longitude": 140.6943811, "latitude": 35, "name": "A", "address": "B"}')
    assert loc == Location(name="A", address="B", latitude=35.0, longitude=140.6943811)
    assert location_bytes(loc) == (
        b'{"address":"B","latitude":35,"longitude":140.6943811,"name":"A","notes":""}'
    )
    assert parse_location(location_bytes(loc)) == loc
    # Non-ASCII text takes the RFC 8785 path and round-trips.
    jp = Location(name="鹿島 備蓄基地", address="茨城県神栖市", latitude=-0.0, longitude=180)
    assert parse_location(location_bytes(jp)) == jp
    assert b'"latitude":0,' in location_bytes(jp)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(InvalidEntry) as ei:
        Location(name="A", address="B", latitude=float("nan"), longitude=0.0)
    assert ei.value.field == "latitude"
    with pytest.raises(InvalidEntry) as ei:
        Location(name="", address="B", latitude=0.0, longitude=0.0)
    assert ei.value.field == "name"


def test_commitment_and_verify_opening_rules() -> None:
    loc = location_bytes(LOC)
    c = commitment(salt=SALT, location=loc)
    assert len(c) == 64 and c == c.lower()
    verify_opening(commitment=c, salt=SALT, location=loc)
    with pytest.raises(InvalidEntry):
        commitment(salt=SALT[:31], location=loc)
    # The same location in a non-canonical form is not an opening (one commitment, one text).
    with pytest.raises(InvalidEntry):
        commitment(salt=SALT, location=loc.replace(b",", b", "))
    cases = [
        {"commitment": c, "salt": bytes(32), "location": loc},
        {"commitment": c, "salt": SALT, "location": location_bytes(LOC2)},
        {"commitment": c, "salt": SALT, "location": loc.replace(b",", b", ")},
        {"commitment": c, "salt": SALT[:16], "location": loc},
        {"commitment": c.upper(), "salt": SALT, "location": loc},
        {"commitment": "f" * 64, "salt": SALT, "location": loc},
    ]
    for kw in cases:
        with pytest.raises(VerificationFailed) as ei:
            verify_opening(**kw)
        assert_clean(str(ei.value).encode(), secret_strings(LOC) + secret_strings(LOC2), "error")
    opening = Opening(site=SITE, version=1, commitment=c, salt=SALT, location=LOC)
    opening.verify()
    assert_clean(repr(opening).encode() + str(opening).encode(), secret_strings(LOC), "repr")
    assert SALT.hex() not in repr(opening)


# -- atomicity --------------------------------------------------------------------------


class ExplodingSealer:
    key_id = "e" * 64

    def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
        raise RuntimeError("the HSM is unavailable")

    def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
        raise AssertionError("not reached")


class LossySealer:
    """Seals something it cannot open again (a broken backend)."""

    def __init__(self) -> None:
        self._inner = AesGcmSealer.generate()
        self.key_id = self._inner.key_id

    def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
        return self._inner.seal(plaintext, aad=aad + b"x")

    def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
        return self._inner.open(nonce, ciphertext, aad=aad)


def _state(engine: Engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        return (
            int(head(engine).size),
            conn.execute(select(func.count()).select_from(entries)).scalar_one(),
            conn.execute(select(func.count()).select_from(sites)).scalar_one(),
            conn.execute(select(func.count()).select_from(site_locations)).scalar_one(),
        )


@pytest.mark.parametrize(
    ("bad_sealer", "error"),
    [(ExplodingSealer(), RuntimeError), (LossySealer(), KeystoreError)],
)
def test_a_failing_also_writes_nothing(led: Ledger, bad_sealer: Any, error: type) -> None:
    before = _state(led.engine)
    with pytest.raises(error):
        register_site(led, bad_sealer)
    assert _state(led.engine) == before
    assert before[2] == 0 and before[3] == 0
    # The log is healthy and the same site can then be registered with a working sealer.
    good = AesGcmSealer.generate()
    register_site(led, good)
    assert open_(led.engine, good).location == LOC


def test_a_sealed_row_needs_its_signed_commitment(led: Ledger, sealer: AesGcmSealer) -> None:
    """The callback refuses to store a location the appended batch does not commit to."""
    before = _state(led.engine)
    _, also = seal_location(site=SITE, location=LOC, sealer=sealer)
    other_commit, _ = seal_location(site=SITE, location=LOC2, sealer=sealer)
    body = new_body(
        "site.registered",
        "admin",
        code=SITE,
        classification="SECRET",
        custodian=OWNER,
        owners=[OWNER],
        location_commitment=other_commit,
    )
    with pytest.raises(InvalidEntry) as ei:
        append(
            led.engine,
            [led.sign(body, [led.signer_for("admin")])],
            log_signer=led.log_signer(),
            also=also,
        )
    assert ei.value.field == "location_commitment"
    assert _state(led.engine) == before


def test_a_refused_entry_stores_no_sealed_row(led: Ledger, sealer: AesGcmSealer) -> None:
    register_site(led, sealer)
    before = _state(led.engine)
    with pytest.raises(Exception, match="already registered"):
        register_site(led, sealer, location=LOC2)  # the reducer refuses a second SITE
    assert _state(led.engine) == before


# -- the sealing key file -------------------------------------------------------------

PASS = b"correct horse battery staple 42"


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, AesGcmSealer]]:
    root = tmp_path_factory.mktemp("sealing") / "keystore"
    yield root, load_or_create_sealer(root, passphrase=PASS)


def test_key_file_is_0600_json_and_reloads(keyfile: tuple[Path, AesGcmSealer]) -> None:
    root, sealer = keyfile
    path = root / SEALING_KEY_FILE
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    assert [p.name for p in root.iterdir()] == [SEALING_KEY_FILE]  # no temp file left
    doc = json.loads(path.read_bytes())
    assert set(doc) == {"v", "kdf", "salt", "n", "r", "p", "nonce", "wrapped"}
    assert (doc["v"], doc["kdf"], doc["r"], doc["p"]) == (1, "scrypt", 8, 1)
    assert doc["n"] >= 2**14
    assert len(base64.b64decode(doc["wrapped"])) == 48
    again = load_or_create_sealer(root, passphrase=PASS)  # loads, never overwrites
    assert again.key_id == sealer.key_id
    assert load_sealer(root, passphrase=PASS).key_id == sealer.key_id
    nonce, ct = sealer.seal(b"opening", aad=b"aad")
    assert again.open(nonce, ct, aad=b"aad") == b"opening"
    with pytest.raises(KeystoreError):
        again.open(nonce, ct, aad=b"other")


def test_wrong_passphrase_error_does_not_contain_it(
    keyfile: tuple[Path, AesGcmSealer],
) -> None:
    root, _ = keyfile
    wrong = b"Tr0ub4dor&3-not-the-passphrase"
    for fn in (load_sealer, load_or_create_sealer):
        with pytest.raises(KeystoreError) as ei:
            fn(root, passphrase=wrong)
        rendered = str(ei.value) + repr(ei.value) + "".join(traceback.format_exception(ei.value))
        for p in (wrong, PASS):
            assert p.decode() not in rendered
            assert p.hex() not in rendered
        assert "passphrase" in str(ei.value)
        assert ei.value.__cause__ is None and ei.value.__context__ is None


def test_missing_tampered_and_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="no sealing key"):
        load_sealer(tmp_path / "nowhere", passphrase=PASS)
    with pytest.raises(KeystoreError):
        load_sealer(tmp_path, passphrase=b"")
    root = tmp_path / "ks"
    sealer = load_or_create_sealer(root, passphrase=PASS)
    path = root / SEALING_KEY_FILE
    doc = json.loads(path.read_bytes())
    tampered_docs = [
        {**doc, "wrapped": base64.b64encode(bytes(48)).decode()},
        {**doc, "n": 2**40},
        {**doc, "v": True},
        {**doc, "extra": 1},
    ]
    for bad in tampered_docs:
        os.chmod(path, 0o600)
        path.write_text(json.dumps(bad))
        with pytest.raises(KeystoreError):
            load_sealer(root, passphrase=PASS)
    path.write_text(json.dumps(doc))
    assert load_sealer(root, passphrase=PASS).key_id == sealer.key_id
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeystoreError, match="symbolic link"):
        load_sealer(root, passphrase=PASS)


def test_sealer_never_shows_or_serialises_its_key() -> None:
    key = os.urandom(32)
    sealer = AesGcmSealer(key)
    assert sealer.key_id == hashlib.sha256(b"reserve-ledger/sealing-key-id\n" + key).hexdigest()
    assert sealer.key_id != hashlib.sha256(key).hexdigest()
    for shown in (repr(sealer), str(sealer)):
        assert key.hex() not in shown and base64.b64encode(key).decode() not in shown
    for action in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            action(sealer)
    n1, _ = sealer.seal(b"x", aad=b"")
    n2, _ = sealer.seal(b"x", aad=b"")
    assert len(n1) == 12 and n1 != n2  # a fresh nonce per seal
    with pytest.raises(KeystoreError):
        AesGcmSealer(key[:16])
    with pytest.raises(KeystoreError, match="cannot be opened"):
        sealer.open(n1[:8], b"x" * 17, aad=b"")


def test_sealing_key_beside_the_signing_keys(sqlite_url: str, tmp_path: Path) -> None:
    """The sealing key lives in the keystore directory; the ledger's keystore still works."""
    keydir = tmp_path / "keys"
    led = make_ledger(sqlite_url, keydir)
    sealer = load_or_create_sealer(keydir, passphrase=PASSPHRASE)
    led.act("admin", "owner.registered", code=OWNER, name="JOGMEC", country="JP")
    register_site(led, sealer)
    reopened = load_sealer(keydir, passphrase=PASSPHRASE)
    assert open_(led.engine, reopened).location == LOC
    assert FileKeystore(keydir, passphrase=PASSPHRASE).load("admin")
