"""Running SQLAlchemy Core statements straight on the database driver.

The store builds its statements with SQLAlchemy Core (tables in ``schema.py``; the dialect's SQL, bind
casts, JSON and boolean conversion) but does not execute them through SQLAlchemy's ``Connection``: on a
small machine that costs ~150 us per transaction and ~70 us per statement (pool checkout, events,
cache-key generation, execution contexts, result metadata), several times SQLite's own work.

Here a statement is compiled into its SQL text, the order of its parameters and the driver-level
conversions of its parameters and result columns; executing it is then one driver call on SQLite, and
one statement queued in the transaction's ``pg_wire.PgSession`` on PostgreSQL (sent with the next round
trip; see ``Connection``). Statements made once with ``prebuilt()`` (the hot paths) keep their compiled
form per dialect and parameter keys, and are prepared on PostgreSQL; statements built fresh for a call
(cold paths) are compiled each time.

Offered is what the store uses: ``execute()`` with a mapping or a list of mappings; results with
``first``/``one``/``scalar``/``scalar_one``/``scalars``/``all``/iteration, ``rowcount`` and
``inserted_primary_key``; rows are tuples with attribute access, ``_fields`` and ``_mapping``.
"""

from __future__ import annotations

import collections
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from callroom.errors import Conflict, StoreError, UnstorableText
from callroom.store.pg_wire import Outcome, PgSession
from callroom.store.schema import metadata

Processor = Callable[[Any], Any] | None


def unique_constraint_named(columns: str) -> str | None:
    """The schema's name of the unique index or constraint over SQLite's ``table.a, table.b`` (SQLite names
    the columns of a refused unique write, not the index)."""
    names = [c.strip().split(".") for c in columns.split(",")]
    if not names or any(len(n) != 2 for n in names):
        return None
    table = metadata.tables.get(names[0][0])
    wanted = {n[1] for n in names}
    if table is None:
        return None
    for index in table.indexes:
        if index.unique and {c.name for c in index.columns} == wanted:
            return str(index.name)
    for constraint in table.constraints:
        cols = {c.name for c in getattr(constraint, "columns", ())}
        if cols == wanted and constraint.name:
            return str(constraint.name)
    return None


# -- statements made once -------------------------------------------------------------------------------

_PREBUILT: dict[str, Any] = {}
_PREBUILT_IDS: set[int] = set()


def prebuilt(key: str, build: Callable[[], Any]) -> Any:
    """A statement built once and reused, so that its compiled form can be kept."""
    stmt = _PREBUILT.get(key)
    if stmt is None:
        stmt = _PREBUILT[key] = build()
        _PREBUILT_IDS.add(id(stmt))  # it lives as long as the process: its id is never reused
    return stmt


# -- compiling ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Compiled:
    sql: str
    names: tuple[str, ...]  # parameters in the order of the SQL text (positional paramstyles)
    keys: tuple[str, ...] | None  # the names the driver expects (named paramstyles), else None
    defaults: dict[str, Any]  # values bound into the statement when it was built
    bind_procs: tuple[tuple[int, Callable[[Any], Any]], ...]  # (index in ``names``, driver conversion)
    fields: tuple[str, ...] | None  # result column names, when SQLAlchemy knows them
    types: tuple[Any, ...]  # result column types, when SQLAlchemy knows them
    is_insert: bool
    implicit_key: bool  # an INSERT whose RETURNING clause SQLAlchemy added for the new primary key
    # (column index, driver conversion) for the result columns that need one; some depend on the type
    # the driver reports, so they are found at the first execution (None until then).
    results: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None
    row: type[tuple[Any, ...]] | None = None
    # PostgreSQL (libpq's own placeholders): the SQL with $1, $2... and, for each, its index in ``names``.
    pg_sql: bytes = b""
    pg_index: tuple[int, ...] = ()
    prepare: bool = False  # a statement made once: prepared on each connection (PostgreSQL)

    def resolve_results(self, dialect: Dialect, description: Sequence[Sequence[Any]]) -> None:
        procs: tuple[Processor, ...] = ()
        if self.types:
            procs = tuple(
                t.dialect_impl(dialect).result_processor(dialect, d[1])
                for t, d in zip(self.types, description, strict=True)
            )
        self.results = tuple((i, p) for i, p in enumerate(procs) if p is not None)
        self.row = row_class(self.fields or tuple(d[0] for d in description))


