"""RFC 9162 Merkle tree: hashing, proofs from a node store, proof verification, streaming roots.

Every entry of the log is a leaf of one RFC 9162 tree (DESIGN.md). The database keeps the
hash of every *complete, aligned* subtree, named by a :data:`NodeId` ``(level, index)``;
that is enough to rebuild any RFC 9162 hash (root, inclusion path, consistency proof) from
O(log n) stored nodes, because every incomplete node on the right border of the tree is the
RFC fold of a few complete ones (:func:`range_nodes`).

Proof generation is split in two so that a proof costs one batched query: first the set of
needed node ids is computed (pure arithmetic), then :meth:`NodeReader.get_nodes` is called
once, then the hashes are combined. Verification follows RFC 9162 sections 2.1.3.2 and
2.1.4.2 step by step, and is the only part an auditor has to trust.

Pure Python on :mod:`hashlib` only, so the offline verifier has no native dependency here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from ledger.errors import InvalidProof, StorageError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MemoryNodeStore",
    "NodeId",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_from_store",
    "verify_consistency",
    "verify_inclusion",
]

NodeId = tuple[int, int]
"""``(level, index)``: the complete subtree over leaves ``[index << level, (index + 1) << level)``.

It names a stored node; only complete subtrees are stored, since they never change.
"""

HASH_SIZE = 32
"""SHA-256 output size: every leaf hash, node hash and proof element has this length."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 section 2.1.1): the root of the empty log."""

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data), RFC 9162 section 2.1.1.

    The 0x00 prefix (0x01 for nodes) makes a leaf never collide with an interior node, which
    is what stops a second-preimage forgery of a proof.
    """
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), RFC 9162 section 2.1.1."""
    return _sha256(_NODE_PREFIX + left + right).digest()


class NodeReader(Protocol):
    """Read access to stored complete-subtree hashes (the database, :class:`MemoryNodeStore`)."""

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        """Return the stored hashes of ``ids``; one call is one batched query.

        Ids the store does not hold are simply absent from the result; the callers in this
        module turn that into :class:`~ledger.errors.StorageError`.
        """
        ...


class MemoryNodeStore:
    """A dict-backed :class:`NodeReader` for tests, tools and the in-memory verifier."""

    __slots__ = ("_nodes",)

    def __init__(self, items: Iterable[tuple[NodeId, bytes]] = ()) -> None:
        self._nodes: dict[NodeId, bytes] = dict(items)

    def put(self, items: Iterable[tuple[NodeId, bytes]]) -> None:
        """Store node hashes, e.g. the list returned by :meth:`CompactRange.append`."""
        self._nodes.update(items)

    def get_nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        """Return the held hashes among ``ids`` (missing ids are left out, as a query would)."""
        nodes = self._nodes
        return {i: nodes[i] for i in ids if i in nodes}

    def __len__(self) -> int:
        return len(self._nodes)


