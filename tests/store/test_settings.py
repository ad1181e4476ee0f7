"""Settings that every node of a cluster must share, created by whichever node starts first."""

from __future__ import annotations

import threading
import time

from callroom.store.engine import Store
from callroom.webhooks.signing import SETTING, WebhookSigner


def test_nodes_starting_at_once_share_one_webhook_signing_key(store: Store) -> None:
    """A node creating the key while another's creation is not yet committed waits for it and takes its key,
    instead of failing on the duplicate or overwriting it (each would then sign with a key of its own)."""
    first = WebhookSigner.generate()
    other: list[WebhookSigner | BaseException] = []

    def start_another_node() -> None:
        try:
            other.append(WebhookSigner.load_or_create(store))
        except BaseException as exc:
            other.append(exc)

    with store.transaction() as tx:
        assert tx.add_setting(SETTING, first.seed_b64) == first.seed_b64
        thread = threading.Thread(target=start_another_node)
        thread.start()
        time.sleep(0.3)  # it waits: on our uncommitted row (PostgreSQL) or the write lock (SQLite)
        assert other == []
    thread.join(10)
    assert len(other) == 1 and isinstance(other[0], WebhookSigner), other
    assert other[0].public_key_b64 == first.public_key_b64
    assert WebhookSigner.load_or_create(store).public_key_b64 == first.public_key_b64
    with store.transaction() as tx:
        assert tx.add_setting(SETTING, "another") == first.seed_b64  # never overwritten