def compile_statement(stmt: ClauseElement, dialect: Dialect, keys: Sequence[str], many: bool) -> Compiled:
    c: Any = stmt.compile(
        dialect=dialect,
        column_keys=list(keys) or None,
        for_executemany=many,
        compile_kwargs={"render_postcompile": True},
    )
    params: dict[str, Any] = dict(c.params)
    names = tuple(c.positiontup) if dialect.positional else tuple(params)
    escaped: dict[str, str] = getattr(c, "escaped_bind_names", None) or {}
    binds = []
    for name in names:
        bind = c.binds.get(name)
        binds.append(None if bind is None else bind.type.dialect_impl(dialect).bind_processor(dialect))
    # A parameter without a value (SQLAlchemy's REQUIRED symbol or None for a bare bindparam) must come
    # from the execution's parameters; a value given at build time is the default.
    defaults = {k: v for k, v in params.items() if v is not None and type(v).__name__ != "symbol"}
    # SQLAlchemy's compiled result description: (key, name, objects, type) per column. Its own cursor
    # results read the same list.
    columns = list(getattr(c, "_result_columns", ()))
    fields = tuple(col[0] for col in columns) if columns else None
    explicit = bool(getattr(stmt, "_returning", ()))
    driver_keys = None if dialect.positional else tuple(escaped.get(n, n) for n in names)
    pg_sql = b""
    pg_index: tuple[int, ...] = ()
    if dialect.name == "postgresql" and driver_keys is not None:
        pg_sql, pg_index = _numbered(c.string, driver_keys)
    return Compiled(
        sql=c.string,
        names=names,
        keys=driver_keys,
        defaults=defaults,
        bind_procs=tuple((i, p) for i, p in enumerate(binds) if p is not None),
        fields=fields,
        types=tuple(col[3] for col in columns),
        is_insert=bool(c.isinsert),
        implicit_key=bool(c.isinsert and c.returning and not explicit),
        pg_sql=pg_sql,
        pg_index=pg_index,
    )


_PYFORMAT = re.compile(r"%%|%\(([^)]+)\)s")


def _numbered(sql: str, keys: tuple[str, ...]) -> tuple[bytes, tuple[int, ...]]:
    """psycopg's ``%(name)s`` placeholders as libpq's ``$n`` (a name used twice is one parameter)."""
    position = {k: i for i, k in enumerate(keys)}
    order: list[int] = []
    numbers: dict[str, int] = {}

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return "%"
        if name not in numbers:
            numbers[name] = len(order) + 1
            order.append(position[name])
        return f"${numbers[name]}"

    return _PYFORMAT.sub(replace, sql).encode(), tuple(order)


_COMPILED: dict[tuple[int, str, tuple[str, ...], bool], Compiled] = {}


def _compiled(stmt: ClauseElement, dialect: Dialect, keys: tuple[str, ...], many: bool) -> Compiled:
    if id(stmt) not in _PREBUILT_IDS:
        return compile_statement(stmt, dialect, keys, many)
    cache_key = (id(stmt), dialect.name, keys, many)
    found = _COMPILED.get(cache_key)
    if found is None:
        found = _COMPILED[cache_key] = compile_statement(stmt, dialect, keys, many)
        found.prepare = True
    return found


# -- rows and results -----------------------------------------------------------------------------------

_ROW_CLASSES: dict[tuple[str, ...], type[tuple[Any, ...]]] = {}


def row_class(fields: tuple[str, ...]) -> type[tuple[Any, ...]]:
    """A tuple class with the column names as attributes, ``_fields`` and ``_mapping``."""
    cls = _ROW_CLASSES.get(fields)
    if cls is None:
        base: Any = collections.namedtuple("Row", fields, rename=True)  # type: ignore[misc]
        names = fields

        def mapping(self: tuple[Any, ...]) -> dict[str, Any]:
            return dict(zip(names, self, strict=True))

        cls = type("Row", (base,), {"__slots__": (), "_mapping": property(mapping), "_fields": names})
        _ROW_CLASSES[fields] = cls
    return cls


