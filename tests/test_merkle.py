"""Tests of ledger.merkle against the RFC 9162 vectors, a naive RFC reference, and read budgets."""

from __future__ import annotations

import base64
import functools
import itertools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidProof, StorageError
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryNodeStore,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_nodes,
    root_from_store,
    verify_consistency,
    verify_inclusion,
)

# The vectors live beside the repository (../shared), read in place, never copied in.
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "rfc9162"
MISSING = (
    f"RFC 9162 test vectors not found at {VECTORS} "
    "(expected the shared testdata directory beside the repository)"
)

PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- reference


def mth(hashes: Sequence[bytes]) -> bytes:
    """Naive MTH of RFC 9162 section 2.1.1 over *leaf hashes*, straight from the definition."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


class Reference:
    """RFC 9162 sections 2.1.3.1 (PATH) and 2.1.4.1 (PROOF), recursive, memoised MTH."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.hashes = list(hashes)
        self._mth: Callable[[int, int], bytes] = functools.cache(self._mth_uncached)

    def _mth_uncached(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.hashes[lo]
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def root(self, n: int) -> bytes:
        return self._mth(0, n)

    def path(self, m: int, lo: int, hi: int) -> list[tuple[str, bytes]]:
        """PATH(m, D[lo:hi]) with the side of each sibling ('L' or 'R'), leaf upward."""
        n = hi - lo
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return [*self.path(m, lo, lo + k), ("R", self._mth(lo + k, hi))]
        return [*self.path(m - k, lo + k, hi), ("L", self._mth(lo, lo + k))]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return [h for _, h in self.path(index, 0, size)]

    def sides(self, index: int, size: int) -> list[str]:
        return [s for s, _ in self.path(index, 0, size)]

    def _subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self._mth(lo, hi)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, b), self._mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._mth(lo, lo + k)]

    def consistency(self, m: int, n: int) -> list[bytes]:
        return self._subproof(m, 0, n, True)


def build(hashes: Sequence[bytes]) -> tuple[MemoryNodeStore, list[bytes]]:
    """Store every completed node, and the CompactRange root after each append (index = size)."""
    store = MemoryNodeStore()
    cr = CompactRange()
    roots = [cr.root()]
    for h in hashes:
        store.put(cr.append(h))
        roots.append(cr.root())
    return store, roots


def flip(b: bytes, bit: int = 0) -> bytes:
    bit %= len(b) * 8
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def refuses(fn: Callable[..., None], **kwargs: Any) -> bool:
    try:
        fn(**kwargs)
    except InvalidProof:
        return True
    return False


def tree_hashes(seed: bytes, size: int) -> list[bytes]:
    return [leaf_hash(seed + i.to_bytes(4, "big")) for i in range(size)]


# --------------------------------------------------------------------------- vectors


