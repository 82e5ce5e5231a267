"""Owner-scoped bundles with proof of completeness (issue #14).

Three owners: JP keeps its stock at its own sites; FR's stock sits in RO's bunker. JP's
auditor gets JP's part of the history and proves nothing of JP's was left out; FR's and
RO's codes, lots, quantities and free texts never reach JP's bundle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import literal as sa_literal
from sqlalchemy import select

from keys.sealing import AesGcmSealer
from ledger import owner_scope as scope
from ledger.bundle import COMMITMENTS, ENTRIES, MANIFEST, Bundle
from ledger.errors import ConfigError, KeystoreError, VerificationFailed
from ledger.kinds.stock import Receipt
from ledger.owner_bundle import verify_owner_bundle
from ledger.owner_scope_verify import owner_balances
from ledger.service import Ledger
from ledger.store import owner_scope
from ledger.store.audit import export_bundle, verify_database
from ledger.store.owner_export import export_owner_bundle
from ledger.store.projections import read_table
from ledger.store.schema import entries, owner_commitments, owner_keys
from ledger.store.schema import owner_scope as owner_scope_table
from ledger.timefmt import now
from ledger.verify import verify_history
from tests.release_helpers import authorise, set_policy

JP, FR, RO = "JP-RESERVE", "FR-RESERVE", "RO-RESERVE"
SITE_JP1, SITE_JP2, SITE_RO = "SITE-JP1", "SITE-JP2", "SITE-RO9"
NDPR = "NDPR-OXIDE"
LOT_JP, LOT_FR, LOT_RO = "NDPR-JP-001", "NDPR-FR-777", "NDPR-RO-555"
# Free texts only the other owners' entries hold.
SECRETS_OF_OTHERS = [
    FR, RO, LOT_FR, LOT_RO, "Ministere des Armees", "Agentia Rezerve",
    "Solvay La Rochelle", "PO-FR-CONFIDENTIAL", "PO-RO-0042", "radu",
]  # fmt: skip
COMMITMENT = "ab" * 32


def _lot(led: Ledger, actor: str, code: str, supplier: str) -> None:
    led.act(
        actor, "lot.registered", code=code, material=NDPR, origin="AU", supplier=supplier,
        purity="99.50", basis="TREO", certificate_sha256="cd" * 32,
        containers=[{"id": f"{code}-C1", "type": "drum", "net_mass": 250_000}],
    )  # fmt: skip


def _receipt(led: Ledger, actor: str, site: str, owner: str, lot: str, qty: int, supplier: str, ref: str) -> int:
    return led.act(
        actor, "stock.receipt", site=site, owner=owner, lot=lot, quantity=qty, occurred_at=now(),
        supplier=supplier, accepted_purity="99.50", reference=ref,
    ).first_seq  # fmt: skip


def keyring(led: Ledger) -> owner_scope.OwnerKeyring:
    """The ledger's keyring: owners' secrets are stored sealed (migration 0015), here with
    an in-memory sealing key unless the ledger has one."""
    if led.sealer is None:
        led.sealer = AesGcmSealer.generate()
    kr = led.owner_keyring()
    assert kr is not None
    return kr


def key_file(led: Ledger, owner: str) -> str:
    return owner_scope.key_file(led.engine, owner, keyring=keyring(led))


def build(led: Ledger, *, enable: bool = True) -> dict[str, int]:
    """The three-owner history on a log switched to v2 right after its genesis."""
    keyring(led)
    if enable:
        owner_scope.enable(led.engine, keyring=keyring(led))
    users = [
        ("olga", ["operator"], [SITE_JP1, SITE_JP2], []),
        ("omar", ["operator"], [SITE_RO], []),
        ("fiona", ["official"], [], [JP]),
        ("felix", ["official"], [], [JP]),
        ("mina", ["minister"], [], [JP]),
        ("radu", ["official"], [], [RO]),
    ]
    led.act("admin", "owner.registered", code=JP, name="JOGMEC national reserve", country="JP")
    led.act("admin", "owner.registered", code=FR, name="Ministere des Armees", country="FR")
    led.act("admin", "owner.registered", code=RO, name="Agentia Rezerve", country="RO")
    led.act(
        "admin", "material.registered", code=NDPR, name="NdPr oxide", form="oxide",
        base_unit="g", grade_basis="TREO",
    )  # fmt: skip
    for code, custodian, owners in ((SITE_JP1, JP, [JP]), (SITE_JP2, JP, [JP]), (SITE_RO, RO, [RO, FR])):
        led.act(
            "admin", "site.registered", code=code, classification="SECRET", custodian=custodian,
            owners=owners, location_commitment=COMMITMENT,
        )  # fmt: skip
    # Keys after the sites and owners they name (rule key-scope, issue #12).
    for user, roles, sites, owners in users:
        led.register_key(admin="admin", user=user, roles=roles, sites=sites, owners=owners, clearance="NONE")
    _lot(led, "olga", LOT_JP, "Lynas Rare Earths")
    _lot(led, "omar", LOT_FR, "Solvay La Rochelle")
    _lot(led, "omar", LOT_RO, "Solvay La Rochelle")
    seqs: dict[str, int] = {}
    seqs["jp_receipt"] = _receipt(led, "olga", SITE_JP1, JP, LOT_JP, 50_000_000, "Lynas Rare Earths", "PO-JP-1")
    seqs["fr_receipt"] = _receipt(led, "omar", SITE_RO, FR, LOT_FR, 7_000_000, "Solvay La Rochelle", "PO-FR-CONFIDENTIAL")
    seqs["ro_receipt"] = _receipt(led, "omar", SITE_RO, RO, LOT_RO, 3_000_000, "Solvay La Rochelle", "PO-RO-0042")
    dispatch = led.act(
        "olga", "stock.dispatch", site=SITE_JP1, owner=JP, lot=LOT_JP, quantity=5_000_000,
        occurred_at=now(), to_site=SITE_JP2, reference="TR-JP-1",
    )  # fmt: skip
    seqs["jp_dispatch"] = dispatch.first_seq
    seqs["jp_arrival"] = led.act(
        "olga", "stock.arrival", site=SITE_JP2, transfer=led.entry_ref(str(dispatch.first_seq)),
        quantity=5_000_000, occurred_at=now(), shortfall_reason="",
    ).first_seq  # fmt: skip
    led.act(
        "omar", "stock.count", site=SITE_RO, owner=FR, lot=LOT_FR, book=7_000_000,
        counted=7_000_000, occurred_at=now(),
    )  # fmt: skip
    set_policy(led, JP, NDPR, minister="mina", margin=1.0)
    order = authorise(
        led, owner=JP, material=NDPR, quantity=1_000_000, recipient="Shin-Etsu Chemical",
        regime="emergency_release", sites=[SITE_JP1], requester="fiona", approvers=["felix"],
        minister="mina",
    )  # fmt: skip
    seqs["jp_release"] = led.act(
        "olga", "stock.release", site=SITE_JP1, owner=JP, lot=LOT_JP, quantity=1_000_000,
        occurred_at=now(), order=order, recipient="Shin-Etsu Chemical",
    ).first_seq  # fmt: skip
    _receipt(led, "omar", SITE_RO, FR, LOT_FR, 1_000_000, "Solvay La Rochelle", "PO-FR-CONFIDENTIAL")
    return seqs


def _history(led: Ledger, tmp_path: Path) -> tuple[Ledger, dict[str, int], Path, str]:
    seqs = build(led)
    out = tmp_path / "jp"
    export_owner_bundle(led.engine, JP, out, keyring=keyring(led))
    return led, seqs, out, key_file(led, JP)


@pytest.fixture
def history(sqlite_ledger: Ledger, tmp_path: Path) -> tuple[Ledger, dict[str, int], Path, str]:
    return _history(sqlite_ledger, tmp_path)


@pytest.fixture
def history_any(ledger: Ledger, tmp_path: Path) -> tuple[Ledger, dict[str, int], Path, str]:
    """On SQLite and on the real PostgreSQL (migration 0013's triggers, both engines)."""
    return _history(ledger, tmp_path)


def _trust(led: Ledger) -> bytes:
    return led.log_signer().public_key


def _verify(led: Ledger, out: Path, key_file: str) -> Any:
    return verify_owner_bundle(out, owner=JP, key_file=key_file, trusted_log_key=_trust(led))


def _lines(out: Path) -> list[bytes]:
    return (out / ENTRIES).read_bytes().splitlines()


def _write(out: Path, lines: list[bytes]) -> None:
    (out / ENTRIES).write_bytes(b"".join(line + b"\n" for line in lines))
    _reseal(out)


def _reseal(out: Path) -> None:
    """What a forger would do: make the unsigned manifest match the edited files."""
    m = json.loads((out / MANIFEST).read_text())
    m["files"] = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in m["files"]}
    (out / MANIFEST).write_text(json.dumps(m))