class Result:
    """A statement's rows, row count and new primary key. On a pipelined connection (PostgreSQL) the
    statement may still be on its way: the first look at any of them waits for the pipeline's results."""

    __slots__ = ("_key", "_owner", "_rowcount", "_rows")

    def __init__(self, rows: list[Any], rowcount: int, inserted_primary_key: tuple[Any, ...] | None) -> None:
        self._rows = rows
        self._rowcount = rowcount
        self._key = inserted_primary_key
        self._owner: Connection | None = None  # set while the result is still in the pipeline

    @property
    def ready(self) -> bool:
        """Whether the rows are in (looking at them costs no round trip)."""
        return self._owner is None

    @property
    def rows(self) -> list[Any]:
        if self._owner is not None:
            self._owner.sync()
        return self._rows

    @property
    def rowcount(self) -> int:
        if self._owner is not None:
            self._owner.sync()
        return self._rowcount

    @property
    def inserted_primary_key(self) -> tuple[Any, ...] | None:
        if self._owner is not None:
            self._owner.sync()
        return self._key

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        rows = self.rows
        return rows[0] if rows else None

    def one(self) -> Any:
        rows = self.rows
        if len(rows) != 1:
            raise StoreError(f"expected one row, got {len(rows)}")
        return rows[0]

    def scalar(self) -> Any:
        rows = self.rows
        return rows[0][0] if rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> Scalars:
        return Scalars([r[0] for r in self.rows])


class Scalars(list[Any]):
    def all(self) -> list[Any]:
        return list(self)


def _converted(values: list[Any], procs: tuple[tuple[int, Callable[[Any], Any]], ...]) -> list[Any]:
    """``values`` with the driver conversions applied at their indexes (in place)."""
    for i, proc in procs:
        values[i] = proc(values[i])
    return values


# -- executing ------------------------------------------------------------------------------------------


def _returns_rows(cur: Any) -> bool:
    return cur.description is not None


