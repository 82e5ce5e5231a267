"""A toy log for witness tests: leaves in a Merkle tree, checkpoints signed as notes."""

from __future__ import annotations

import hashlib

from keys.signer import Ed25519Signer
from ledger.checkpoint import Checkpoint, note_verifier_key, sign_checkpoint
from ledger.merkle import (
    CompactRange,
    MemoryNodeStore,
    consistency_proof,
    leaf_hash,
    root_from_store,
)


class ToyLog:
    def __init__(self, origin: str = "example.org/toy", signer: Ed25519Signer | None = None, salt: bytes = b""):
        self.origin = origin
        self.signer = signer or Ed25519Signer.generate()
        self.salt = salt
        self.nodes = MemoryNodeStore()
        self.tree = CompactRange()

    @property
    def vkey(self) -> str:
        return note_verifier_key(key_name=self.origin, public_key=self.signer.public_key)

    def grow(self, n: int) -> None:
        for _ in range(n):
            data = self.salt + str(self.tree.size).encode()
            self.nodes.put(self.tree.append(leaf_hash(data)))

    def root(self, size: int) -> bytes:
        return root_from_store(self.nodes, size) if size else hashlib.sha256(b"").digest()

    def note(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        cp = Checkpoint(origin=self.origin, size=size, root=self.root(size), time="2026-11-29T10:00:00Z")
        return sign_checkpoint(cp, signer=self.signer, key_name=self.origin)

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.tree.size if new is None else new
        if old == 0 or old == new:
            return []
        return consistency_proof(self.nodes, old_size=old, new_size=new)
