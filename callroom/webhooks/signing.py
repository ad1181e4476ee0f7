"""Ed25519 webhook signatures, exactly as Telnyx signs: base64(sign(f"{timestamp}|{body}")).

The node's key is kept in the ``settings`` table. ``rotate`` makes a new key current and keeps the old
one as *previous* until a grace deadline: while in grace every delivery carries the new key's signature
in ``telnyx-signature-ed25519`` and the old key's in ``callroom-signature-ed25519-previous``, so a
receiver still configured with the old public key can verify (and then switch).
"""

from __future__ import annotations

import base64
import time

from nacl.signing import SigningKey, VerifyKey

from callroom.store.engine import Store
from callroom.store.tx import Tx

SETTING = "webhook_signing_key"
PREVIOUS_SETTING = "webhook_signing_key_previous"
PREVIOUS_UNTIL_SETTING = "webhook_signing_key_previous_until"
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
PREVIOUS_SIGNATURE_HEADER = "callroom-signature-ed25519-previous"
DEFAULT_GRACE_SECS = 24 * 3600.0


def _public_b64(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


class WebhookSigner:
    def __init__(self, key: SigningKey, previous: SigningKey | None = None, previous_until: float = 0.0) -> None:
        self._key = key
        self._previous = previous
        self._previous_until = previous_until

    @classmethod
    def generate(cls) -> WebhookSigner:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed_b64(cls, seed: str) -> WebhookSigner:
        return cls(SigningKey(base64.b64decode(seed)))

    @classmethod
    def load_or_create(cls, store: Store) -> WebhookSigner:
        """The node's signing key, created (and kept in the database) on first start. Nodes starting at once
        on a new database all end up with the key the first of them committed."""
        with store.transaction() as tx:
            seed = tx.get_setting(SETTING)
            if seed is None:
                fresh = cls.generate()
                seed = tx.add_setting(SETTING, fresh.seed_b64)
                if seed == fresh.seed_b64:
                    return fresh
            signer = cls.from_seed_b64(seed)
            signer._load_previous(tx)
            return signer

    def _load_previous(self, tx: Tx) -> None:
        prev, until = tx.get_setting(PREVIOUS_SETTING), tx.get_setting(PREVIOUS_UNTIL_SETTING)
        if prev and until:
            self._previous, self._previous_until = SigningKey(base64.b64decode(prev)), float(until)
        else:
            self._previous, self._previous_until = None, 0.0

    def reload(self, store: Store) -> None:
        """Pick up a rotation done by another process (``callroom keys rotate-webhook-key``)."""
        with store.transaction() as tx:
            seed = tx.get_setting(SETTING)
            if seed is not None and seed != self.seed_b64:
                self._key = SigningKey(base64.b64decode(seed))
            self._load_previous(tx)

    @staticmethod
    def rotate(store: Store, grace_secs: float = DEFAULT_GRACE_SECS, now: float | None = None) -> tuple[str, str]:
        """Make a new key current, keep the old one valid for ``grace_secs``; (old, new) public keys."""
        now = time.time() if now is None else now
        new = SigningKey.generate()
        with store.transaction() as tx:
            old_seed = tx.get_setting(SETTING)
            tx.put_setting(SETTING, base64.b64encode(bytes(new)).decode())
            if old_seed is not None:
                tx.put_setting(PREVIOUS_SETTING, old_seed)
                tx.put_setting(PREVIOUS_UNTIL_SETTING, repr(now + grace_secs))
        old_public = _public_b64(SigningKey(base64.b64decode(old_seed))) if old_seed else ""
        return old_public, _public_b64(new)

    @property
    def seed_b64(self) -> str:
        return base64.b64encode(bytes(self._key)).decode()

    @property
    def public_key_b64(self) -> str:
        """What applications pass to ``client.webhooks.unwrap(..., key=...)``."""
        return _public_b64(self._key)

    def previous_public_key_b64(self, now: float | None = None) -> str | None:
        """The old key while its grace period lasts."""
        now = time.time() if now is None else now
        if self._previous is None or now >= self._previous_until:
            return None
        return _public_b64(self._previous)

    @property
    def previous_until(self) -> float | None:
        return self._previous_until if self._previous is not None else None

    def sign(self, body: bytes, timestamp: int) -> str:
        message = str(timestamp).encode() + b"|" + body
        return base64.b64encode(self._key.sign(message).signature).decode()

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        headers = {SIGNATURE_HEADER: self.sign(body, timestamp), TIMESTAMP_HEADER: str(timestamp)}
        if self._previous is not None and timestamp < self._previous_until:
            message = str(timestamp).encode() + b"|" + body
            headers[PREVIOUS_SIGNATURE_HEADER] = base64.b64encode(self._previous.sign(message).signature).decode()
        return headers


def verify(public_key_b64: str, body: bytes, timestamp: str, signature_b64: str) -> bool:
    try:
        VerifyKey(base64.b64decode(public_key_b64)).verify(
            timestamp.encode() + b"|" + body, base64.b64decode(signature_b64)
        )
    except Exception:
        return False
    return True
