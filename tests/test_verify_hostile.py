"""The verifier blames the right party (issue #8, items 6 and 10): a bad held checkpoint
is reported as such, not as a rewritten or rolled-back log; ``recorded_at`` is compared
as a time, not as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import HeldCheckpointInvalid, VerificationFailed
from ledger.service import Ledger
from ledger.store.audit import verify_database
from tests.conftest import make_ledger
from tests.tamper_helpers import (
    build_history,
    checkpoint_row,
    log_public_key,
    other_root,
    read_leaf,
    replace_note_root,
    tampering,
    write_leaf,
)

K = 5


@pytest.fixture
def led(sqlite_url: str, tmp_path: Path) -> Ledger:
    led = make_ledger(sqlite_url, tmp_path / "keys")
    build_history(led)
    return led


def _note(led: Ledger, size: int) -> tuple[str, bytes]:
    with led.engine.connect() as conn:
        row = checkpoint_row(conn, size)
    return row.note, bytes(row.root)


def _verify(led: Ledger, anchor: str) -> None:
    verify_database(led.engine, trusted_log_key=log_public_key(led), anchor=anchor)


def test_a_genuine_held_checkpoint_passes(led: Ledger) -> None:
    _verify(led, _note(led, K)[0])


@pytest.mark.parametrize("size", [K, 10])
def test_one_flipped_bit_in_the_held_root_blames_the_held_checkpoint(led: Ledger, size: int) -> None:
    note, root = _note(led, size)
    forged = replace_note_root(note, root, other_root(root))
    with pytest.raises(HeldCheckpointInvalid) as exc:
        _verify(led, forged)
    assert "not valid for this log" in str(exc.value)
    assert "rewritten" not in str(exc.value) and "rolled back" not in str(exc.value)


def test_another_logs_valid_checkpoint_is_not_valid_for_this_log(led: Ledger, tmp_path: Path) -> None:
    other = make_ledger(f"sqlite:///{tmp_path / 'other.db'}", tmp_path / "other-keys")
    build_history(other)
    other.act("olga", "test.movement", account="ACC-1", delta=1)
    for size in (K, 11):  # within this log's size, and beyond it (would read as a rollback)
        with pytest.raises(HeldCheckpointInvalid) as exc:
            _verify(led, _note(other, size)[0])
        assert "not valid for this log" in str(exc.value)


def test_a_real_rewrite_is_still_blamed_on_the_log(led: Ledger) -> None:
    note, _ = _note(led, K)
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, K - 1)
        leaf["entry"]["delta"] += 1  # its signature breaks too; the anchor is checked first
        write_leaf(conn, K - 1, leaf)
    with pytest.raises(VerificationFailed) as exc:
        _verify(led, note)
    assert not isinstance(exc.value, HeldCheckpointInvalid)


def test_recorded_at_is_compared_as_a_time(led: Ledger) -> None:
    """"...:03Z" sorts after "...:03.5Z" as text but is half a second earlier."""
    with tampering(led.engine) as conn:
        prev = read_leaf(conn, K - 1)["recorded_at"]
        leaf = read_leaf(conn, K)
        whole = prev[:19]  # YYYY-MM-DDTHH:MM:SS
        prev_fraction = prev[19:-1]
        assert prev_fraction, "the log writes fractional seconds"
        leaf["recorded_at"] = whole + "Z"
        assert leaf["recorded_at"] > prev  # as text: not backwards
        write_leaf(conn, K, leaf)
    with pytest.raises(VerificationFailed) as exc:
        verify_database(led.engine, trusted_log_key=None)
    assert exc.value.seq == K
    assert "recorded_at runs backwards" in str(exc.value)
