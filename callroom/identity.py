"""What a node makes once and keeps: its id (in its data directory), the first account and API key of a new
database, and the secret every node of the database signs recording links with."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from pathlib import Path

from callroom.api.common import hash_key
from callroom.model import signed_links
from callroom.model.records import Account
from callroom.store.engine import Store

DEFAULT_ACCOUNT = "default"


def node_id_for(data_dir: Path) -> str:
    """A stable id for this node, kept in its data directory."""
    path = data_dir / "node-id"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    node_id = f"node-{uuid.uuid4().hex[:12]}"
    path.write_text(node_id + "\n")
    return node_id


def create_api_key(store: Store, account_name: str = DEFAULT_ACCOUNT, label: str | None = None) -> str:
    """A new API key for ``account_name`` (created if needed). Only its hash is stored."""
    key = "KEY" + secrets.token_urlsafe(32).replace("-", "A").replace("_", "B")
    with store.transaction() as tx:
        account = tx.get_account_by_name(account_name)
        if account is None:
            account = Account(id=str(uuid.uuid4()), name=account_name, created_at=time.time())
            tx.insert_account(account)
        tx.insert_api_key(str(uuid.uuid4()), account.id, key[:10], hash_key(key), label)
    return key


def recording_link_secret(store: Store) -> bytes:
    """The secret of public recording links, the same for every node of the database (the first one stored)."""
    with store.transaction() as tx:
        stored = tx.add_setting(signed_links.SECRET_SETTING, base64.b64encode(secrets.token_bytes(32)).decode())
    return base64.b64decode(stored)


def ensure_first_key(store: Store) -> str | None:
    """On a node's first start: create the default account and its first API key (returned once)."""
    with store.transaction() as tx:
        if tx.list_accounts():
            return None
    return create_api_key(store, DEFAULT_ACCOUNT, "created on first start")