def _check_size(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def range_nodes(start: int, end: int) -> list[NodeId]:
    """Split the leaf range ``[start, end)`` into complete aligned subtrees, left to right.

    This is the minimal such cover. For a range that RFC 9162 section 2.1.1 MTH visits (in
    particular ``[0, n)``, or the right sibling of an inclusion path) it is exactly the RFC
    split, largest power of two first, so folding the hashes right to left
    (``node_hash(h0, node_hash(h1, ...))``) gives that range's MTH. For an arbitrary range the
    left part holds nodes of growing size, then the right part nodes of shrinking size.
    """
    _check_size("start", start)
    if end < start:
        raise ValueError(f"end ({end}) < start ({start})")
    if start == end:
        return []
    if start == 0:
        left, right = 0, end
    else:
        # Paths to leaf start-1 and leaf end diverge at bit d: the range is the nodes strictly
        # below that point, right of the path to start-1 (zero bits of start-1) and left of
        # the path to end (one bits of end).
        xstart = start - 1
        mask = (1 << ((xstart ^ end).bit_length() - 1)) - 1
        left, right = ~xstart & mask, end & mask
    out: list[NodeId] = []
    pos = start
    while left:
        level = (left & -left).bit_length() - 1  # lowest set bit first: growing sizes
        out.append((level, pos >> level))
        pos += 1 << level
        left &= left - 1
    while right:
        level = right.bit_length() - 1  # highest set bit first: shrinking sizes
        out.append((level, pos >> level))
        pos += 1 << level
        right ^= 1 << level
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its :func:`range_nodes` hashes: RFC 9162 puts the big subtree left."""
    h = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        h = _sha256(_NODE_PREFIX + hashes[i] + h).digest()
    return h


def _fetch(reader: NodeReader, groups: Sequence[Sequence[NodeId]]) -> list[bytes]:
    """One ``get_nodes`` call for all ``groups``; each group is folded into one hash."""
    ids = [node for group in groups for node in group]
    if not ids:
        return []
    got = reader.get_nodes(ids)
    out: list[bytes] = []
    for group in groups:
        try:
            out.append(_fold([got[node] for node in group]))
        except KeyError as exc:
            raise StorageError(f"the node store lacks Merkle node {exc.args[0]}") from None
    return out


def _path_groups(level: int, index: int, size: int) -> list[list[NodeId]]:
    """Node groups of the RFC 9162 audit path of complete node ``(level, index)`` in tree ``size``.

    Bottom-up, one group per path element. Below the level where the path to the node and
    the path to the last leaf meet, siblings are complete nodes; at that level the right
    sibling may be the incomplete right border, built from :func:`range_nodes`; above it, the
    path runs along the right border, where only left siblings exist (a node with no right
    sibling is passed up unchanged by RFC MTH).
    """
    last = (size - 1) >> level
    inner = (index ^ last).bit_length()
    groups: list[list[NodeId]] = [[(level + lv, (index >> lv) ^ 1)] for lv in range(inner - 1)]
    if inner:
        start = ((index >> (inner - 1)) + 1) << (level + inner - 1)
        groups.append(range_nodes(start, size))
    i, lv = index >> inner, level + inner
    while i:
        if i & 1:
            groups.append([(lv, i - 1)])
        i >>= 1
        lv += 1
    return groups


def root_from_store(reader: NodeReader, size: int) -> bytes:
    """MTH of the first ``size`` leaves (RFC 9162 section 2.1.1) from O(log n) stored nodes."""
    _check_size("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _fetch(reader, [range_nodes(0, size)])[0]


def inclusion_proof(reader: NodeReader, *, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, leaf to root, in one node query."""
    _check_size("index", index)
    if index >= size:
        raise ValueError(f"index ({index}) must be < size ({size})")
    return _fetch(reader, _path_groups(0, index, size))


def consistency_proof(reader: NodeReader, *, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 section 2.1.4.1, in one node query.

    The proof is the largest complete subtree ending at ``old_size`` (left out when
    ``old_size`` is a power of two: the verifier already holds it as the old root) followed
    by that subtree's audit path in the new tree. RFC 9162 defines it only for
    ``0 < old_size``; ``old_size == new_size`` gives the empty proof.
    """
    if old_size < 1:
        raise ValueError(f"old_size must be >= 1 (RFC 9162 section 2.1.4), got {old_size}")
    if old_size > new_size:
        raise ValueError(f"old_size ({old_size}) > new_size ({new_size})")
    if old_size == new_size:
        return []
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    groups = _path_groups(level, index, new_size)
    if index:
        groups.insert(0, [(level, index)])
    return _fetch(reader, groups)


def _check_proof_elements(proof: Sequence[bytes]) -> None:
    """Refuse elements that are not SHA-256 outputs: the hash inputs must parse one way only."""
    for p in proof:
        if len(p) != HASH_SIZE:
            raise InvalidProof("a proof element is not a 32-byte SHA-256 hash")


def verify_inclusion(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof exactly as RFC 9162 section 2.1.3.2; raise :class:`InvalidProof`.

    Beyond the RFC, the leaf hash and every proof element must be 32 bytes, so that no
    ``node_hash`` input can be re-split into other values.
    """
    if index < 0 or size < 0 or index >= size:
        raise InvalidProof("leaf index is outside the tree")
    if len(leaf_hash) != HASH_SIZE:
        raise InvalidProof("leaf hash is not a 32-byte SHA-256 hash")
    _check_proof_elements(proof)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise InvalidProof("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("inclusion proof is too short")
    if not hmac.compare_digest(r, root):
        raise InvalidProof("inclusion proof does not lead to the root")


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof exactly as RFC 9162 section 2.1.4.2; raise :class:`InvalidProof`.

    Edge cases, as the RFC and the transparency-dev vectors in ``shared/testdata`` want:
    ``old_size > new_size`` is refused; ``old_size == 0`` is refused whatever the roots and
    proof (RFC 9162 section 2.1.4 defines proofs for ``0 < m`` only, and a proof from the
    empty tree proves nothing); ``old_size == new_size`` needs an empty proof and equal roots.
    """
    if old_size < 0 or new_size < 0:
        raise InvalidProof("tree sizes must be >= 0")
    if old_size > new_size:
        raise InvalidProof("old tree is larger than the new tree")
    if old_size == 0:
        raise InvalidProof("no consistency proof exists from the empty tree")
    if old_size == new_size:
        if proof:
            raise InvalidProof("trees of equal size need an empty consistency proof")
        if not hmac.compare_digest(old_root, new_root):
            raise InvalidProof("trees of equal size have different roots")
        return
    # 1. An empty path cannot prove anything between different sizes.
    if not proof:
        raise InvalidProof("consistency proof is empty")
    _check_proof_elements(proof)
    # 2. If first is an exact power of 2, prepend first_hash.
    path: list[bytes] = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. Shift both while LSB(fn) is set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = first element.
    fr = sr = path[0]
    # 6. Walk the rest.
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7. sn must be 0 and both roots must match.
    if sn != 0:
        raise InvalidProof("consistency proof is too short")
    if not hmac.compare_digest(fr, old_root):
        raise InvalidProof("consistency proof does not lead to the old root")
    if not hmac.compare_digest(sr, new_root):
        raise InvalidProof("consistency proof does not lead to the new root")


class CompactRange:
    """Streaming tree state: O(log n) memory.

    Used by the write path (to extend the stored tree and get the new root) and by the
    verifier (to recompute roots while streaming millions of entries). The state is the
    *frontier*: the hashes of :func:`range_nodes` ``(0, size)``, left to right, one per set
    bit of ``size``; appending a leaf merges it with the frontier like a binary carry.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        _check_size("size", size)
        if len(frontier) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} frontier nodes, got {len(frontier)}"
            )
        for h in frontier:
            if len(h) != HASH_SIZE:
                raise ValueError("frontier hashes must be 32 bytes")
        self._size = size
        self._frontier: list[bytes] = list(frontier)

    @classmethod
    def from_store(cls, reader: NodeReader, size: int) -> CompactRange:
        """Resume from the stored tree of ``size`` leaves with one node query."""
        _check_size("size", size)
        ids = range_nodes(0, size)
        if not ids:
            return cls()
        got = reader.get_nodes(ids)
        try:
            frontier = [got[node] for node in ids]
        except KeyError as exc:
            raise StorageError(f"the node store lacks Merkle node {exc.args[0]}") from None
        return cls(size, frontier)

    @property
    def size(self) -> int:
        """Number of leaves appended so far (including those of the starting frontier)."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """Hashes of ``range_nodes(0, size)``, left to right (enough to resume the range)."""
        return tuple(self._frontier)

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Append one *leaf hash*; return every node it completes, ``(0, index)`` first.

        The caller stores them all, which keeps the node store complete for
        :func:`root_from_store` and the proofs. Iterative and allocation-light: this is the
        verifier's hot path.
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError("append takes a 32-byte leaf hash (see leaf_hash), not leaf data")
        index = self._size
        frontier = self._frontier
        sha256 = _sha256
        completed = [((0, index), leaf)]
        h = leaf
        level = 0
        while index & 1:
            h = sha256(_NODE_PREFIX + frontier.pop() + h).digest()
            index >>= 1
            level += 1
            completed.append(((level, index), h))
        frontier.append(h)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """MTH of the leaves so far (RFC 9162 section 2.1.1); :data:`EMPTY_ROOT` when empty."""
        if not self._frontier:
            return EMPTY_ROOT
        return _fold(self._frontier)
