"""Which account an API key belongs to, cached per node without outliving a revocation.

Every key created or revoked (``callroom keys``, on any machine sharing the database) writes a new
*generation* (``Tx.new_keys_generation``, in the same transaction). A cached answer carries the generation
read just before it; it is used only while the node's latest reading of the generation is the same, and the
node reads it again at most once per ``GENERATION_CHECK_SECS``. So a revoked key is refused on every node
within that second, and the check costs one small read per second per node, not one per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GENERATION_CHECK_SECS = 1.0
MAX_ENTRIES = 10_000  # random wrong keys must not grow the cache without bound


@dataclass(slots=True)
class KeyCache:
    """Keys (held as given: they are in this process's memory anyway, and a hit then costs no hashing) to
    their account (None: no such key, or revoked) and the generation read with it."""

    entries: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    generation: str | None = None
    checked_at: float = float("-inf")

    def due(self, now: float) -> bool:
        """Whether the generation should be read again; the caller reads it (``saw``) once for everyone."""
        if now - self.checked_at < GENERATION_CHECK_SECS:
            return False
        self.checked_at = now
        return True

    def saw(self, generation: str | None) -> None:
        if generation != self.generation:
            self.generation = generation
            self.entries.clear()

    def get(self, key: str) -> tuple[bool, str | None]:
        """(known, account): known is False when the key must be looked up."""
        hit = self.entries.get(key)
        if hit is None or hit[1] != self.generation:
            return False, None
        return True, hit[0]

    def put(self, key: str, account: str | None, generation: str | None) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        self.entries[key] = (account, generation)