def _vector_files(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []
    if not files:
        return [pytest.param(None, id=f"{kind}-vectors-missing")]
    return [pytest.param(f, id=f.relative_to(VECTORS).as_posix()) for f in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _b64list(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


@functools.cache
def _known_tree() -> tuple[list[bytes], list[bytes], MemoryNodeStore]:
    """Leaf hashes, expected roots (n = 0..8) and a store of the 8-leaf vector tree."""
    path = VECTORS / "roots.json"
    if not path.is_file():
        pytest.skip(MISSING)
    data = json.loads(path.read_text())
    hashes = [leaf_hash(bytes.fromhex(x)) for x in data["leaf_inputs_hex"]]
    roots = [bytes.fromhex(x) for x in data["root_by_tree_size_hex"]]
    store, _ = build(hashes)
    return hashes, roots, store


@pytest.mark.parametrize("n", range(9))
def test_vector_roots(n: int) -> None:
    hashes, roots, store = _known_tree()
    assert len(roots) == 9
    cr = CompactRange()
    for h in hashes[:n]:
        cr.append(h)
    assert cr.root() == roots[n]
    assert root_from_store(store, n) == roots[n]
    assert CompactRange.from_store(store, n).root() == roots[n]
    assert mth(hashes[:n]) == roots[n]


@pytest.mark.parametrize("path", _vector_files("inclusion"))
def test_vector_inclusion(path: Path | None) -> None:
    if path is None:
        pytest.skip(MISSING)
    case = json.loads(path.read_text())
    lh, root, proof = _b64(case["leafHash"]), _b64(case["root"]), _b64list(case["proof"])
    index, size = case["leafIdx"], case["treeSize"]
    refused = refuses(
        verify_inclusion, leaf_hash=lh, index=index, size=size, proof=proof, root=root
    )
    assert refused is case["wantErr"], case["desc"]

    hashes, roots, store = _known_tree()
    in_known_tree = (
        1 <= size < len(roots) and index < size and root == roots[size] and lh == hashes[index]
    )
    if path.name == "happy-path.json":
        assert in_known_tree, "happy paths are proofs in the roots.json tree"
    if in_known_tree and not case["wantErr"]:
        assert inclusion_proof(store, index=index, size=size) == proof


@pytest.mark.parametrize("path", _vector_files("consistency"))
def test_vector_consistency(path: Path | None) -> None:
    if path is None:
        pytest.skip(MISSING)
    case = json.loads(path.read_text())
    root1, root2, proof = _b64(case["root1"]), _b64(case["root2"]), _b64list(case["proof"])
    size1, size2 = case["size1"], case["size2"]
    refused = refuses(
        verify_consistency,
        old_size=size1,
        new_size=size2,
        old_root=root1,
        new_root=root2,
        proof=proof,
    )
    assert refused is case["wantErr"], case["desc"]

    _, roots, store = _known_tree()
    in_known_tree = (
        1 <= size1 <= size2 < len(roots) and root1 == roots[size1] and root2 == roots[size2]
    )
    if path.name == "happy-path.json":
        assert in_known_tree, "happy paths are proofs in the roots.json tree"
    if in_known_tree and not case["wantErr"]:
        assert consistency_proof(store, old_size=size1, new_size=size2) == proof


# --------------------------------------------------------------------------- properties

sizes = st.integers(min_value=1, max_value=300)
seeds = st.binary(min_size=1, max_size=8)


@PROPERTY
@given(size=sizes, seed=seeds)
def test_roots_match_reference(size: int, seed: bytes) -> None:
    hashes = tree_hashes(seed, size)
    store, roots = build(hashes)
    ref = Reference(hashes)
    assert roots[0] == EMPTY_ROOT == root_from_store(store, 0)
    for n in range(size + 1):
        assert root_from_store(store, n) == roots[n] == ref.root(n)
    assert mth(hashes) == roots[size]
    # Resuming from the store gives the same state as having streamed everything.
    half = size // 2
    cr = CompactRange.from_store(store, half)
    for h in hashes[half:]:
        cr.append(h)
    assert cr.size == size and cr.root() == roots[size]
    assert CompactRange(half, cr_frontier(store, half)).root() == roots[half]


def cr_frontier(store: MemoryNodeStore, size: int) -> list[bytes]:
    got = store.get_nodes(range_nodes(0, size))
    return [got[i] for i in range_nodes(0, size)]


@PROPERTY
@given(size=sizes, seed=seeds, data=st.data())
def test_inclusion_proofs(size: int, seed: bytes, data: st.DataObject) -> None:
    hashes = tree_hashes(seed, size)
    store, roots = build(hashes)
    ref = Reference(hashes)
    root = roots[size]
    big = max(size * 2, size + 3)
    big_ref = Reference(tree_hashes(seed, big))
    # Every proof is checked against the reference and verified; the full set of tamperings
    # runs on a sample of indices (always including both ends) to keep the test quick.
    tampered_indices = {0, size - 1, *data.draw(st.sets(st.integers(0, size - 1), max_size=12))}
    for index in range(size):
        proof = inclusion_proof(store, index=index, size=size)
        assert proof == ref.inclusion(index, size)
        ok: dict[str, Any] = {
            "leaf_hash": hashes[index],
            "index": index,
            "size": size,
            "proof": proof,
        }
        verify_inclusion(**ok, root=root)
        assert refuses(verify_inclusion, **ok, root=flip(root, index))
        if index not in tampered_indices:
            continue

        bit = data.draw(st.integers(0, 255), label="bit")
        assert refuses(verify_inclusion, **{**ok, "leaf_hash": flip(hashes[index], bit)}, root=root)
        for i, p in enumerate(proof):
            tampered = [*proof[:i], flip(p, bit), *proof[i + 1 :]]
            assert refuses(verify_inclusion, **{**ok, "proof": tampered}, root=root)
        if proof:
            assert refuses(verify_inclusion, **{**ok, "proof": proof[:-1]}, root=root)
        assert refuses(verify_inclusion, **{**ok, "proof": [*proof, root]}, root=root)

        # Another index of the same tree: the sibling sides differ, so the proof is refused.
        others = {index ^ 1, index - 1, index + 1, data.draw(st.integers(0, size - 1))}
        for other in sorted(i for i in others if 0 <= i < size and i != index):
            assert ref.sides(other, size) != ref.sides(index, size)
            assert refuses(verify_inclusion, **{**ok, "index": other}, root=root)
            assert refuses(
                verify_inclusion, **{**ok, "index": other, "leaf_hash": hashes[other]}, root=root
            )

        # Another size. Against that size's own root it must be refused. Against the same
        # root, RFC 9162 verification only sees the path's shape (the size is bound by the
        # signed checkpoint, not by the proof): it passes exactly when the sibling sides
        # of the reference PATH are the same, e.g. leaf 0 of size 3 "is" leaf 0 of size 4.
        for other in {size - 1, size + 1, size + 2, size * 2, size // 2}:
            if other <= index or other == size:
                continue
            assert refuses(verify_inclusion, **{**ok, "size": other}, root=big_ref.root(other))
            same_shape = big_ref.sides(index, other) == ref.sides(index, size)
            assert refuses(verify_inclusion, **{**ok, "size": other}, root=root) is not same_shape


@PROPERTY
@given(size=sizes, seed=seeds, data=st.data())
def test_consistency_proofs(size: int, seed: bytes, data: st.DataObject) -> None:
    big = size + 40
    hashes = tree_hashes(seed, big)
    store, roots = build(hashes)
    ref = Reference(hashes)
    pairs = {(1, size), (size, size), (max(1, size - 1), size)}
    for _ in range(15):
        new = data.draw(st.integers(1, size), label="new")
        pairs.add((data.draw(st.integers(1, new), label="old"), new))
    for old, new in sorted(pairs):
        proof = consistency_proof(store, old_size=old, new_size=new)
        assert proof == ref.consistency(old, new)
        ok: dict[str, Any] = {"old_size": old, "new_size": new, "proof": proof}
        verify_consistency(**ok, old_root=roots[old], new_root=roots[new])

        bit = data.draw(st.integers(0, 255), label="bit")
        good = {**ok, "old_root": roots[old], "new_root": roots[new]}
        assert refuses(verify_consistency, **{**good, "old_root": flip(roots[old], bit)})
        assert refuses(verify_consistency, **{**good, "new_root": flip(roots[new], bit)})
        for i, p in enumerate(proof):
            tampered = [*proof[:i], flip(p, bit), *proof[i + 1 :]]
            assert refuses(verify_consistency, **{**good, "proof": tampered})
        if proof:
            assert refuses(verify_consistency, **{**good, "proof": proof[:-1]})
        assert refuses(verify_consistency, **{**good, "proof": [*proof, roots[new]]})
        assert refuses(verify_consistency, **{**good, "proof": [roots[old], *proof]})
        # Other sizes, each with its own true root: refused (the roots of different sizes of
        # one log differ, and the proof only links the two roots it was made for).
        for o in {old - 1, old + 1, old * 2}:
            if 1 <= o <= new and o != old:
                assert refuses(verify_consistency, **{**good, "old_size": o, "old_root": roots[o]})
        for n in {new - 1, new + 1, new * 2}:
            if old <= n < big and n != new:
                assert refuses(verify_consistency, **{**good, "new_size": n, "new_root": roots[n]})


def test_size_is_bound_by_the_checkpoint_not_the_proof() -> None:
    """RFC 9162 behaviour worth knowing: a proof fixes the path's shape, not the tree size.

    Callers must take sizes from the signed checkpoint, never from whoever asks for a proof.
    """
    hashes = tree_hashes(b"s", 4)
    store, roots = build(hashes)
    proof = inclusion_proof(store, index=0, size=3)
    verify_inclusion(leaf_hash=hashes[0], index=0, size=4, proof=proof, root=roots[3])
    cproof = consistency_proof(store, old_size=2, new_size=3)
    verify_consistency(old_size=2, new_size=4, old_root=roots[2], new_root=roots[3], proof=cproof)


@given(start=st.integers(0, 1 << 20), length=st.integers(0, 1 << 20))
def test_range_nodes_cover_exactly(start: int, length: int) -> None:
    end = start + length
    nodes = range_nodes(start, end)
    pos = start
    for level, index in nodes:
        assert index << level == pos, "contiguous, left to right, aligned"
        pos += 1 << level
    assert pos == end
    # Minimal: never two equal-sized siblings that could have been one node.
    for (l1, i1), (l2, i2) in itertools.pairwise(nodes):
        assert not (l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1)
    assert len(nodes) <= 2 * max(1, length.bit_length())


def test_range_nodes_examples() -> None:
    assert range_nodes(0, 0) == []
    assert range_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert range_nodes(3, 8) == [(0, 3), (2, 1)]
    assert range_nodes(4, 7) == [(1, 2), (0, 6)]
    assert range_nodes(5, 5) == []


@given(size=st.integers(0, 2000))
def test_append_returns_exactly_the_newly_complete_nodes(size: int) -> None:
    cr = CompactRange()
    store = MemoryNodeStore()
    for i in range(size):
        done = cr.append(leaf_hash(i.to_bytes(4, "big")))
        n = i + 1
        tz = (n & -n).bit_length() - 1
        assert [node for node, _ in done] == [(lv, (n >> lv) - 1) for lv in range(tz + 1)]
        store.put(done)
    assert cr.size == size
    assert len(store) == sum(size >> lv for lv in range(size.bit_length()))
    assert len(cr.frontier) == size.bit_count()


# --------------------------------------------------------------------------- read budget


class CountingReader:
    """Wraps a store and records every get_nodes call."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.calls: list[list[NodeId]] = []

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        self.calls.append(list(ids))
        return self.inner.get_nodes(ids)


@functools.cache
def _big_store() -> MemoryNodeStore:
    store, _ = build(tree_hashes(b"big", 4096))
    return store


def _assert_budget(reader: CountingReader, n: int, proof: list[bytes]) -> None:
    budget = 2 * (n - 1).bit_length() + 2  # 2 * ceil(log2 n) + 2
    if not proof:
        assert len(reader.calls) <= 1
    else:
        assert len(reader.calls) == 1, "one batched query per proof"
    for ids in reader.calls:
        assert len(ids) == len(set(ids))
        assert len(ids) <= budget, (n, len(ids), budget)
    reader.calls.clear()


@pytest.mark.parametrize(
    "n", [*range(1, 70), 127, 128, 129, 1000, 1023, 1024, 1025, 3001, 4095, 4096]
)
def test_proofs_use_log_n_reads_in_one_query(n: int) -> None:
    reader = CountingReader(_big_store())
    indices = (
        range(n)
        if n <= 130
        else sorted({0, 1, n // 3, n // 2, n - 2, n - 1, 1 << ((n - 1).bit_length() - 1)})
    )
    for index in indices:
        proof = inclusion_proof(reader, index=index, size=n)
        _assert_budget(reader, n, proof)
    for old in indices:
        if old >= 1:
            proof = consistency_proof(reader, old_size=old, new_size=n)
            _assert_budget(reader, n, proof)
    root_from_store(reader, n)
    _assert_budget(reader, n, [b"x"])
    CompactRange.from_store(reader, n)
    _assert_budget(reader, n, [b"x"])


# --------------------------------------------------------------------------- errors


def test_out_of_range_arguments_raise_value_error() -> None:
    store, _ = build(tree_hashes(b"e", 8))
    with pytest.raises(ValueError):
        inclusion_proof(store, index=8, size=8)
    with pytest.raises(ValueError):
        inclusion_proof(store, index=-1, size=8)
    with pytest.raises(ValueError):
        inclusion_proof(store, index=0, size=0)
    with pytest.raises(ValueError):
        consistency_proof(store, old_size=5, new_size=4)
    with pytest.raises(ValueError):
        consistency_proof(store, old_size=0, new_size=4)
    with pytest.raises(ValueError):
        root_from_store(store, -1)
    with pytest.raises(ValueError):
        range_nodes(5, 4)
    with pytest.raises(ValueError):
        range_nodes(-1, 4)
    with pytest.raises(ValueError):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(ValueError):
        CompactRange().append(b"leaf data, not a hash")
    assert consistency_proof(store, old_size=8, new_size=8) == []


def test_missing_node_is_a_storage_error() -> None:
    store = MemoryNodeStore(CompactRange().append(leaf_hash(b"only")))
    with pytest.raises(StorageError):
        root_from_store(store, 2)
    with pytest.raises(StorageError):
        inclusion_proof(store, index=0, size=2)
    with pytest.raises(StorageError):
        CompactRange.from_store(store, 2)


def test_verifiers_refuse_bad_sizes_and_lengths() -> None:
    h = leaf_hash(b"x")
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash=h, index=-1, size=1, proof=[], root=h)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash=h[:31], index=0, size=1, proof=[], root=h[:31])
    with pytest.raises(InvalidProof):
        verify_consistency(old_size=-1, new_size=1, old_root=h, new_root=h, proof=[])
    with pytest.raises(InvalidProof):
        verify_consistency(
            old_size=0, new_size=0, old_root=EMPTY_ROOT, new_root=EMPTY_ROOT, proof=[]
        )
    verify_consistency(old_size=1, new_size=1, old_root=h, new_root=h, proof=[])