def test_scoped_bundle_verifies_and_holds_nothing_of_other_owners(history_any: Any) -> None:
    led, _, out, key_file = history_any
    rep = _verify(led, out, key_file)
    with led.engine.connect() as conn:
        size = conn.execute(select(entries.c.seq)).all()
    assert rep.size == len(size) and rep.withheld > 0 and rep.given + rep.withheld == rep.size
    blob = b"".join(p.read_bytes() for p in out.iterdir())
    for secret in SECRETS_OF_OTHERS:
        assert secret.encode() not in blob, secret
        # nor as an unkeyed hash of the value alone
        assert hashlib.sha256(secret.encode()).hexdigest().encode() not in blob, secret
    assert LOT_JP.encode() in blob  # JP's own part is there, in full
    assert b"7000000" not in blob and b"3000000" not in blob  # others' quantities


def test_full_verify_and_full_bundle_still_check_everything(history: Any, tmp_path: Path) -> None:
    led, _, _, _ = history
    report = verify_database(led.engine, trusted_log_key=_trust(led), keyring=keyring(led))
    assert report.size > 0
    full = tmp_path / "full"
    export_bundle(led.engine, full)
    b = Bundle(full)
    assert (full / COMMITMENTS).is_file()
    keys = {o: [scope.read_key_file(key_file(led, o))[2][0].secret] for o in (JP, FR, RO)}
    rep = verify_history(b.rows(), b.checkpoints(), trusted_log_key=_trust(led), owner_secrets=keys)
    assert rep.size == report.size and rep.root == report.root


