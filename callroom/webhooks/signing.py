"""Ed25519 webhook signatures, exactly as Telnyx signs: base64(sign(f"{timestamp}|{body}"))."""

from __future__ import annotations

import base64

from nacl.signing import SigningKey, VerifyKey

from callroom.store.engine import Store

SETTING = "webhook_signing_key"


class WebhookSigner:
    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> WebhookSigner:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed_b64(cls, seed: str) -> WebhookSigner:
        return cls(SigningKey(base64.b64decode(seed)))

    @classmethod
    def load_or_create(cls, store: Store) -> WebhookSigner:
        """The node's signing key, created (and kept in the database) on first start."""
        with store.transaction() as tx:
            seed = tx.get_setting(SETTING)
            if seed is None:
                signer = cls.generate()
                tx.put_setting(SETTING, signer.seed_b64)
                return signer
        return cls.from_seed_b64(seed)

    @property
    def seed_b64(self) -> str:
        return base64.b64encode(bytes(self._key)).decode()

    @property
    def public_key_b64(self) -> str:
        """What applications pass to ``client.webhooks.unwrap(..., key=...)``."""
        return base64.b64encode(bytes(self._key.verify_key)).decode()

    def sign(self, body: bytes, timestamp: int) -> str:
        message = str(timestamp).encode() + b"|" + body
        return base64.b64encode(self._key.sign(message).signature).decode()

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        return {
            "telnyx-signature-ed25519": self.sign(body, timestamp),
            "telnyx-timestamp": str(timestamp),
        }


def verify(public_key_b64: str, body: bytes, timestamp: str, signature_b64: str) -> bool:
    try:
        VerifyKey(base64.b64decode(public_key_b64)).verify(
            timestamp.encode() + b"|" + body, base64.b64decode(signature_b64)
        )
    except Exception:
        return False
    return True
