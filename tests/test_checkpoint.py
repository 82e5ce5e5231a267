"""ledger/checkpoint.py: C2SP tlog-checkpoint signed notes."""

from __future__ import annotations

import ast
import base64
import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import Ed25519Signer
from ledger.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    checkpoint_body,
    is_valid_note_name,
    note_key_hash,
    note_signature_line,
    note_verifier_key,
    open_note,
    parse_checkpoint,
    parse_checkpoint_body,
    parse_note_verifier_key,
    sign_checkpoint,
    split_note,
    verify_checkpoint,
)
from ledger.crypto import verify_signature
from ledger.errors import InvalidEntry, SignatureInvalid

EM = "\u2014"

# ---------------------------------------------------------------------------------------
# Known answers from golang.org/x/mod/sumdb/note (note_test.go: TestSign, TestOpen, ...).

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    f"{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    f"{EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
)


def _go_signer() -> Ed25519Signer:
    prefix_private, prefix_key, name, hash_hex, material = GO_SKEY.split("+", 4)
    assert (prefix_private, prefix_key, name, hash_hex) == (
        "PRIVATE",
        "KEY",
        "PeterNeumann",
        "c74f20a3",
    )
    raw = base64.b64decode(material)
    assert raw[0] == 0x01 and len(raw) == 33
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(raw[1:]))


def _vkey_public(vkey: str) -> bytes:
    return base64.b64decode(vkey.split("+", 2)[2])[1:]


PETER_PUB = _vkey_public(GO_VKEY)
ENOCH_PUB = _vkey_public(GO_ENOCH_VKEY)


def _independent_key_hash(name: str, public_key: bytes) -> bytes:
    # The recommendation of c2sp.org/signed-note, written out separately from the module.
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public_key).digest()[:4]


def test_go_key_hashes_and_verifier_keys() -> None:
    assert note_key_hash(key_name="PeterNeumann", public_key=PETER_PUB) == bytes.fromhex("c74f20a3")
    assert note_key_hash(key_name="EnochRoot", public_key=ENOCH_PUB) == bytes.fromhex("af0cfe78")
    assert _independent_key_hash("PeterNeumann", PETER_PUB).hex() == "c74f20a3"
    assert note_verifier_key(key_name="PeterNeumann", public_key=PETER_PUB) == GO_VKEY
    assert note_verifier_key(key_name="EnochRoot", public_key=ENOCH_PUB) == GO_ENOCH_VKEY
    assert parse_note_verifier_key(GO_VKEY) == ("PeterNeumann", PETER_PUB)
    assert parse_note_verifier_key(GO_ENOCH_VKEY) == ("EnochRoot", ENOCH_PUB)
    assert _go_signer().public_key == PETER_PUB


def test_go_sign_reproduced_byte_for_byte() -> None:
    line = note_signature_line(GO_TEXT.encode(), signer=_go_signer(), key_name="PeterNeumann")
    assert line == GO_PETER_SIG
    want = GO_TEXT + "\n" + GO_PETER_SIG  # TestSign's `want`
    assert GO_TEXT + "\n" + line == want


def test_go_open() -> None:
    note = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert open_note(note, public_key=PETER_PUB, key_name="PeterNeumann") == GO_TEXT
    assert open_note(note, public_key=ENOCH_PUB, key_name="EnochRoot") == GO_TEXT
    text, sigs = split_note(note)
    assert text == GO_TEXT
    assert [(s.key_name, s.key_hash.hex()) for s in sigs] == [
        ("PeterNeumann", "c74f20a3"),
        ("EnochRoot", "af0cfe78"),
    ]
    # Neither key known: no verifiable signature.
    with pytest.raises(SignatureInvalid, match="no signature"):
        open_note(note, public_key=Ed25519Signer.generate().public_key, key_name="PeterNeumann")
    # Name known with the wrong key, or key known under the wrong name: ignored, so none.
    with pytest.raises(SignatureInvalid):
        open_note(note, public_key=ENOCH_PUB, key_name="PeterNeumann")
    with pytest.raises(SignatureInvalid):
        open_note(note, public_key=PETER_PUB, key_name="EnochRoot")
    # Repeated signatures are fine.
    repeated = GO_TEXT + "\n" + GO_PETER_SIG + GO_PETER_SIG + GO_ENOCH_SIG + GO_ENOCH_SIG
    assert open_note(repeated, public_key=PETER_PUB, key_name="PeterNeumann") == GO_TEXT


