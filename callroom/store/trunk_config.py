"""Trunks as the node and the command line write and read them whole (beside ``tx_trunks``' per-row work)."""

from __future__ import annotations

import time
import uuid

from callroom.model.records import Account
from callroom.model.trunks import TrunkDirectory, TrunkSettings
from callroom.store.engine import Store


def put_trunks(store: Store, account_name: str, specs: tuple[TrunkSettings, ...]) -> None:
    """Create or change the trunks ``specs`` in the account ``account_name`` (created if needed)."""
    now = time.time()
    with store.transaction() as tx:
        account = tx.get_account_by_name(account_name)
        if account is None:
            account = Account(id=str(uuid.uuid4()), name=account_name, created_at=now)
            tx.insert_account(account)
        for spec in specs:
            tx.put_trunk(account.id, spec, now)


def load_directory(store: Store) -> TrunkDirectory:
    """Every account's trunks and numbers: what a node routes with."""
    with store.transaction(read_only=True) as tx:
        return TrunkDirectory.of(tx.all_trunks(), tx.all_phone_numbers())
