"""The Alembic migrations create exactly ``callroom.store.schema.metadata``, and re-running them is harmless."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from callroom.store import schema as t
from callroom.store.engine import MIGRATIONS, Store
from callroom.store.schema import metadata
from tests.store import factories as f
from tests.store.factories import NOW, uid


def _head() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _current(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_migrated_schema_matches_the_metadata(fresh_store: Store) -> None:
    store = fresh_store
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == []
    assert store.table_names() == sorted([*metadata.tables, "alembic_version"])
    assert _current(store) == [_head()]


def test_migrating_twice_is_harmless(fresh_store: Store) -> None:
    store = fresh_store
    acct = uid()
    q = f.queue(acct)
    with store.transaction() as tx:
        tx.insert_queue(q)
        tx.add_event(f.event(acct), NOW)
        tx.put_setting("webhook_signing_key", "secret")

    store.migrate()
    store.migrate()

    assert _current(store) == [_head()]
    with store.transaction() as tx:
        assert tx.get_queue(acct, "support") == q
        assert tx.get_setting("webhook_signing_key") == "secret"
        assert tx.conn.execute(select(t.outbox.c.event_type)).scalars().all() == ["call.initiated"]
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []
