"""Free text in signed entries refuses what lies on screen (issue #8, item 4)."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from keys import Ed25519Signer
from ledger.entries import parse_submission, sign_body
from ledger.errors import InvalidEntry
from ledger.service import new_body
from ledger.text import TextRefused, check

SIGNER = Ed25519Signer.generate()
LIARS = [
    "\x00",  # NUL: PostgreSQL refuses it, C code truncates at it
    "\n",
    "\x7f",
    "\x85",  # C1 next line
    "\u202e",  # right-to-left override: "Evil\u202etxt.exe" shows as "Evilexe.txt"
    "\u202a",
    "\u2066",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",  # zero-width space
    "\u200d",
    "\u2060",
    "\ufeff",
]


def signed(kind: str, **fields: Any) -> dict[str, Any]:
    body = new_body(kind, "admin", **fields)
    return sign_body(body, [SIGNER])


@pytest.mark.parametrize("bad", LIARS)
def test_owner_name_refuses_control_bidi_and_invisible(bad: str) -> None:
    sub = signed("owner.registered", code="JP-RESERVE", name="x", country="JP")
    sub["entry"]["name"] = f"Evil{bad}txt.exe"  # schema errors come before signatures
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sub)
    assert exc.value.field == "entry.name"
    assert bad not in exc.value.public_message  # the message names the code point only


def test_non_nfc_is_refused_in_a_signed_body_not_rewritten() -> None:
    decomposed = "Mu\u0308ller"  # u + combining diaeresis
    assert not unicodedata.is_normalized("NFC", decomposed)
    body = {**new_body("owner.registered", "admin", code="DE-RESERVE", country="DE"), "name": decomposed}
    sub = sign_body(body, [SIGNER])  # validly signed over the decomposed bytes
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sub)
    assert exc.value.field == "entry.name"
    assert "NFC" in exc.value.public_message


def test_clients_normalise_before_signing() -> None:
    body = new_body("owner.registered", "admin", code="DE-RESERVE", name="Mu\u0308ller", country="DE")
    assert body["name"] == "M\u00fcller"
    parse_submission(sign_body(body, [SIGNER]))


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("key.revoked", {"key_id": "ab" * 32, "reason": "lost\u202e"}, "entry.reason"),
        (
            "release.requested",
            {
                "owner": "JP",
                "material": "NDPR",
                "quantity": 5,
                "recipient": "ACME",
                "regime": "emergency_release",
                "purpose": "p\x00",
            },
            "entry.purpose",
        ),
        (
            "release.requested",
            {
                "owner": "JP",
                "material": "NDPR",
                "quantity": 5,
                "recipient": "ACME",
                "regime": "emergency_release",
                "purpose": "p",
                "evidence": {"type": "override", "reason": "war\u200b"},
            },
            "entry.evidence.reason",
        ),
        (
            "stock.reversal",
            {"site": "S", "reverses": "ab" * 16, "occurred_at": "2026-01-01T00:00:00Z", "reason": "x\u2066"},
            "entry.reason",
        ),
    ],
)
def test_every_free_text_field_is_checked(kind: str, fields: dict[str, Any], field: str) -> None:
    sub = signed(kind, **fields)
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sub)
    assert exc.value.field == field


def test_ordinary_international_text_passes() -> None:
    for text in ("Shin-Etsu Chemical", "Umicore S.A.", "住友金属鉱山", "Ακρόπολη", "Lynas (Malaysia) — ok", "مرحبا"):
        check(text)
    with pytest.raises(TextRefused):
        check("a\ud800")


def test_history_signed_before_the_rule_still_decodes() -> None:
    """The rule binds submissions; a leaf already in a log (SQLite accepted such text)
    still decodes, so the verifier does not retroactively reject signed history."""
    from ledger.entries import decode_leaf, make_leaf

    body = {**new_body("owner.registered", "admin", code="JP-RESERVE", country="JP"), "name": "Evil\u202etxt"}
    sub = sign_body(body, [SIGNER])
    line = make_leaf(seq=3, prev_hash="0" * 64, recorded_at="2026-01-01T00:00:00Z", body=body, sigs=sub["sigs"])
    leaf, _ = decode_leaf(line)
    assert leaf.entry.name == "Evil\u202etxt"  # type: ignore[union-attr]
    with pytest.raises(InvalidEntry):
        parse_submission(sub)
