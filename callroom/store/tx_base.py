"""The base of the store's unit of work (``tx.Tx``): row <-> record conversion and the shared helpers.

Records and rows share field names (see ``schema.py``), so conversion is generic: enums are stored as
their value, JSON columns hold lists and dicts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Select, Table, bindparam, func, select, update

from callroom.model.records import (
    Application,
    Call,
    Conference,
    Participant,
)
from callroom.model.states import CallState, ConferenceStatus, ParticipantStatus
from callroom.store.sql import Connection, prebuilt

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
_ENUM_MEMBERS: dict[type[Any], tuple[tuple[str, dict[Any, Enum]], ...]] = {}


def _enum_members(cls: type[Any]) -> tuple[tuple[str, dict[Any, Enum]], ...]:
    """(field, value -> member) for each enum field of ``cls``: a dict lookup instead of calling the enum."""
    found = _ENUM_MEMBERS.get(cls)
    if found is None:
        found = _ENUM_MEMBERS[cls] = tuple((name, {m.value: m for m in enum})
                                           for name, enum in _ENUM_FIELDS.get(cls, {}).items())  # fmt: skip
    return found


def from_row(cls: type[R], row: Any) -> R:
    columns: tuple[str, ...] = row._fields
    if columns == _field_names(cls):  # a whole-table select: columns are the fields, in order
        rec = cls(*row)
        for name, members in _enum_members(cls):
            value = getattr(rec, name)
            if value is not None:
                setattr(rec, name, members[value])
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


def _lookup(table: Table, key: str, locked: bool, **columns: str) -> Any:
    """A prebuilt SELECT of ``table`` (cached as ``key``) where each of ``columns`` equals the bind parameter
    it names, with ``FOR UPDATE`` if ``locked``."""

    def build() -> Any:
        stmt = select(table).where(*(table.c[col] == bindparam(param) for col, param in columns.items()))
        return stmt.with_for_update() if locked else stmt

    return prebuilt(f"{key}:{locked}", build)


def _update_by(table: Table, pk: str) -> Any:
    return prebuilt(f"update:{table.name}", lambda: update(table).where(table.c[pk] == bindparam("pk_")))


class TxBase:
    """One database transaction's connection and what every part of ``Tx`` shares."""

    def __init__(self, conn: Connection, *, lock_rows: bool) -> None:
        self.conn = conn
        self._lock_rows = lock_rows
        self._webhook_apps: dict[str, Application | None] = {}  # see ``Tx.application_for_webhooks``

    @property
    def rows_can_change(self) -> bool:
        """Whether a row read in this transaction may be changed by another before it is read again
        (PostgreSQL, unless locked). On SQLite a transaction reads one snapshot, and a writing one holds the
        database's one write lock from its start: what it read stays as read."""
        return self.conn.dialect.name != "sqlite"

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