def _insert_abcd(sig_line: str) -> str:
    b = sig_line.encode()
    return (b[:60] + b"ABCD" + b[60:]).decode()


def test_go_open_invalid_signature() -> None:
    bad = GO_TEXT + "\n" + _insert_abcd(GO_PETER_SIG)
    with pytest.raises(SignatureInvalid, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(bad, public_key=PETER_PUB, key_name="PeterNeumann")
    # A broken cosigner line does not matter to the log key's verification.
    ok = GO_TEXT + "\n" + GO_PETER_SIG + _insert_abcd(GO_ENOCH_SIG)
    assert open_note(ok, public_key=PETER_PUB, key_name="PeterNeumann") == GO_TEXT


def test_go_open_mismatched_name_or_hash() -> None:
    misnamed = GO_PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    wrong_hash = GO_PETER_SIG.replace("x08g", "xxxx")
    for sig in (misnamed, wrong_hash):
        with pytest.raises(SignatureInvalid):
            open_note(GO_TEXT + "\n" + sig, public_key=PETER_PUB, key_name="PeterNeumann")


GO_BAD_MSGS = [
    GO_TEXT,
    GO_TEXT + "\n",
    GO_TEXT + "\n" + GO_PETER_SIG[:-1],
    "\x01" + GO_TEXT + "\n" + GO_PETER_SIG,
    "\udcff" + GO_TEXT + "\n" + GO_PETER_SIG,  # Go's "\xff": not valid UTF-8
    GO_TEXT + "\n" + f"{EM} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n",
]


@pytest.mark.parametrize("msg", GO_BAD_MSGS)
def test_go_malformed_notes(msg: str) -> None:
    with pytest.raises(InvalidEntry):
        open_note(msg, public_key=PETER_PUB, key_name="PeterNeumann")


def test_go_signature_count_limit() -> None:
    ok = GO_TEXT + "\n" + GO_PETER_SIG * MAX_SIGNATURES
    assert open_note(ok, public_key=PETER_PUB, key_name="PeterNeumann") == GO_TEXT
    with pytest.raises(InvalidEntry):
        open_note(ok + GO_PETER_SIG, public_key=PETER_PUB, key_name="PeterNeumann")


def test_go_verifier_key_manglings_refused() -> None:
    # As Go's TestNewVerifier: every proper substring and every one-byte change fails.
    b = GO_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if i != 0 or j != len(b):
                with pytest.raises(InvalidEntry):
                    parse_note_verifier_key(b[i:j])
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        with pytest.raises(InvalidEntry):
            parse_note_verifier_key(mangled)
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(InvalidEntry):
            parse_note_verifier_key(bad)


def test_c2sp_example_without_time_line_is_refused() -> None:
    # The example of c2sp.org/tlog-checkpoint: well-formed, but ours always carry `time`.
    example = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        f"{EM} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URY"
        "N7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    )
    text, sigs = split_note(example)
    assert [s.key_name for s in sigs] == ["example.com/behind-the-sofa"]
    with pytest.raises(InvalidEntry, match="time"):
        parse_checkpoint(example)
    cp = parse_checkpoint_body(text + "time 2024-03-01T00:00:00Z\n")
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


# ---------------------------------------------------------------------------------------
# Our checkpoints

ORIGIN = "reserve.example/ledger/" + "ab" * 16
ROOT = hashlib.sha256(b"root").digest()
TIME = "2025-01-31T12:00:00Z"


@pytest.fixture(scope="module")
def log_signer() -> Ed25519Signer:
    return Ed25519Signer.generate()


@pytest.fixture
def cp() -> Checkpoint:
    return Checkpoint(origin=ORIGIN, size=1234, root=ROOT, time=TIME)


@pytest.fixture
def note(cp: Checkpoint, log_signer: Ed25519Signer) -> str:
    return sign_checkpoint(cp, signer=log_signer, key_name=ORIGIN)


def test_body_is_exact(cp: Checkpoint) -> None:
    root64 = base64.b64encode(ROOT).decode()
    assert checkpoint_body(cp) == f"{ORIGIN}\n1234\n{root64}\ntime {TIME}\n".encode()


def test_sign_layout(cp: Checkpoint, note: str, log_signer: Ed25519Signer) -> None:
    body = checkpoint_body(cp).decode()
    assert note.startswith(body + "\n" + f"{EM} {ORIGIN} ")
    assert note.endswith("\n") and note.count("\n") == 6
    payload = base64.b64decode(note.rstrip("\n").rsplit(" ", 1)[1], validate=True)
    assert payload[:4] == _independent_key_hash(ORIGIN, log_signer.public_key)
    verify_signature(
        public_key=log_signer.public_key, signature=payload[4:], message=checkpoint_body(cp)
    )


def test_round_trip(cp: Checkpoint, note: str, log_signer: Ed25519Signer) -> None:
    assert parse_checkpoint(note) == cp
    assert verify_checkpoint(note, public_key=log_signer.public_key, key_name=ORIGIN) == cp


name_chars = st.characters(
    blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+"
)
origins = st.text(name_chars, min_size=1, max_size=40).filter(is_valid_note_name)


@settings(max_examples=60, deadline=None)
@given(
    origin=origins,
    size=st.integers(min_value=0, max_value=2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    time=st.datetimes().map(lambda d: f"{d.year:04d}-{d:%m-%dT%H:%M:%S}Z"),
    frac=st.one_of(st.none(), st.from_regex(r"\.[0-9]{1,6}", fullmatch=True)),
    key_name=origins,
)
def test_round_trip_property(
    origin: str, size: int, root: bytes, time: str, frac: str | None, key_name: str
) -> None:
    signer = _go_signer()
    if frac is not None:
        time = time[:-1] + frac + "Z"
    cp = Checkpoint(origin=origin, size=size, root=root, time=time)
    note = sign_checkpoint(cp, signer=signer, key_name=key_name)
    assert parse_checkpoint(note) == cp
    assert verify_checkpoint(note, public_key=signer.public_key, key_name=key_name) == cp
    assert parse_checkpoint_body(checkpoint_body(cp).decode()) == cp


@settings(max_examples=100)
@given(name=origins, public_key=st.binary(min_size=32, max_size=32))
def test_key_hash_matches_independent_implementation(name: str, public_key: bytes) -> None:
    assert note_key_hash(key_name=name, public_key=public_key) == _independent_key_hash(
        name, public_key
    )
    vkey = note_verifier_key(key_name=name, public_key=public_key)
    assert parse_note_verifier_key(vkey) == (name, public_key)


def _replace_line(note: str, index: int, value: str) -> str:
    lines = note.split("\n")
    lines[index] = value
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, "reserve.example/ledger/other"),
        (1, "1235"),
        (1, "0"),
        (2, base64.b64encode(hashlib.sha256(b"other").digest()).decode()),
        (3, "time 2025-01-31T12:00:01Z"),
    ],
)
def test_tampered_body_refused(
    note: str, log_signer: Ed25519Signer, index: int, value: str
) -> None:
    tampered = _replace_line(note, index, value)
    parse_checkpoint(tampered)  # still well-formed...
    with pytest.raises(SignatureInvalid):  # ...but not signed
        verify_checkpoint(tampered, public_key=log_signer.public_key, key_name=ORIGIN)


def test_tampered_signature_refused(note: str, log_signer: Ed25519Signer) -> None:
    head, payload = note.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(payload))
    for pos in (4, 20, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        bad = head + " " + base64.b64encode(bytes(flipped)).decode() + "\n"
        with pytest.raises(SignatureInvalid, match="invalid signature"):
            verify_checkpoint(bad, public_key=log_signer.public_key, key_name=ORIGIN)
    # Changing the key hash makes the line someone else's: then there is no signature.
    raw[0] ^= 0x01
    bad = head + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(SignatureInvalid, match="no signature"):
        verify_checkpoint(bad, public_key=log_signer.public_key, key_name=ORIGIN)


def test_wrong_key_or_name_refused(note: str, log_signer: Ed25519Signer) -> None:
    other = Ed25519Signer.generate()
    with pytest.raises(SignatureInvalid):
        verify_checkpoint(note, public_key=other.public_key, key_name=ORIGIN)
    with pytest.raises(SignatureInvalid):
        verify_checkpoint(note, public_key=log_signer.public_key, key_name="log")
    with pytest.raises(SignatureInvalid):
        verify_checkpoint(note, public_key=b"\x00" * 31, key_name=ORIGIN)


def test_same_name_other_key_impostor_line_refused(
    cp: Checkpoint, log_signer: Ed25519Signer
) -> None:
    impostor = sign_checkpoint(cp, signer=Ed25519Signer.generate(), key_name=ORIGIN)
    with pytest.raises(SignatureInvalid, match="no signature"):
        verify_checkpoint(impostor, public_key=log_signer.public_key, key_name=ORIGIN)


def test_missing_signature_line(cp: Checkpoint, log_signer: Ed25519Signer) -> None:
    body = checkpoint_body(cp).decode()
    for bad in (body, body + "\n"):
        with pytest.raises(InvalidEntry, match="signature"):
            verify_checkpoint(bad, public_key=log_signer.public_key, key_name=ORIGIN)
    # Only a cosigner signed: well-formed, but no signature by the log.
    cosigned_only = sign_checkpoint(
        cp, signer=Ed25519Signer.generate(), key_name="witness.example/w1"
    )
    with pytest.raises(SignatureInvalid, match="no signature"):
        verify_checkpoint(cosigned_only, public_key=log_signer.public_key, key_name=ORIGIN)


def test_cosigner_lines_are_ignored(cp: Checkpoint, note: str, log_signer: Ed25519Signer) -> None:
    body = checkpoint_body(cp)
    witness = Ed25519Signer.generate()
    w_line = note_signature_line(body, signer=witness, key_name="witness.example/w1")
    foreign = f"{EM} other.example/x " + base64.b64encode(b"\x01\x02\x03\x04" + b"z" * 80).decode()
    sig_block = note.split("\n\n", 1)[1]
    both = body.decode() + "\n" + w_line + sig_block + foreign + "\n"
    assert verify_checkpoint(both, public_key=log_signer.public_key, key_name=ORIGIN) == cp
    assert (
        verify_checkpoint(both, public_key=witness.public_key, key_name="witness.example/w1") == cp
    )


def test_second_bad_line_by_log_key_rejects_note(note: str, log_signer: Ed25519Signer) -> None:
    line = note.split("\n\n", 1)[1]
    head, payload = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[-1] ^= 0xFF
    bad = note + head + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(SignatureInvalid):
        verify_checkpoint(bad, public_key=log_signer.public_key, key_name=ORIGIN)


def _sig_block(note: str) -> str:
    return note.split("\n\n", 1)[1]


MALFORMED_BODIES: dict[str, Callable[[str], str]] = {
    "leading zero size": lambda b: _replace_line(b, 1, "01234"),
    "plus size": lambda b: _replace_line(b, 1, "+1234"),
    "spaced size": lambda b: _replace_line(b, 1, " 1234"),
    "underscore size": lambda b: _replace_line(b, 1, "1_234"),
    "unicode digit size": lambda b: _replace_line(b, 1, "\u0661"),
    "negative size": lambda b: _replace_line(b, 1, "-1"),
    "huge size": lambda b: _replace_line(b, 1, str(2**63)),
    "empty origin": lambda b: _replace_line(b, 0, ""),
    "origin with space": lambda b: _replace_line(b, 0, "reserve example"),
    "origin with plus": lambda b: _replace_line(b, 0, "reserve+example"),
    "root not base64": lambda b: _replace_line(b, 2, "not base64!"),
    "root unpadded": lambda b: _replace_line(b, 2, base64.b64encode(ROOT).decode().rstrip("=")),
    "root urlsafe": lambda b: _replace_line(b, 2, base64.urlsafe_b64encode(b"\xfb" * 32).decode()),
    "root short": lambda b: _replace_line(b, 2, base64.b64encode(b"x" * 31).decode()),
    "root non-canonical": lambda b: _replace_line(
        b, 2, base64.b64encode(ROOT).decode()[:42] + "B="
    ),
    "no time": lambda b: b.replace(f"time {TIME}\n", ""),
    "time not utc": lambda b: b.replace(TIME, "2025-01-31T12:00:00+00:00"),
    "time lowercase z": lambda b: b.replace(TIME, "2025-01-31T12:00:00z"),
    "time space": lambda b: b.replace(TIME, "2025-01-31 12:00:00Z"),
    "time bad date": lambda b: b.replace(TIME, "2025-02-30T12:00:00Z"),
    "time bad hour": lambda b: b.replace(TIME, "2025-01-31T24:00:00Z"),
    "time no prefix": lambda b: b.replace(f"time {TIME}", TIME),
    "extra extension": lambda b: b.replace(f"time {TIME}\n", f"time {TIME}\nfoo\n"),
    "empty body line": lambda b: b.replace(f"time {TIME}\n", f"\ntime {TIME}\n"),
    "crlf": lambda b: b.replace("\n", "\r\n"),
    "tab": lambda b: b.replace("1234", "1234\t"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
def test_malformed_checkpoint_refused(
    case: str, cp: Checkpoint, log_signer: Ed25519Signer, note: str
) -> None:
    body = checkpoint_body(cp).decode()
    bad_body = MALFORMED_BODIES[case](body)
    bad = bad_body + "\n" + _sig_block(note)
    with pytest.raises(InvalidEntry):
        parse_checkpoint(bad)
    with pytest.raises(InvalidEntry):
        verify_checkpoint(bad, public_key=log_signer.public_key, key_name=ORIGIN)


MALFORMED_SIG_LINES: dict[str, Callable[[str], str]] = {
    "en dash": lambda s: s.replace(EM, "\u2013"),
    "hyphen": lambda s: s.replace(EM, "-"),
    "no space after dash": lambda s: s.replace(f"{EM} ", EM),
    "double space": lambda s: s.replace(f"{ORIGIN} ", f"{ORIGIN}  "),
    "trailing space": lambda s: s.replace("\n", " \n"),
    "no newline": lambda s: s.rstrip("\n"),
    "unpadded base64": lambda s: s.replace("=\n", "\n"),
    "garbage base64": lambda s: s.rsplit(" ", 1)[0] + " !!!!\n",
    "short signature": lambda s: s.rsplit(" ", 1)[0] + " AAAAAA==\n",
    "empty signature": lambda s: s.rsplit(" ", 1)[0] + " \n",
    "name with plus": lambda s: s.replace(ORIGIN, ORIGIN + "+x"),
    "trailing line": lambda s: s + "Unexpected line.\n",
    "trailing blank": lambda s: s + "\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_SIG_LINES))
def test_malformed_signature_lines_refused(case: str, note: str, log_signer: Ed25519Signer) -> None:
    body, block = note.split("\n\n", 1)
    bad = body + "\n\n" + MALFORMED_SIG_LINES[case](block)
    with pytest.raises(InvalidEntry):
        verify_checkpoint(bad, public_key=log_signer.public_key, key_name=ORIGIN)


def test_oversize_note_refused(note: str, log_signer: Ed25519Signer) -> None:
    with pytest.raises(InvalidEntry):
        verify_checkpoint("x" * (1 << 20) + note, public_key=log_signer.public_key, key_name=ORIGIN)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "has space"},
        {"origin": "has+plus"},
        {"origin": "new\nline"},
        {"size": -1},
        {"size": 2**63},
        {"size": True},
        {"size": 1.0},
        {"root": b"\x00" * 31},
        {"root": bytearray(32)},
        {"root": "00" * 32},
        {"time": "2025-01-31T12:00:00"},
        {"time": "2025-01-31T12:00:00.Z"},
        {"time": "2025-01-31T12:00:00.1234567Z"},
        {"time": "2025-01-31T12:00:00Z\n"},
        {"time": "\u0662025-01-31T12:00:00Z"},
    ],
)
def test_checkpoint_validates_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"origin": ORIGIN, "size": 1, "root": ROOT, "time": TIME}
    fields.update(kwargs)
    with pytest.raises(InvalidEntry):
        Checkpoint(**fields)  # type: ignore[arg-type]


