"""The store's unit of work: typed reads and writes of control-plane records inside one transaction.

Records and rows share field names (see ``schema.py``), so conversion is generic: enums are stored as
their value, JSON columns hold lists and dicts. Every query that can see tenant data filters on
``account_id``; nothing here returns another account's rows.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

import orjson
from sqlalchemy import ARRAY, Select, String, Table, and_, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from callroom.control.records import (
    Account,
    Application,
    Call,
    Conference,
    MixMember,
    OutboundEvent,
    Participant,
    Queue,
    QueueEntry,
    Timer,
)
from callroom.control.states import CallState, ConferenceStatus, ParticipantStatus
from callroom.store import schema as t
from callroom.store.sql import Connection, Result, prebuilt

R = TypeVar("R")

_ENUM_FIELDS: dict[type[Any], dict[str, type[Enum]]] = {
    Call: {"state": CallState},
    Conference: {"status": ConferenceStatus},
    Participant: {"status": ParticipantStatus},
}


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def to_row(rec: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in _field_names(type(rec)):
        value = getattr(rec, name)
        row[name] = value.value if isinstance(value, Enum) else value
    return row


_ROW_PLANS: dict[tuple[type[Any], tuple[str, ...]], tuple[tuple[int, str], ...]] = {}


def from_row(cls: type[R], row: Any) -> R:
    columns: tuple[str, ...] = row._fields
    if columns == _field_names(cls):  # a whole-table select: columns are the fields, in order
        rec = cls(*row)
        for name, enum in _ENUM_FIELDS.get(cls, {}).items():
            value = getattr(rec, name)
            if value is not None:
                setattr(rec, name, enum(value))
        return rec
    plan = _ROW_PLANS.get((cls, columns))
    if plan is None:
        wanted = set(_field_names(cls))
        plan = _ROW_PLANS[(cls, columns)] = tuple((i, c) for i, c in enumerate(columns) if c in wanted)
    values = tuple(row)
    kwargs = {name: values[i] for i, name in plan}
    enums = _ENUM_FIELDS.get(cls, {})
    for name, enum in enums.items():
        value = kwargs.get(name)
        if value is not None:
            kwargs[name] = enum(value)
    return cls(**kwargs)


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as they are now (JSON values copied: records may change them in place)."""
    return {k: _json_copy(v) if isinstance(v, list | dict) else v for k, v in row.items()}


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON column's value; through orjson it costs a fifth of ``copy.deepcopy``."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # not plain JSON (say, a tuple or a non-text key): copy it the slow way
        return copy.deepcopy(value)


_MIX_MEMBERS = prebuilt("mix_members", lambda: select(
    t.participants.c.id, t.participants.c.call_control_id, t.participants.c.muted, t.participants.c.on_hold,
    t.participants.c.supervisor_role, t.participants.c.whisper_call_control_ids, t.participants.c.hold_audio_url,
    t.participants.c.hold_media_name, t.participants.c.updated_at,
).where(t.participants.c.conference_id == bindparam("conf"), t.participants.c.status != ParticipantStatus.LEFT.value)
    .order_by(t.participants.c.created_at, t.participants.c.id))


_ENTRIES_BY_QUEUE_NAME = prebuilt("entries_by_queue_name", lambda: select(t.queue_entries).join(
    t.queues, t.queues.c.id == t.queue_entries.c.queue_id
).where(t.queues.c.account_id == bindparam("acct"), t.queues.c.name == bindparam("name"))
    .order_by(t.queue_entries.c.seq))


def _queue_by_name(locked: bool) -> Any:
    c = t.queues.c

    def build() -> Any:
        stmt = select(t.queues).where(c.account_id == bindparam("acct"), c.name == bindparam("name"))
        return stmt.with_for_update() if locked else stmt

    return prebuilt(f"get_queue:{locked}", build)


def _update_by(table: Table, pk: str) -> Any:
    return prebuilt(f"update:{table.name}", lambda: update(table).where(table.c[pk] == bindparam("pk_")))


