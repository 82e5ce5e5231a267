"""Edge validation of submitted entries: typed errors that name the field."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from keys import Ed25519Signer
from ledger.entries import MAX_LEAF_BYTES, parse_submission, sign_body
from ledger.errors import InvalidEntry, SignatureInvalid
from ledger.service import new_body

SIGNER = Ed25519Signer.generate()
LOG = "test.local/ledger"


def submission(**overrides: Any) -> dict[str, Any]:
    body = new_body("test.movement", "olga", account="ACC-1", delta=5)
    body.update(overrides)
    return sign_body(body, [SIGNER], log_id=LOG)


def test_valid_submission_parses() -> None:
    signed, raw = parse_submission(submission(), log_id=LOG)
    assert signed.entry.author == "olga"
    assert raw["delta"] == 5


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"colour": "red"}, "entry"),  # unknown field
        ({"delta": "5"}, "entry.delta"),  # wrong type
        ({"delta": 5.0}, "entry.delta"),  # floats are never quantities
        ({"delta": 2**53}, "entry.delta"),  # beyond exact integers
        ({"account": "acc lower"}, "entry.account"),
        ({"created_at": "2026-01-01 00:00:00"}, "entry.created_at"),
        ({"id": "not-hex"}, "entry.id"),
        ({"kind": "stock.teleport"}, "entry.kind"),
    ],
)
def test_bad_fields_are_named(override: dict[str, Any], field: str) -> None:
    sub = submission()
    sub["entry"].update(override)  # schema errors are reported before signatures
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sub, log_id=LOG)
    assert exc.value.field == field


def test_missing_field_is_refused() -> None:
    sub = submission()
    del sub["entry"]["delta"]
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sub, log_id=LOG)
    assert "delta" in exc.value.public_message


def test_oversize_entry_is_refused() -> None:
    raw = b'{"entry":' + b" " * MAX_LEAF_BYTES + b"}"
    with pytest.raises(InvalidEntry, match="larger than"):
        parse_submission(raw, log_id=LOG)


def test_oversize_text_field_is_refused() -> None:
    body = new_body("key.revoked", "admin", key_id="a" * 64, reason="x" * 5000)
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sign_body(body, [SIGNER], log_id=LOG), log_id=LOG)
    assert exc.value.field == "entry.reason"


def test_changed_body_breaks_signature() -> None:
    sub = submission()
    sub["entry"]["delta"] = 6
    with pytest.raises(SignatureInvalid) as exc:
        parse_submission(sub, log_id=LOG)
    assert exc.value.field == "sigs[0]"


def test_signature_from_other_key_fails() -> None:
    sub = submission()
    other = sign_body(copy.deepcopy(sub["entry"]), [Ed25519Signer.generate()], log_id=LOG)
    sub["sigs"][0]["sig"] = other["sigs"][0]["sig"]
    with pytest.raises(SignatureInvalid):
        parse_submission(sub, log_id=LOG)


def test_same_key_twice_is_refused() -> None:
    sub = submission()
    sub["sigs"].append(dict(sub["sigs"][0]))
    with pytest.raises(SignatureInvalid, match="twice"):
        parse_submission(sub, log_id=LOG)


def test_signature_must_be_base64_of_64_bytes() -> None:
    sub = submission()
    sub["sigs"][0]["sig"] = base64.b64encode(b"\0" * 63).decode()
    with pytest.raises(InvalidEntry) as exc:
        parse_submission(sub, log_id=LOG)
    assert exc.value.field == "sigs[0].sig"


def test_signature_is_domain_separated() -> None:
    # A signature over the bare canonical body (no domain prefix) must not verify.
    from ledger.canonical import canonical

    sub = submission()
    sub["sigs"][0]["sig"] = base64.b64encode(SIGNER.sign(canonical(sub["entry"]))).decode()
    with pytest.raises(SignatureInvalid):
        parse_submission(sub, log_id=LOG)


def test_not_json_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="not valid JSON"):
        parse_submission(b"{nope", log_id=LOG)


def test_a_signature_with_nonzero_padding_bits_is_refused() -> None:
    """Issue #8, item 10: the last base64 digit before "==" carries 4 padding bits; a
    flipped one decodes to the same signature but is another leaf. Strict decoding only."""
    sub = submission()
    sig = sub["sigs"][0]["sig"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(sig[85])
    assert last % 16 == 0  # canonical: padding bits zero
    sub["sigs"][0]["sig"] = sig[:85] + alphabet[last | 1] + "=="
    assert base64.b64decode(sub["sigs"][0]["sig"]) == base64.b64decode(sig)
    with pytest.raises(SignatureInvalid) as exc:
        parse_submission(sub, log_id=LOG)
    assert exc.value.field == "sigs[0]"
