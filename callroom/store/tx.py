"""The store's unit of work: typed reads and writes of control-plane records inside one transaction.

``Tx`` gathers its parts: ``tx_base`` (conversion, shared helpers), ``tx_conferences``, ``tx_queues``,
``tx_trunks``, and
here settings, accounts, API keys, applications, calls, the outbox, timers and command ids. Every query
that can see tenant data filters on ``account_id``; nothing here returns another account's rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from callroom.model.records import (
    Account,
    Application,
    Call,
    OutboundEvent,
    Timer,
)
from callroom.model.states import CallState
from callroom.store import schema as t
from callroom.store.sql import Result, prebuilt
from callroom.store.tx_base import _lookup, _update_by, from_row, to_row
from callroom.store.tx_conferences import ConferenceTx
from callroom.store.tx_queues import QueueTx
from callroom.store.tx_trunks import TrunkTx

__all__ = ["Tx", "from_row", "to_row"]

KEYS_GENERATION = "api_keys_generation"  # the setting that changes with every key created or revoked


class Tx(ConferenceTx, QueueTx, TrunkTx):
    """Reads and writes within one database transaction."""

    # -- settings -----------------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        value: str | None = self.conn.execute(select(t.settings.c.value).where(t.settings.c.key == key)).scalar()
        return value

    def put_setting(self, key: str, value: str) -> None:
        if self.get_setting(key) is None:
            self.conn.execute(insert(t.settings).values(key=key, value=value))
        else:
            self.conn.execute(update(t.settings).where(t.settings.c.key == key).values(value=value))

    def add_setting(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is there already, and return the value stored. A
        transaction writing the same key at the same moment (another node starting) is waited for, and its
        value wins if it commits: nothing is overwritten, and every writer returns the one value kept."""
        dialect_insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        self.conn.execute(dialect_insert(t.settings).values(key=key, value=value)
                          .on_conflict_do_nothing(index_elements=[t.settings.c.key]))
        stored = self.get_setting(key)
        assert stored is not None
        return stored

    # -- accounts and keys --------------------------------------------------------------------------

    def keys_generation(self) -> str | None:
        """A value that changes whenever an API key is created or revoked (``new_keys_generation``): a
        node's cache of keys is good while it reads the same value."""
        c = t.settings.c
        stmt = prebuilt("keys_generation", lambda: select(c.value).where(c.key == KEYS_GENERATION))
        value: str | None = self.conn.execute(stmt).scalar()
        return value

    def new_keys_generation(self) -> None:
        """A new random value (not a counter: two revocations at once must not both write the same one)."""
        dialect_insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        stmt = dialect_insert(t.settings).values(key=KEYS_GENERATION, value=uuid.uuid4().hex)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=[t.settings.c.key],
                                                     set_={"value": stmt.excluded.value}))

    def insert_account(self, account: Account) -> None:
        self.conn.execute(insert(t.accounts).values(to_row(account)))

    def get_account_by_name(self, name: str) -> Account | None:
        return self._one(Account, select(t.accounts).where(t.accounts.c.name == name))

    def list_accounts(self) -> list[Account]:
        return self._all(Account, select(t.accounts).order_by(t.accounts.c.created_at))

    def insert_api_key(self, key_id: str, account_id: str, prefix: str, key_hash: str, label: str | None) -> None:
        self.conn.execute(
            insert(t.api_keys).values(
                id=key_id,
                account_id=account_id,
                prefix=prefix,
                key_hash=key_hash,
                label=label,
                created_at=time.time(),
                revoked_at=None,
            )
        )
        self.new_keys_generation()

    def account_for_key_hash(self, key_hash: str) -> str | None:
        c = t.api_keys.c
        stmt = prebuilt("account_for_key", lambda: select(c.account_id).where(
            c.key_hash == bindparam("h"), c.revoked_at.is_(None)))
        account: str | None = self.conn.execute(stmt, {"h": key_hash}).scalar()
        return account

    def list_api_keys(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(t.api_keys, t.accounts.c.name.label("account_name"))
            .join(t.accounts, t.accounts.c.id == t.api_keys.c.account_id)
            .order_by(t.api_keys.c.created_at)
        )
        return [dict(r._mapping) for r in rows]

    def revoke_api_key(self, key_id_or_prefix: str, now: float) -> int:
        cond = (t.api_keys.c.id == key_id_or_prefix) | (t.api_keys.c.prefix == key_id_or_prefix)
        result = self.conn.execute(
            update(t.api_keys).where(and_(cond, t.api_keys.c.revoked_at.is_(None))).values(revoked_at=now)
        )
        if result.rowcount:
            self.new_keys_generation()
        return int(result.rowcount)

    # -- applications -------------------------------------------------------------------------------

    def insert_application(self, app: Application) -> None:
        self.conn.execute(insert(t.applications).values(to_row(app)))

    def update_application(self, app: Application) -> None:
        self.conn.execute(update(t.applications).where(t.applications.c.id == app.id).values(to_row(app)))

    def delete_application(self, account_id: str, app_id: str) -> None:
        c = t.applications.c
        self.conn.execute(delete(t.applications).where(and_(c.id == app_id, c.account_id == account_id)))

    def get_application(self, account_id: str, app_id: str) -> Application | None:
        return self.application_in(self.read_application(account_id, app_id))

    def read_application(self, account_id: str, app_id: str) -> Result:
        """The read of ``get_application`` sent now and looked at later (``application_in``)."""
        c = t.applications.c
        stmt = prebuilt("get_app", lambda: select(t.applications).where(c.id == bindparam("id"),
                                                                         c.account_id == bindparam("acct")))
        return self.conn.execute(stmt, {"id": app_id, "acct": account_id})

    def application_for_webhooks(self, account_id: str, app_id: str) -> Application | None:
        """An application as this transaction's webhooks address it (read once per transaction: SQLite)."""
        cache = self._webhook_apps
        if app_id not in cache:
            cache[app_id] = self.get_application(account_id, app_id)
        return cache[app_id]

    @staticmethod
    def application_in(read: Result) -> Application | None:
        row = read.first()
        return None if row is None else from_row(Application, row)

    def application_for_sip_user(self, user: str) -> Application | None:
        """The application an incoming SIP call to ``user@node`` is for: by its id, or by the
        ``inbound.sip_subdomain`` it claims. (A scan: fine for the applications of one node.)"""
        if not user:
            return None
        first = self.conn.execute(_lookup(t.applications, "app_by_id", False, id="id"), {"id": user}).first()
        if first is not None:
            return from_row(Application, first)
        for app in self._all(Application, select(t.applications)):
            if app.inbound.get("sip_subdomain") == user:
                return app
        return None

    def list_applications(self, account_id: str, page: int, size: int, name_contains: str | None) -> tuple[
        list[Application], int
    ]:
        c = t.applications.c
        where = c.account_id == account_id
        if name_contains:
            where = and_(where, c.application_name.icontains(name_contains, autoescape=True))
        return self._page(Application, t.applications, where, [c.created_at, c.id], page, size)

    # -- calls --------------------------------------------------------------------------------------

    def insert_call(self, call: Call) -> None:
        self.conn.execute(prebuilt("insert:calls", t.calls.insert), to_row(call))

    def update_call(self, call: Call) -> None:
        self.conn.execute(_update_by(t.calls, "call_control_id"), {**to_row(call), "pk_": call.call_control_id})

    def get_call(self, account_id: str, call_control_id: str, *, lock: bool = False) -> Call | None:
        stmt = _lookup(t.calls, "get_call", lock and self._lock_rows, call_control_id="cid", account_id="acct")
        first = self.conn.execute(stmt, {"cid": call_control_id, "acct": account_id}).first()
        return None if first is None else from_row(Call, first)

    def get_call_any_account(self, call_control_id: str) -> Call | None:
        stmt = _lookup(t.calls, "call_any_account", False, call_control_id="cid")
        first = self.conn.execute(stmt, {"cid": call_control_id}).first()
        return None if first is None else from_row(Call, first)

    def account_of_job(self, job_id: str) -> str | None:
        """The account a media job belongs to (facts from the media plane name only the job)."""
        stmt = prebuilt("account_of_job", lambda: select(t.media_jobs.c.account_id).where(
            t.media_jobs.c.id == bindparam("id")))
        account: str | None = self.conn.execute(stmt, {"id": job_id}).scalar()
        return account

    def live_calls_of_node(self, node_id: str) -> list[Call]:
        c = t.calls.c
        stmt = select(t.calls).where(and_(c.node_id == node_id, t.LIVE_CALL))
        return self._all(Call, stmt)

    def live_calls_of_session(self, account_id: str, call_session_id: str) -> list[Call]:
        c = t.calls.c
        stmt = select(t.calls).where(
            and_(c.account_id == account_id, c.call_session_id == call_session_id, c.state != CallState.ENDED.value)
        )
        return self._all(Call, stmt)

    def list_active_calls(self, account_id: str, connection_id: str, page: int, size: int) -> tuple[
        list[Call], int
    ]:
        c = t.calls.c
        where = and_(c.account_id == account_id, c.connection_id == connection_id, t.LIVE_CALL)
        return self._page(Call, t.calls, where, [c.created_at, c.call_control_id], page, size)

    # -- outbox, timers, command ids ----------------------------------------------------------------

    def add_event(self, ev: OutboundEvent, now: float, owner: str | None = None) -> int:
        """Append a webhook to the outbox; returns its outbox id (delivery order). ``owner``: the node whose
        dispatcher delivers it."""
        row = {
            "event_id": ev.id, "account_id": ev.account_id, "event_type": ev.event_type,
            "occurred_at": ev.occurred_at, "payload": ev.payload, "occurred_at_in_payload": ev.occurred_at_in_payload,
            "url": ev.url, "failover_url": ev.failover_url, "method": ev.method, "timeout_secs": ev.timeout_secs,
            "order_key": ev.order_key, "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
            "owner": owner,
        }
        result = self.conn.execute(prebuilt("insert:outbox", t.outbox.insert), row)
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def add_timer(self, timer: Timer) -> None:
        row = to_row(timer)
        del row["id"]
        self.conn.execute(prebuilt("insert:timers", t.timers.insert), row)

    def cancel_timers(self, kinds: str | Sequence[str], ref: str) -> None:
        """Delete the timers of ``ref`` of any of ``kinds`` (a call's end cancels all its kinds at once)."""
        c = t.timers.c
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        names = [f"k{i}" for i in range(len(kinds))]
        stmt = prebuilt(f"cancel_timers:{len(kinds)}", lambda: delete(t.timers).where(
            c.ref == bindparam("r"), c.kind.in_([bindparam(n) for n in names])))
        self.conn.execute(stmt, {"r": ref, **dict(zip(names, kinds, strict=True))})

    def take_timer(self, timer: Timer) -> bool:
        """Delete a due timer; False if another worker took it or it was cancelled meanwhile.

        Matched on every field, not the id alone: SQLite may give a new timer the id of one just
        deleted, and a stale id must not take the newer timer."""
        c = t.timers.c
        stmt = prebuilt("take_timer", lambda: delete(t.timers).where(and_(
            c.id == bindparam("id"), c.kind == bindparam("kind"), c.ref == bindparam("ref"),
            c.due_at == bindparam("due"))))
        params = {"id": timer.id, "kind": timer.kind, "ref": timer.ref, "due": timer.due_at}
        return int(self.conn.execute(stmt, params).rowcount) == 1

    def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        c = t.timers.c
        stmt = prebuilt("due_timers", lambda: select(t.timers).where(c.due_at <= bindparam("now"))
                        .order_by(c.due_at, c.id).limit(bindparam("limit_")))
        return [from_row(Timer, r) for r in self.conn.execute(stmt, {"now": now, "limit_": limit})]

    def soonest_timers(self, limit: int) -> list[Timer]:
        """The ``limit`` timers due soonest, due or not."""
        c = t.timers.c
        stmt = prebuilt("soonest_timers", lambda: select(t.timers).order_by(c.due_at, c.id)
                        .limit(bindparam("limit_")))
        return [from_row(Timer, r) for r in self.conn.execute(stmt, {"limit_": limit})]

    def next_timer_due(self) -> float | None:
        value = self.conn.execute(prebuilt("next_timer", lambda: select(func.min(t.timers.c.due_at)))).scalar()
        return None if value is None else float(value)

    def remember_command(
        self, account_id: str, scope: str, command_id: str, now: float, window: float
    ) -> tuple[bool, str | None]:
        """Record ``command_id`` for ``scope``: (True, None) if new, (False, earlier result) if it was
        already executed within ``window`` seconds."""
        c = t.command_ids.c
        key = and_(c.account_id == account_id, c.scope == scope, c.command_id == command_id)
        seen_stmt = self._locked(select(c.created_at, c.result).where(key), True)
        seen = self.conn.execute(seen_stmt).first()
        if seen is None:
            # Two requests with the same id at the same moment: exactly one insert wins, the other sees its row.
            row = {"account_id": account_id, "scope": scope, "command_id": command_id, "created_at": now}
            dialect_insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
            inserted = dialect_insert(t.command_ids).values(row).on_conflict_do_nothing().returning(c.command_id)
            if self.conn.execute(inserted).first() is not None:
                return True, None
            seen = self.conn.execute(seen_stmt).first()
            assert seen is not None
        if now - float(seen[0]) < window:
            return False, seen[1]
        self.conn.execute(update(t.command_ids).where(key).values(created_at=now, result=None))
        return True, None

    def set_command_result(self, account_id: str, scope: str, command_id: str, result: str) -> None:
        c = t.command_ids.c
        key = and_(c.account_id == account_id, c.scope == scope, c.command_id == command_id)
        self.conn.execute(update(t.command_ids).where(key).values(result=result))

    def forget_commands_before(self, cutoff: float) -> None:
        stmt = prebuilt("forget_commands", lambda: delete(t.command_ids).where(
            t.command_ids.c.created_at < bindparam("cutoff")))
        self.conn.execute(stmt, {"cutoff": cutoff})