class Tx:
    """Reads and writes within one database transaction."""

    _members_read: tuple[str, Result] | None = None  # see ``get_conference``
    _entries_read: tuple[str, Result] | None = None  # see ``get_queue``
    _queue_ahead: tuple[tuple[str, str, bool], Result, Result] | None = None  # see ``read_queue_ahead``

    def __init__(self, conn: Connection, *, lock_rows: bool) -> None:
        self.conn = conn
        self._lock_rows = lock_rows
        # Calls as this transaction read or last wrote them: an update writes only the columns that
        # changed (SQLite then leaves the indexes on the others alone), or nothing at all.
        self._calls_seen: dict[str, tuple[Call, dict[str, Any]]] = {}

    def _locked(self, stmt: Select[Any], lock: bool) -> Select[Any]:
        return stmt.with_for_update() if lock and self._lock_rows else stmt

    def _one(self, cls: type[R], stmt: Select[Any]) -> R | None:
        row = self.conn.execute(stmt).first()
        return None if row is None else from_row(cls, row)

    def _all(self, cls: type[R], stmt: Select[Any]) -> list[R]:
        return [from_row(cls, row) for row in self.conn.execute(stmt)]

    def _page(
        self, cls: type[R], table: Table, where: Any, order: Sequence[Any], page: int, size: int
    ) -> tuple[list[R], int]:
        # Both statements are sent before either result is read: one round trip on PostgreSQL.
        total = self.conn.execute(select(func.count()).select_from(table).where(where))
        found = self.conn.execute(select(table).where(where).order_by(*order).limit(size).offset((page - 1) * size))
        return [from_row(cls, r) for r in found], int(total.scalar_one())

    def _prebuilt_page(
        self, cls: type[R], key: str, table: Table, where: Callable[[], Any], order: Callable[[], Sequence[Any]],
        params: dict[str, Any], page: int, size: int,
    ) -> tuple[list[R], int]:
        """``_page`` for a query made once per ``key`` (its filters as bind parameters)."""
        return self._prebuilt_page_read(cls, key, table, where, order, params, page, size)()

    def _prebuilt_page_read(
        self, cls: type[R], key: str, table: Table, where: Callable[[], Any], order: Callable[[], Sequence[Any]],
        params: dict[str, Any], page: int, size: int,
    ) -> Callable[[], tuple[list[R], int]]:
        count = prebuilt(f"count:{key}", lambda: select(func.count()).select_from(table).where(where()))
        rows = prebuilt(f"page:{key}", lambda: select(table).where(where()).order_by(*order())
                        .limit(bindparam("limit_")).offset(bindparam("offset_")))
        total = self.conn.execute(count, params)
        found = self.conn.execute(rows, {**params, "limit_": size, "offset_": (page - 1) * size})
        return lambda: ([from_row(cls, r) for r in found], int(total.scalar_one()))

    # -- settings -----------------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        value: str | None = self.conn.execute(select(t.settings.c.value).where(t.settings.c.key == key)).scalar()
        return value

    def put_setting(self, key: str, value: str) -> None:
        if self.get_setting(key) is None:
            self.conn.execute(insert(t.settings).values(key=key, value=value))
        else:
            self.conn.execute(update(t.settings).where(t.settings.c.key == key).values(value=value))

    # -- accounts and keys --------------------------------------------------------------------------

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

    @staticmethod
    def application_in(read: Result) -> Application | None:
        row = read.first()
        return None if row is None else from_row(Application, row)

    def application_for_sip_user(self, user: str) -> Application | None:
        """The application an incoming SIP call to ``user@node`` is for: by its id, or by the
        ``inbound.sip_subdomain`` it claims. (A scan: fine for the applications of one node.)"""
        if not user:
            return None
        found = self._one(Application, select(t.applications).where(t.applications.c.id == user))
        if found is not None:
            return found
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
        row = to_row(call)
        self.conn.execute(prebuilt("insert:calls", t.calls.insert), row)
        self._calls_seen[call.call_control_id] = (call, _snapshot(row))

    def update_call(self, call: Call) -> None:
        row = to_row(call)
        seen = self._calls_seen.get(call.call_control_id)
        if seen is not None and seen[0] is call:
            before = seen[1]
            changes = {k: v for k, v in row.items() if before[k] != v}
            if not changes:
                return
        else:
            changes = row
        self.conn.execute(_update_by(t.calls, "call_control_id"), {**changes, "pk_": call.call_control_id})
        self._calls_seen[call.call_control_id] = (call, _snapshot(row))

    def get_call(self, account_id: str, call_control_id: str, *, lock: bool = False) -> Call | None:
        locked = lock and self._lock_rows
        c = t.calls.c

        def build() -> Any:
            stmt = select(t.calls).where(c.call_control_id == bindparam("cid"), c.account_id == bindparam("acct"))
            return stmt.with_for_update() if locked else stmt

        row = self.conn.execute(prebuilt(f"get_call:{locked}", build), {"cid": call_control_id, "acct": account_id})
        first = row.first()
        if first is None:
            return None
        call = from_row(Call, first)
        self._calls_seen[call.call_control_id] = (call, _snapshot(to_row(call)))
        return call

    def get_call_any_account(self, call_control_id: str) -> Call | None:
        return self._one(Call, select(t.calls).where(t.calls.c.call_control_id == call_control_id))

    def live_calls_of_node(self, node_id: str) -> list[Call]:
        c = t.calls.c
        stmt = select(t.calls).where(and_(c.node_id == node_id, c.state != CallState.ENDED.value))
        return self._all(Call, stmt)

    def live_calls_of_session(self, account_id: str, call_session_id: str) -> list[Call]:
        c = t.calls.c
        stmt = select(t.calls).where(
            and_(c.account_id == account_id, c.call_session_id == call_session_id, c.state != CallState.ENDED.value)
        )
        return self._all(Call, stmt)

    # -- conferences --------------------------------------------------------------------------------

    def insert_conference(self, conf: Conference) -> None:
        self.conn.execute(prebuilt("insert:conferences", t.conferences.insert), to_row(conf))

    def update_conference(self, conf: Conference) -> None:
        self.conn.execute(_update_by(t.conferences, "id"), {**to_row(conf), "pk_": conf.id})

    def get_conference(
        self, account_id: str, conference_id: str, *, lock: bool = False, with_members: bool = False
    ) -> Conference | None:
        """``with_members``: also read ``mix_members`` of a conference with this id, right after the lock is
        taken (on PostgreSQL in the same round trip); a later ``mix_members`` call takes that result."""
        locked = lock and self._lock_rows
        c = t.conferences.c

        def build() -> Any:
            stmt = select(t.conferences).where(c.id == bindparam("id"), c.account_id == bindparam("acct"))
            return stmt.with_for_update() if locked else stmt

        first = self.conn.execute(prebuilt(f"get_conf:{locked}", build), {"id": conference_id, "acct": account_id})
        if with_members:
            self._members_read = (conference_id, self.conn.execute(_MIX_MEMBERS, {"conf": conference_id}))
        row = first.first()
        return None if row is None else from_row(Conference, row)

    def read_conference(self, account_id: str, conference_id: str, *, lock: bool = False) -> Result:
        """``get_conference`` sent now and looked at later (``conference_in``)."""
        locked = lock and self._lock_rows
        c = t.conferences.c

        def build() -> Any:
            stmt = select(t.conferences).where(c.id == bindparam("id"), c.account_id == bindparam("acct"))
            return stmt.with_for_update() if locked else stmt

        return self.conn.execute(prebuilt(f"get_conf:{locked}", build), {"id": conference_id, "acct": account_id})

    @staticmethod
    def conference_in(read: Result) -> Conference | None:
        row = read.first()
        return None if row is None else from_row(Conference, row)

    def active_conference_by_name(self, account_id: str, name: str, *, lock: bool = False) -> Conference | None:
        c = t.conferences.c
        stmt = (
            select(t.conferences)
            .where(and_(c.account_id == account_id, c.name == name, c.status != ConferenceStatus.COMPLETED.value))
            .order_by(c.created_at.desc())
            .limit(1)
        )
        return self._one(Conference, self._locked(stmt, lock))

    def list_conferences(
        self, account_id: str, page: int, size: int, name: str | None, status: str | None
    ) -> tuple[list[Conference], int]:
        c = t.conferences.c
        where = c.account_id == account_id
        if name is not None:
            where = and_(where, c.name == name)
        if status is not None:
            where = and_(where, c.status == status)
        return self._page(Conference, t.conferences, where, [c.expires_at.desc(), c.id], page, size)

    # -- participants -------------------------------------------------------------------------------

    def insert_participant(self, p: Participant) -> None:
        self._members_read = None  # a read made before this write is stale
        self.conn.execute(prebuilt("insert:participants", t.participants.insert), to_row(p))

    def update_participant(self, p: Participant) -> None:
        self.update_participants([p])

    def update_participants(self, ps: Sequence[Participant]) -> None:
        self._members_read = None
        if ps:
            self.conn.execute(_update_by(t.participants, "id"), [{**to_row(p), "pk_": p.id} for p in ps])

    def set_participant_flags(self, ids: Sequence[str], values: dict[str, Any]) -> None:
        """The same columns set to the same values (what mute/unmute/hold/unhold change) for many
        participants: one statement on PostgreSQL (an executemany would be one per participant there)."""
        self._members_read = None
        if not ids:
            return
        columns = tuple(sorted(values))
        c = t.participants.c
        given = {f"v_{k}": v for k, v in values.items()}
        present = c.status != ParticipantStatus.LEFT.value  # one who has left meanwhile stays as they left
        if self.conn.dialect.name == "postgresql":
            stmt = prebuilt(f"participant_flags:pg:{columns}", lambda: update(t.participants).where(
                c.id == any_(bindparam("ids_", type_=ARRAY(String))), present
            ).values({k: bindparam(f"v_{k}") for k in columns}))
            self.conn.execute(stmt, {**given, "ids_": list(ids)})
            return
        stmt = prebuilt(f"participant_flags:{columns}", lambda: update(t.participants).where(
            c.id == bindparam("id_"), present).values({k: bindparam(f"v_{k}") for k in columns}))
        self.conn.execute(stmt, [{**given, "id_": i} for i in ids])

    def participants_of(self, conference_id: str, *, present_only: bool = True) -> list[Participant]:
        c = t.participants.c

        def build() -> Any:
            where = c.conference_id == bindparam("conf")
            if present_only:
                where = and_(where, c.status != ParticipantStatus.LEFT.value)
            return select(t.participants).where(where).order_by(c.created_at, c.id)

        rows = self.conn.execute(prebuilt(f"participants_of:{present_only}", build), {"conf": conference_id})
        return [from_row(Participant, r) for r in rows]

    def read_mix_members(self, conference_id: str) -> Result:
        """``mix_members`` sent now and looked at later (``mix_members_in``)."""
        return self.conn.execute(_MIX_MEMBERS, {"conf": conference_id})

    @staticmethod
    def mix_members_in(read: Result) -> list[MixMember]:
        return [MixMember(*r) for r in read]

    def mix_members(self, conference_id: str) -> list[MixMember]:
        """The present participants as the mix needs them, in joining order (``participants_of``'s)."""
        read, self._members_read = self._members_read, None
        if read is None or read[0] != conference_id:
            read = (conference_id, self.conn.execute(_MIX_MEMBERS, {"conf": conference_id}))
        return [MixMember(*r) for r in read[1]]

    def get_participant(self, conference_id: str, id_or_label: str) -> Participant | None:
        c = t.participants.c
        stmt = (
            select(t.participants)
            .where(and_(c.conference_id == conference_id, (c.id == id_or_label) | (c.label == id_or_label)))
            .order_by(c.created_at.desc())
            .limit(1)
        )
        return self._one(Participant, stmt)

    def present_participant_for_call(self, call_control_id: str) -> Participant | None:
        c = t.participants.c
        stmt = prebuilt("present_participant", lambda: select(t.participants).where(
            c.call_control_id == bindparam("cid"), c.status != ParticipantStatus.LEFT.value))
        row = self.conn.execute(stmt, {"cid": call_control_id}).first()
        return None if row is None else from_row(Participant, row)

    def list_participants(
        self, conference_id: str, page: int, size: int, filters: dict[str, bool]
    ) -> tuple[list[Participant], int]:
        return self.read_participants(conference_id, page, size, filters)()

    def read_participants(
        self, conference_id: str, page: int, size: int, filters: dict[str, bool]
    ) -> Callable[[], tuple[list[Participant], int]]:
        """``list_participants`` sent now, looked at when the returned function is called (so that it can
        travel with another read)."""
        c = t.participants.c
        flags = tuple(k for k in ("muted", "on_hold") if k in filters)
        whispering = filters.get("whispering")

        def where() -> Any:
            cond = c.conference_id == bindparam("conf")
            for k in flags:
                cond = and_(cond, c[k] == bindparam(k))
            if whispering is not None:
                role = c.supervisor_role == "whisper"
                cond = and_(cond, role if whispering else ~role)
            return cond

        params: dict[str, Any] = {"conf": conference_id, **{k: filters[k] for k in flags}}
        key = f"participants:{','.join(flags)}:{whispering}"
        return self._prebuilt_page_read(Participant, key, t.participants, where, lambda: [c.created_at, c.id],
                                        params, page, size)

    # -- queues -------------------------------------------------------------------------------------

    def insert_queue(self, q: Queue) -> None:
        self._queue_ahead = None
        self.conn.execute(insert(t.queues).values(to_row(q)))

    def update_queue(self, q: Queue) -> None:
        self._queue_ahead = None
        self.conn.execute(update(t.queues).where(t.queues.c.id == q.id).values(to_row(q)))

    def delete_queue(self, q: Queue) -> None:
        self._queue_ahead = None
        self.conn.execute(delete(t.queues).where(t.queues.c.id == q.id))

    def get_queue(self, account_id: str, name: str, *, lock: bool = False, with_entries: bool = False) -> Queue | None:
        """``with_entries``: also read the queue's entries right after the lock is taken (on PostgreSQL in
        the same round trip); a later ``queue_entries`` call for this queue takes that result."""
        locked = lock and self._lock_rows
        params = {"acct": account_id, "name": name}
        ahead, self._queue_ahead = self._queue_ahead, None
        entries: Result | None
        if ahead is not None and ahead[0] == (account_id, name, locked) and with_entries:
            found, entries = ahead[1], ahead[2]
        else:
            found = self.conn.execute(_queue_by_name(locked), params)
            entries = self.conn.execute(_ENTRIES_BY_QUEUE_NAME, params) if with_entries else None
        row = found.first()
        if row is None:
            return None
        q = from_row(Queue, row)
        if entries is not None:
            self._entries_read = (q.id, entries)
        return q

    def read_queue_ahead(self, account_id: str, name: str) -> None:
        """Send now what ``get_queue(account_id, name, lock=True, with_entries=True)`` will read: the queue's
        row (locked) and its entries, to travel with the round trip the command makes first."""
        locked = self._lock_rows
        params = {"acct": account_id, "name": name}
        self._queue_ahead = ((account_id, name, locked), self.conn.execute(_queue_by_name(locked), params),
                             self.conn.execute(_ENTRIES_BY_QUEUE_NAME, params))

    def get_queue_by_id(self, queue_id: str) -> Queue | None:
        stmt = prebuilt("queue_by_id", lambda: select(t.queues).where(t.queues.c.id == bindparam("id")))
        row = self.conn.execute(stmt, {"id": queue_id}).first()
        return None if row is None else from_row(Queue, row)

    def list_queues(self, account_id: str, page: int, size: int) -> tuple[list[Queue], int]:
        c = t.queues.c
        return self._page(Queue, t.queues, c.account_id == account_id, [c.created_at, c.id], page, size)

    def insert_queue_entry(self, e: QueueEntry, *, numbered: bool = True) -> QueueEntry:
        """``numbered``: give ``e`` the arrival number the store assigned (on PostgreSQL that waits for the
        server; without it the insert travels with the next round trip and ``e.seq`` stays 0)."""
        self._entries_read = self._queue_ahead = None  # a read made before this write is stale
        row = to_row(e)
        del row["seq"]
        result = self.conn.execute(prebuilt("insert:queue_entries", t.queue_entries.insert), row)
        if numbered:
            pk = result.inserted_primary_key
            assert pk is not None
            e.seq = int(pk[0])
        return e

    def update_queue_entry(self, e: QueueEntry) -> None:
        self._entries_read = self._queue_ahead = None
        self.conn.execute(_update_by(t.queue_entries, "seq"), {**to_row(e), "pk_": e.seq})

    def delete_queue_entry(self, e: QueueEntry) -> None:
        self._entries_read = self._queue_ahead = None
        stmt = prebuilt("delete_entry", lambda: delete(t.queue_entries).where(t.queue_entries.c.seq == bindparam("s")))
        self.conn.execute(stmt, {"s": e.seq})

    def queue_entries(self, queue_id: str) -> list[QueueEntry]:
        read, self._entries_read = self._entries_read, None
        if read is None or read[0] != queue_id:
            c = t.queue_entries.c
            stmt = prebuilt("entries", lambda: select(t.queue_entries).where(c.queue_id == bindparam("q"))
                            .order_by(c.seq))
            read = (queue_id, self.conn.execute(stmt, {"q": queue_id}))
        return [from_row(QueueEntry, r) for r in read[1]]

    def queue_entry_for_call(self, call_control_id: str) -> QueueEntry | None:
        c = t.queue_entries.c
        stmt = prebuilt("entry_for_call", lambda: select(t.queue_entries).where(c.call_control_id == bindparam("cid")))
        row = self.conn.execute(stmt, {"cid": call_control_id}).first()
        return None if row is None else from_row(QueueEntry, row)

    def queue_sizes(self, queue_ids: Sequence[str]) -> dict[str, tuple[int, float]]:
        """For each queue: (number of listed calls, sum of their enqueue times)."""
        if not queue_ids:
            return {}
        c = t.queue_entries.c
        if len(queue_ids) == 1:
            stmt = prebuilt("queue_size", lambda: select(c.queue_id, func.count(), func.sum(c.enqueued_at))
                            .where(c.queue_id == bindparam("q")).group_by(c.queue_id))
            rows = self.conn.execute(stmt, {"q": queue_ids[0]})
            return {r[0]: (int(r[1]), float(r[2] or 0.0)) for r in rows}
        rows = self.conn.execute(
            select(c.queue_id, func.count(), func.sum(c.enqueued_at)).where(c.queue_id.in_(queue_ids)).group_by(
                c.queue_id
            )
        )
        return {r[0]: (int(r[1]), float(r[2] or 0.0)) for r in rows}

    # -- outbox, timers, command ids ----------------------------------------------------------------

    def add_event(self, ev: OutboundEvent, now: float) -> int:
        """Append a webhook to the outbox; returns its outbox id (delivery order)."""
        row = {
            "event_id": ev.id, "account_id": ev.account_id, "event_type": ev.event_type,
            "occurred_at": ev.occurred_at, "payload": ev.payload, "occurred_at_in_payload": ev.occurred_at_in_payload,
            "url": ev.url, "failover_url": ev.failover_url, "method": ev.method, "timeout_secs": ev.timeout_secs,
            "order_key": ev.order_key, "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
        }
        result = self.conn.execute(prebuilt("insert:outbox", t.outbox.insert), row)
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def add_timer(self, timer: Timer) -> None:
        row = to_row(timer)
        del row["id"]
        self.conn.execute(prebuilt("insert:timers", t.timers.insert), row)

    def cancel_timers(self, kind: str, ref: str) -> None:
        c = t.timers.c
        stmt = prebuilt(
            "cancel_timers", lambda: delete(t.timers).where(c.kind == bindparam("k"), c.ref == bindparam("r"))
        )
        self.conn.execute(stmt, {"k": kind, "r": ref})

    def take_timer(self, timer: Timer) -> bool:
        """Delete a due timer; False if another worker took it or it was cancelled meanwhile.

        Matched on every field, not the id alone: SQLite may give a new timer the id of one just
        deleted, and a stale id must not take the newer timer."""
        c = t.timers.c
        where = and_(c.id == timer.id, c.kind == timer.kind, c.ref == timer.ref, c.due_at == timer.due_at)
        return int(self.conn.execute(delete(t.timers).where(where)).rowcount) == 1

    def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        c = t.timers.c
        stmt = prebuilt("due_timers", lambda: select(t.timers).where(c.due_at <= bindparam("now"))
                        .order_by(c.due_at, c.id).limit(bindparam("limit_")))
        return [from_row(Timer, r) for r in self.conn.execute(stmt, {"now": now, "limit_": limit})]

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