def test_checkpoint_accepts_fractional_seconds_and_empty_tree() -> None:
    cp = Checkpoint(origin=ORIGIN, size=0, root=ROOT, time="2025-01-31T12:00:00.123456Z")
    assert checkpoint_body(cp).split(b"\n")[1] == b"0"


def test_sign_refuses_bad_key_name(cp: Checkpoint, log_signer: Ed25519Signer) -> None:
    for name in ("", "a b", "a+b"):
        with pytest.raises(InvalidEntry):
            sign_checkpoint(cp, signer=log_signer, key_name=name)


class _FaultySigner:
    """A signer whose output is wrong (an HSM fault, a glitch)."""

    def __init__(self, inner: Ed25519Signer, mode: str) -> None:
        self.inner = inner
        self.mode = mode

    @property
    def public_key(self) -> bytes:
        return self.inner.public_key

    @property
    def key_id(self) -> str:
        return self.inner.key_id

    def sign(self, message: bytes) -> bytes:
        sig = self.inner.sign(message)
        if self.mode == "short":
            return sig[:63]
        return sig[:-1] + bytes([sig[-1] ^ 1])


@pytest.mark.parametrize("mode", ["short", "flipped"])
def test_sign_checks_its_own_signature(
    cp: Checkpoint, log_signer: Ed25519Signer, mode: str
) -> None:
    with pytest.raises(SignatureInvalid):
        sign_checkpoint(cp, signer=_FaultySigner(log_signer, mode), key_name=ORIGIN)


# ---------------------------------------------------------------------------------------
# The offline verifier imports this module: standard library and ledger only.


def test_imports_only_stdlib_and_ledger() -> None:
    source = Path(__file__).resolve().parents[1] / "ledger" / "checkpoint.py"
    tree = ast.parse(source.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"__future__", "ledger"}
    assert roots <= allowed, roots - allowed


def test_usable_without_keys_or_cryptography(note: str, log_signer: Ed25519Signer) -> None:
    code = (
        "import sys\n"
        "sys.modules['cryptography'] = None\n"
        "sys.modules['keys'] = None\n"
        "from ledger.checkpoint import verify_checkpoint\n"
        f"cp = verify_checkpoint({note!r}, public_key={log_signer.public_key!r},"
        f" key_name={ORIGIN!r})\n"
        "print(cp.size)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1234"
