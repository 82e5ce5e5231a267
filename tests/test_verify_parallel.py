"""With ``jobs > 1`` the main process decodes each bundle line typed only and relies on
the workers for canonical form, schema and signatures (issue #10 performance). Every
forgery must still be refused at the same seq with the same message as with one job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.bundle import ENTRIES, Bundle
from ledger.canonical import canonical, parse_json
from ledger.entries import leaf_body_bytes
from ledger.errors import InvalidEntry, VerificationFailed
from ledger.service import Ledger
from ledger.store.audit import export_bundle
from ledger.verify import verify_history
from tests.tamper_helpers import FIRST_MOVE, build_history, flip_sig_byte, log_public_key

K = FIRST_MOVE + 3


def _non_canonical(lines: list[bytes]) -> None:
    lines[K] = lines[K].replace(b'{"entry":', b'{ "entry":', 1)


def _key_order(lines: list[bytes]) -> None:
    leaf = parse_json(lines[K])
    body = leaf.pop("entry")
    # same members, "entry" last: valid JSON, typed-decodable, not canonical
    lines[K] = canonical(leaf)[:-1] + b',"entry":' + canonical(body) + b"}"


def _unknown_field(lines: list[bytes]) -> None:
    leaf = parse_json(lines[K])
    leaf["entry"]["note"] = "x"
    lines[K] = canonical(leaf)


def _quantity(lines: list[bytes]) -> None:
    leaf = parse_json(lines[K])
    leaf["entry"]["delta"] = 700
    lines[K] = canonical(leaf)


def _signature(lines: list[bytes]) -> None:
    leaf = parse_json(lines[K])
    leaf["sigs"][0]["sig"] = flip_sig_byte(leaf["sigs"][0]["sig"])
    lines[K] = canonical(leaf)


def _duplicate_key(lines: list[bytes]) -> None:
    lines[K] = lines[K].replace(b'"prev_hash":', b'"seq":0,"prev_hash":', 1)


def _float(lines: list[bytes]) -> None:
    lines[K] = lines[K].replace(b'"delta":7', b'"delta":7.0', 1)
    assert b"7.0" in lines[K]


def _big_int(lines: list[bytes]) -> None:
    lines[K] = lines[K].replace(b'"delta":7', b'"delta":1152921504606846976', 1)


CASES: dict[str, Callable[[list[bytes]], None]] = {
    "non-canonical": _non_canonical,
    "key-order": _key_order,
    "unknown-field": _unknown_field,
    "quantity": _quantity,
    "signature": _signature,
    "duplicate-key": _duplicate_key,
    "float": _float,  # the schema, checked before the canonical form, refuses both
    "big-int": _big_int,
}


@pytest.fixture
def bundle(sqlite_ledger: Ledger, tmp_path: Path) -> tuple[Path, bytes]:
    build_history(sqlite_ledger)
    out = tmp_path / "b"
    export_bundle(sqlite_ledger.engine, out)
    return out, log_public_key(sqlite_ledger)


def _refusal(path: Path, key: bytes, jobs: int) -> tuple[int | None, str]:
    b = Bundle(path)
    with pytest.raises(VerificationFailed) as ei:
        verify_history(b.rows(), b.checkpoints(), trusted_log_key=key, jobs=jobs, progress=False)
    return ei.value.seq, ei.value.public_message


@pytest.mark.parametrize("case", sorted(CASES))
def test_parallel_refuses_like_one_job(bundle: tuple[Path, bytes], case: str) -> None:
    path, key = bundle
    lines = (path / ENTRIES).read_bytes().splitlines()
    CASES[case](lines)
    (path / ENTRIES).write_bytes(b"".join(line + b"\n" for line in lines))
    one = _refusal(path, key, 1)
    assert one[0] == K, one
    assert _refusal(path, key, 2) == one


def test_body_slice_equals_the_canonical_body(bundle: tuple[Path, bytes]) -> None:
    path, _key = bundle
    for line in (path / ENTRIES).read_bytes().splitlines():
        assert leaf_body_bytes(line) == canonical(parse_json(line)["entry"])


@pytest.mark.parametrize("line", [b'{"seq":0}', b'{"entry":{}}', b"[]"])
def test_body_slice_refuses_a_line_without_the_leaf_shape(line: bytes) -> None:
    with pytest.raises(InvalidEntry):
        leaf_body_bytes(line)
