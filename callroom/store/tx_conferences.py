"""The store's reads and writes of conferences and their participants (part of ``tx.Tx``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import ARRAY, String, and_, any_, bindparam, func, literal_column, select, update

from callroom.model.records import (
    Conference,
    Participant,
)
from callroom.model.states import ConferenceStatus, ParticipantStatus
from callroom.store import schema as t
from callroom.store.sql import Result, prebuilt
from callroom.store.tx_base import TxBase, _lookup, _update_by, from_row, to_row


class ConferenceTx(TxBase):
    """Conferences and their participants."""

    # -- conferences --------------------------------------------------------------------------------

    def insert_conference(self, conf: Conference) -> None:
        self.conn.execute(prebuilt("insert:conferences", t.conferences.insert), to_row(conf))

    def update_conference(self, conf: Conference) -> None:
        self.conn.execute(_update_by(t.conferences, "id"), {**to_row(conf), "pk_": conf.id})

    def get_conference(self, account_id: str, conference_id: str, *, lock: bool = False) -> Conference | None:
        return self.conference_in(self.read_conference(account_id, conference_id, lock=lock))

    def read_conference(self, account_id: str, conference_id: str, *, lock: bool = False) -> Result:
        """``get_conference`` sent now and looked at later (``conference_in``)."""
        locked = lock and self._lock_rows
        stmt = _lookup(t.conferences, "get_conf", locked, id="id", account_id="acct")
        return self.conn.execute(stmt, {"id": conference_id, "acct": account_id})

    @staticmethod
    def conference_in(read: Result) -> Conference | None:
        row = read.first()
        return None if row is None else from_row(Conference, row)

    def active_conference_by_name(self, account_id: str, name: str, *, lock: bool = False) -> Conference | None:
        c = t.conferences.c
        locked = lock and self._lock_rows

        def build() -> Any:
            stmt = (select(t.conferences)
                    .where(and_(c.account_id == bindparam("acct"), c.name == bindparam("name"),
                                c.status != ConferenceStatus.COMPLETED.value))
                    .order_by(c.created_at.desc())
                    .limit(1))  # fmt: skip
            return stmt.with_for_update() if locked else stmt

        first = self.conn.execute(prebuilt(f"conference_by_name:{locked}", build),
                                  {"acct": account_id, "name": name}).first()  # fmt: skip
        return None if first is None else from_row(Conference, first)

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
        self.conn.execute(prebuilt("insert:participants", t.participants.insert), to_row(p))

    def update_participant(self, p: Participant) -> None:
        self.update_participants([p])

    def update_participants(self, ps: Sequence[Participant]) -> None:
        if ps:
            self.conn.execute(_update_by(t.participants, "id"), [{**to_row(p), "pk_": p.id} for p in ps])

    def set_participant_flags(self, ids: Sequence[str], values: dict[str, Any]) -> None:
        """The same columns set to the same values (what mute/unmute/hold/unhold change) for many
        participants in one statement (an executemany would be one per participant)."""
        if not ids:
            return
        columns = tuple(sorted(values))
        c = t.participants.c
        given = {f"v_{k}": v for k, v in values.items()}

        def present() -> Any:  # one who has left meanwhile stays as they left
            return c.status != ParticipantStatus.LEFT.value

        if self.conn.dialect.name == "postgresql":
            stmt = prebuilt(f"participant_flags:pg:{columns}", lambda: update(t.participants).where(
                c.id == any_(bindparam("ids_", type_=ARRAY(String))), present()
            ).values({k: bindparam(f"v_{k}") for k in columns}))
            self.conn.execute(stmt, {**given, "ids_": list(ids)})
            return
        # SQLite: the ids as one JSON array parameter (an executemany stepped the UPDATE once per id).
        stmt = prebuilt(f"participant_flags:{columns}", lambda: update(t.participants).where(
            c.id.in_(select(literal_column("value")).select_from(func.json_each(bindparam("ids_")))), present()
        ).values({k: bindparam(f"v_{k}") for k in columns}))
        self.conn.execute(stmt, {**given, "ids_": orjson.dumps(list(ids)).decode()})

    def participants_of(self, conference_id: str, *, present_only: bool = True) -> list[Participant]:
        c = t.participants.c

        def build() -> Any:
            where = c.conference_id == bindparam("conf")
            if present_only:
                where = and_(where, c.status != ParticipantStatus.LEFT.value)
            return select(t.participants).where(where).order_by(c.created_at, c.id)

        rows = self.conn.execute(prebuilt(f"participants_of:{present_only}", build), {"conf": conference_id})
        return [from_row(Participant, r) for r in rows]

    def get_participant(self, conference_id: str, id_or_label: str) -> Participant | None:
        c = t.participants.c
        stmt = prebuilt("participant_by_id_or_label", lambda: (
            select(t.participants)
            .where(and_(c.conference_id == bindparam("conf"),
                        (c.id == bindparam("key")) | (c.label == bindparam("key"))))
            .order_by(c.created_at.desc())
            .limit(1)))  # fmt: skip
        first = self.conn.execute(stmt, {"conf": conference_id, "key": id_or_label}).first()
        return None if first is None else from_row(Participant, first)

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