@pytest.mark.parametrize("which", ["jp_receipt", "jp_dispatch", "jp_arrival", "jp_release"])
def test_removing_an_owner_entry_is_refused_naming_its_seq(history: Any, which: str) -> None:
    led, seqs, out, key_file = history
    lines = _lines(out)
    seq = seqs[which]
    del lines[seq]
    _write(out, lines)
    with pytest.raises(VerificationFailed) as ei:
        _verify(led, out, key_file)
    assert ei.value.seq == seq


@pytest.mark.parametrize("which", ["jp_receipt", "jp_arrival", "jp_release"])
def test_withholding_an_owner_entry_is_refused_naming_its_seq(history: Any, which: str) -> None:
    led, seqs, out, key_file = history
    lines = _lines(out)
    seq = seqs[which]
    lines[seq] = json.dumps(
        {"seq": seq, "withheld": scope.rest_hash(lines[seq]).hex()}, separators=(",", ":")
    ).encode()
    _write(out, lines)
    with pytest.raises(VerificationFailed, match="withheld") as ei:
        _verify(led, out, key_file)
    assert ei.value.seq == seq


def _set_commitment(out: Path, seq: int, commitment: bytes) -> None:
    rows = [json.loads(x) for x in (out / COMMITMENTS).read_text().splitlines()]
    for r in rows:
        if r["seq"] == seq:
            r["commitment"] = commitment.hex()
    (out / COMMITMENTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    _reseal(out)


@pytest.mark.parametrize("withheld", [False, True])
def test_an_altered_owner_commitment_is_refused_naming_its_seq(history: Any, withheld: bool) -> None:
    """The owner's entry re-committed to touch nobody: given in full, the commitment
    contradicts the entry; withheld as well, the leaf hash no longer reaches the
    signed checkpoint root."""
    led, seqs, out, key_file = history
    seq = seqs["jp_receipt"]
    forged = scope.make_commitment([], log_id="test.local/ledger", seq=seq)
    _set_commitment(out, seq, forged)
    if withheld:
        lines = _lines(out)
        lines[seq] = json.dumps(
            {"seq": seq, "withheld": scope.rest_hash(lines[seq]).hex()}, separators=(",", ":")
        ).encode()
        _write(out, lines)
    with pytest.raises(VerificationFailed) as ei:
        _verify(led, out, key_file)
    if withheld:
        # Nothing at seq itself can show the forgery; the first checkpoint at or after it
        # fails. The checkpoint failure names the seq of the first checkpoint after it.
        assert ei.value.seq is not None and ei.value.seq >= seq
        assert "root does not match" in ei.value.public_message
    else:
        assert ei.value.seq == seq and "owner commitment" in ei.value.public_message


def test_a_log_writing_a_wrong_owner_commitment_is_caught_by_full_verify(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dishonest writer leaves JP out of one receipt's commitment; the hashes, tree and
    checkpoint are consistent with that lie. Only a full verify can see it, and does."""
    led = ledger
    build(led)
    honest = owner_scope.Committer.commit

    def lying(self: Any, body: Any, state: Any, *, seq: int, log_id: str) -> bytes | None:
        if isinstance(body, Receipt) and body.owner == JP:
            return scope.make_commitment([], log_id=log_id, seq=seq)
        return honest(self, body, state, seq=seq, log_id=log_id)

    monkeypatch.setattr(owner_scope.Committer, "commit", lying)
    seq = _receipt(led, "olga", SITE_JP1, JP, LOT_JP, 1_000, "Lynas Rare Earths", "PO-JP-2")
    monkeypatch.setattr(owner_scope.Committer, "commit", honest)
    with pytest.raises(VerificationFailed, match=f"owner {JP}") as ei:
        verify_database(led.engine, trusted_log_key=_trust(led), keyring=keyring(led))
    assert ei.value.seq == seq


def test_owner_balances_from_the_scoped_bundle_equal_the_servers(history: Any) -> None:
    led, _, out, key_file = history
    rep = _verify(led, out, key_file)
    with led.engine.connect() as conn:
        server = owner_balances(read_table(conn, "balances"), JP)
    assert {k: v.quantity for k, v in rep.balances.items()} == {k: v.quantity for k, v in server.items()}
    assert rep.balances[(SITE_JP1, LOT_JP)].quantity == 50_000_000 - 5_000_000 - 1_000_000
    assert rep.balances[(SITE_JP2, LOT_JP)].quantity == 5_000_000


def test_rotation_keeps_old_leaves_verifiable_and_needs_every_epoch(
    sqlite_ledger: Ledger, tmp_path: Path
) -> None:
    led = sqlite_ledger
    build(led)
    before = key_file(led, JP)
    assert owner_scope.rotate(led.engine, JP, keyring=keyring(led)) == 2
    _receipt(led, "olga", SITE_JP1, JP, LOT_JP, 2_000, "Lynas Rare Earths", "PO-JP-3")
    out = tmp_path / "jp"
    export_owner_bundle(led.engine, JP, out, keyring=keyring(led))
    after = key_file(led, JP)
    assert len(scope.read_key_file(after)[2]) == 2
    rep = _verify(led, out, after)
    assert rep.balances[(SITE_JP1, LOT_JP)].quantity == 44_002_000
    # The old key file alone cannot read the new epoch's tags: JP's new receipt then
    # looks as if its commitment left JP out, and verification says so.
    with pytest.raises(VerificationFailed, match="owner commitment"):
        _verify(led, out, before)
    verify_database(led.engine, trusted_log_key=_trust(led), keyring=keyring(led))


def test_scoped_bundle_refuses_the_wrong_owner_or_key_file(history: Any) -> None:
    led, _, out, key_file = history
    with pytest.raises(ConfigError, match="not owner"):
        verify_owner_bundle(out, owner=FR, key_file=key_file, trusted_log_key=_trust(led))
    with pytest.raises(ConfigError, match="key file"):
        _verify(led, out, "{}")
    with pytest.raises(ConfigError, match="scoped to owner"):
        list(Bundle(out).rows())


def test_commitments_are_append_only(history_any: Any) -> None:
    led, _, _, _ = history_any
    with pytest.raises(Exception, match="append-only"), led.engine.begin() as conn:
        conn.execute(owner_commitments.delete())


def test_commitment_format() -> None:
    secrets = [bytes([i]) * 32 for i in range(6)]
    c = scope.make_commitment(secrets[:5], log_id="L", seq=7)
    assert len(c) == scope.SALT_LEN + 8 * scope.TAG_LEN  # 5 owners: 8 slots
    assert len(scope.make_commitment([], log_id="L", seq=7)) == scope.SALT_LEN + 4 * scope.TAG_LEN
    assert scope.names(c, [secrets[0]], log_id="L", seq=7)
    assert not scope.names(c, [secrets[5]], log_id="L", seq=7)
    assert not scope.names(c, [secrets[0]], log_id="L", seq=8)  # bound to the seq
    with pytest.raises(scope.CommitmentMalformed):
        scope.parse_commitment(c[:-1])
    # v2 leaf hashes never equal a v1 hash of the same line, nor another commitment's.
    line = b'{"entry":{}}'
    assert scope.leaf_hash_v2(c, scope.rest_hash(line)) != hashlib.sha256(b"\x00" + line).digest()
    assert repr(scope.OwnerSecret("JP", 1, secrets[0])).count("01") == 0


def test_a_v1_leaf_after_the_first_v2_leaf_is_refused(history: Any, tmp_path: Path) -> None:
    """The ratchet: stripping a leaf's commitment (claiming it was written before the
    switch) is refused at that seq, in a full bundle as in a scoped one."""
    led, seqs, out, key_file = history
    full = tmp_path / "full"
    export_bundle(led.engine, full)
    seq = seqs["fr_receipt"]
    for d in (full, out):
        rows = [x for x in (d / COMMITMENTS).read_text().splitlines() if json.loads(x)["seq"] != seq]
        (d / COMMITMENTS).write_text("".join(r + "\n" for r in rows))
    with pytest.raises(VerificationFailed, match="v1 leaf") as ei:
        verify_history(Bundle(full).rows(), Bundle(full).checkpoints(), trusted_log_key=_trust(led))
    assert ei.value.seq == seq
    _reseal(out)
    with pytest.raises(VerificationFailed, match="v1 leaf") as ei:
        _verify(led, out, key_file)
    assert ei.value.seq == seq


# -- owners' secrets stored sealed (migration 0015) -------------------------------------


def _secrets_of(led: Ledger) -> list[bytes]:
    return [
        e.secret for o in (JP, FR, RO) for e in scope.read_key_file(key_file(led, o))[2]
    ]


def _leaks(blob: bytes, secret: bytes) -> bool:
    import base64

    return any(v in blob for v in (secret, secret.hex().encode(), base64.b64encode(secret)))


def test_secrets_are_sealed_and_a_backup_restores_them(history: Any, tmp_path: Path) -> None:
    """Neither the database nor a backup holds an owner's secret in the clear; restored
    with the same keystore, the log goes on writing and proving owner commitments."""
    from ledger.store.backup import restore, write_backup
    from ledger.store.db import make_engine

    led, _, _, before_key = history
    secrets_ = _secrets_of(led)
    with led.engine.connect() as conn:
        rows = conn.execute(select(owner_keys)).all()
    assert rows and all(r.secret is None and r.nonce and r.sealed for r in rows)
    file = tmp_path / "ledger.backup"
    info = write_backup(led.engine, file)
    blob = file.read_bytes()
    assert not any(_leaks(blob, s) for s in secrets_)

    target = make_engine(f"sqlite:///{tmp_path / 'restored.db'}")
    restore(target, file, trusted_log_key=_trust(led), checkpoint=info.checkpoint)
    again = Ledger(target, led.keystore, led.sealer)
    assert key_file(again, JP) == before_key  # opened with the same sealing key
    seq = _receipt(again, "olga", SITE_JP1, JP, LOT_JP, 1_000, "Lynas Rare Earths", "PO-JP-R")
    out = tmp_path / "jp-restored"
    export_owner_bundle(target, JP, out, keyring=keyring(again))
    rep = verify_owner_bundle(out, owner=JP, key_file=key_file(again, JP), trusted_log_key=_trust(led))
    assert rep.size == seq + 1
    verify_database(target, trusted_log_key=_trust(led), keyring=keyring(again))

    # Another keystore's sealing key does not open them, and says so without detail.
    stranger = Ledger(target, led.keystore, AesGcmSealer.generate())
    with pytest.raises(KeystoreError) as ei:
        key_file(stranger, JP)
    assert not any(_leaks(str(ei.value).encode(), s) for s in secrets_)


def test_a_sealed_secret_moved_to_another_owner_does_not_open(history: Any) -> None:
    led = history[0]
    kr = keyring(led)
    with led.engine.connect() as conn:
        jp = conn.execute(select(owner_keys).where(owner_keys.c.owner == JP)).one()
    fresh = owner_scope.OwnerKeyring(led.sealer)  # no cache: really opens
    with pytest.raises(KeystoreError):
        fresh.open(FR, 1, bytes(jp.nonce), bytes(jp.sealed))
    assert fresh.open(JP, 1, bytes(jp.nonce), bytes(jp.sealed)) == kr.open(JP, 1, bytes(jp.nonce), bytes(jp.sealed))
    assert "secret" not in repr(kr) and jp.nonce.hex() not in repr(kr)


def test_cleartext_rows_from_before_0015_are_sealed_in_place(ledger: Ledger) -> None:
    """A log that enabled owner scope before migration 0015 kept its secrets in the clear:
    they still work, ``seal_cleartext`` seals them, and the triggers allow that update only."""
    from alembic import command
    from sqlalchemy import delete, insert, update

    from ledger.store.db import _alembic_config

    led = ledger  # SQLite and PostgreSQL: each has its own triggers
    cfg = _alembic_config()
    with led.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
        # What 0013's write path stored: the secret in the clear.
        conn.execute(insert(owner_scope_table).values(id=1, from_seq=1))
        conn.execute(
            insert(owner_keys).from_select(
                ["owner", "epoch", "secret", "from_seq"],
                select(sa_literal(JP), sa_literal(1), sa_literal(b"\x07" * 32), sa_literal(1)),
            )
        )
    with led.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    led.act("admin", "owner.registered", code=JP, name="JOGMEC national reserve", country="JP")
    kr = keyring(led)
    with led.engine.connect() as conn:
        assert owner_scope.read_secrets(conn, keyring=None)[JP][0].secret == b"\x07" * 32
    with pytest.raises(Exception, match="append-only"), led.engine.begin() as conn:
        conn.execute(update(owner_keys).values(from_seq=5))
    assert owner_scope.seal_cleartext(led.engine, keyring=kr) == 1
    with led.engine.connect() as conn:
        row = conn.execute(select(owner_keys)).one()
        assert row.secret is None and row.sealed
        assert owner_scope.read_secrets(conn, keyring=owner_scope.OwnerKeyring(led.sealer))[JP][0].secret == b"\x07" * 32  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="sealed"):
            owner_scope.read_secrets(conn, keyring=None)
    assert owner_scope.seal_cleartext(led.engine, keyring=kr) == 0
    for stmt in (update(owner_keys).values(secret=b"\x07" * 32, sealed=None, nonce=None), delete(owner_keys)):
        with pytest.raises(Exception, match="append-only"), led.engine.begin() as conn:
            conn.execute(stmt)
    verify_database(led.engine, trusted_log_key=_trust(led), keyring=kr)


def test_an_owner_sharing_a_site_gets_a_bundle_that_verifies(history: Any, tmp_path: Path) -> None:
    """FR's stock sits in RO's bunker, whose registration names RO too: FR's bundle gives
    RO's registration as support (the replay refuses a site of an unknown owner) and still
    nothing of JP's, and nothing of RO's stock."""
    led = history[0]
    out = tmp_path / "fr"
    export_owner_bundle(led.engine, FR, out, keyring=keyring(led))
    rep = verify_owner_bundle(out, owner=FR, key_file=key_file(led, FR), trusted_log_key=_trust(led))
    assert rep.balances[(SITE_RO, LOT_FR)].quantity == 8_000_000
    blob = b"".join(p.read_bytes() for p in out.iterdir())
    # (JP's code is there: JP's official signed a price observation, which every owner
    # receives, so that key's registration, scoped to JP, is support. JP's lots, orders
    # and references are not.)
    assert not any(s.encode() in blob for s in (LOT_JP, LOT_RO, "PO-RO-0042", "PO-JP-1", "Shin-Etsu Chemical"))