class Connection:
    """One transaction's connection, executing SQLAlchemy Core statements.

    On SQLite, statements run on the driver's cursor as they are executed. On PostgreSQL (``session``)
    they are queued in a ``PgSession`` and sent together: a write whose result nobody reads costs no
    round trip of its own, it travels with the next statement whose rows are needed or with the COMMIT.
    The first look at a pending ``Result`` calls ``sync()``. An error of a queued statement is raised
    there (or at commit), as the same ``DBAPIError`` an immediate execution raises.
    """

    def __init__(self, dialect: Dialect, *, dbapi_connection: Any = None, session: PgSession | None = None) -> None:
        self.dialect = dialect
        self._session = session
        self._cursor = dbapi_connection.cursor() if dbapi_connection is not None else None
        self._pending: list[tuple[Result, list[Outcome], Compiled | None]] = []
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error

    def _values(self, c: Compiled, params: Mapping[str, Any]) -> list[Any]:
        if c.defaults:
            params = {**c.defaults, **params}
        return _converted([params.get(name) for name in c.names], c.bind_procs)

    def _args(self, c: Compiled, params: Mapping[str, Any]) -> Any:
        values = self._values(c, params)
        return values if c.keys is None else dict(zip(c.keys, values, strict=True))

    def _raise(self, exc: Exception, sql: str, args: Any) -> Exception:
        if isinstance(exc, psycopg.errors.UntranslatableCharacter) or (
                isinstance(exc, psycopg.DataError) and "NUL" in str(exc)):
            return UnstorableText(str(exc))
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return Conflict(exc.diag.constraint_name, str(exc))
        if isinstance(exc, sqlite3.IntegrityError) and str(exc).startswith("UNIQUE constraint failed: "):
            return Conflict(unique_constraint_named(str(exc).removeprefix("UNIQUE constraint failed: ")), str(exc))
        # As SQLAlchemy would raise it: IntegrityError, OperationalError...
        return DBAPIError.instance(sql, args, exc, self._driver_error)

    def execute(self, stmt: ClauseElement, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
                ) -> Result:
        if self._session is not None:
            return self._queue(stmt, params)
        cur: Any = self._cursor
        if isinstance(params, Sequence):  # executemany
            if not params:
                return Result([], 0, None)
            c = _compiled(stmt, self.dialect, tuple(params[0]), True)
            many = [self._args(c, p) for p in params]
            try:
                cur.executemany(c.sql, many)
            except self._driver_error as exc:
                raise self._raise(exc, c.sql, many) from exc
            return Result([], cur.rowcount, None)
        given = params or {}
        c = _compiled(stmt, self.dialect, tuple(given), False)
        args = self._args(c, given)
        try:
            cur.execute(c.sql, args)
        except self._driver_error as exc:
            raise self._raise(exc, c.sql, args) from exc
        rows: list[Any] = []
        if _returns_rows(cur):
            if c.results is None:
                c.resolve_results(self.dialect, cur.description)
            rows = self._load(c, cur.fetchall())
        return self._result(c, rows, cur.rowcount, getattr(cur, "lastrowid", None))

    def _load(self, c: Compiled, raw: list[Any]) -> list[Any]:
        if c.results:
            raw = [_converted(list(r), c.results) for r in raw]
        cls = c.row
        assert cls is not None
        return [cls(*r) for r in raw]

    @staticmethod
    def _result(c: Compiled, rows: list[Any], rowcount: int, lastrowid: Any) -> Result:
        key: tuple[Any, ...] | None = None
        if c.is_insert:
            key = tuple(rows[0]) if c.implicit_key and rows else (lastrowid,)
            if c.implicit_key:
                rows = []
        return Result(rows, rowcount, key)

    # -- PostgreSQL: queued statements ----------------------------------------------------------------

    def _queue(self, stmt: ClauseElement, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Result:
        try:
            return self._send(stmt, params)
        except psycopg.DataError as exc:  # a value that cannot be sent (a NUL in text): nothing of it was
            raise self._raise(exc, "(not sent)", params) from exc

    def _send(self, stmt: ClauseElement, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Result:
        session = self._session
        assert session is not None
        if isinstance(params, Sequence):  # executemany: one statement per set of parameters
            if not params:
                return Result([], 0, None)
            c = _compiled(stmt, self.dialect, tuple(params[0]), True)
            outcomes = []
            for p in params:
                values = self._values(c, p)
                outcomes.append(session.send(c.pg_sql, [values[i] for i in c.pg_index], prepare=c.prepare))
            return self._later(outcomes, None)
        given = params or {}
        c = _compiled(stmt, self.dialect, tuple(given), False)
        values = self._values(c, given)
        return self._later([session.send(c.pg_sql, [values[i] for i in c.pg_index], prepare=c.prepare)], c)

    def _later(self, outcomes: list[Outcome], c: Compiled | None) -> Result:
        result = Result([], 0, None)
        result._owner = self
        self._pending.append((result, outcomes, c))
        return result

    def _collect(self, result: Result, outcomes: list[Outcome], c: Compiled | None) -> None:
        """Move a finished statement's outcome into ``result``."""
        result._owner = None
        if c is None:  # executemany
            result._rowcount = sum(max(o.rowcount, 0) for o in outcomes)
            return
        outcome = outcomes[0]
        res = outcome.result
        rows: list[Any] = []
        if res is not None and res.nfields:
            session = self._session
            assert session is not None
            if c.results is None:
                c.resolve_results(self.dialect, session.description(res))
            rows = self._load(c, session.rows(res))
        done = self._result(c, rows, outcome.rowcount, None)
        result._rows, result._rowcount, result._key = done._rows, done._rowcount, done._key

    @property
    def round_trips(self) -> int:
        """PostgreSQL: round trips this connection's session has made (0 on SQLite)."""
        return 0 if self._session is None else self._session.round_trips

    @property
    def pending(self) -> bool:
        """Whether statements were queued whose outcome has not been collected yet."""
        return self._session is not None and self._session.pending

    def sync(self) -> None:
        """Send every queued statement, wait for them, collect their results (one round trip)."""
        session = self._session
        if session is None:
            return
        try:
            session.sync()
        except psycopg.Error as exc:
            self._forget_pending()
            raise self._raise(exc, "(queued statements)", None) from exc
        pending, self._pending = self._pending, []
        for result, outcomes, c in pending:
            self._collect(result, outcomes, c)

    def begin(self) -> None:
        if self._session is not None:
            self._session.send_command(b"BEGIN")

    def commit(self) -> None:
        """COMMIT; queued statements travel with it (one round trip in all)."""
        if self._session is not None:
            self._session.send_command(b"COMMIT")
            self.sync()

    def rollback(self) -> None:
        if self._session is not None:
            self._forget_pending()
            self._session.send_command(b"ROLLBACK")
            self._session.sync()

    def _forget_pending(self) -> None:
        for result, _outcomes, _c in self._pending:  # never collected (the transaction failed)
            result._owner = None
        self._pending.clear()

    def close(self) -> None:
        self._forget_pending()
        if self._cursor is not None:
            self._cursor.close()
