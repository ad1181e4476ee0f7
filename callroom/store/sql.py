"""Running SQLAlchemy Core statements straight on the database driver.

The store builds its statements with SQLAlchemy Core (tables in ``schema.py``; the dialect's SQL, bind
casts, JSON and boolean conversion) but does not execute them through SQLAlchemy's ``Connection``: on a
small machine that costs ~150 us per transaction and ~70 us per statement (pool checkout, events,
cache-key generation, execution contexts, result metadata), several times SQLite's own work.

Here a statement is compiled into its SQL text, the order of its parameters and the driver-level
conversions of its parameters and result columns; executing it is then one driver call. Statements made
once with ``prebuilt()`` (the hot paths) keep their compiled form per dialect and parameter keys;
statements built fresh for a call (cold paths) are compiled each time.

Offered is what the store uses: ``execute()`` with a mapping or a list of mappings; results with
``first``/``one``/``scalar``/``scalar_one``/``scalars``/``all``/iteration, ``rowcount`` and
``inserted_primary_key``; rows are tuples with attribute access, ``_fields`` and ``_mapping``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from callroom.errors import StoreError

Processor = Callable[[Any], Any] | None


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
    return Compiled(
        sql=c.string,
        names=names,
        keys=None if dialect.positional else tuple(escaped.get(n, n) for n in names),
        defaults=defaults,
        bind_procs=tuple((i, p) for i, p in enumerate(binds) if p is not None),
        fields=fields,
        types=tuple(col[3] for col in columns),
        is_insert=bool(c.isinsert),
        implicit_key=bool(c.isinsert and c.returning and not explicit),
    )


_COMPILED: dict[tuple[int, str, tuple[str, ...], bool], Compiled] = {}


def _compiled(stmt: ClauseElement, dialect: Dialect, keys: tuple[str, ...], many: bool) -> Compiled:
    if id(stmt) not in _PREBUILT_IDS:
        return compile_statement(stmt, dialect, keys, many)
    cache_key = (id(stmt), dialect.name, keys, many)
    found = _COMPILED.get(cache_key)
    if found is None:
        found = _COMPILED[cache_key] = compile_statement(stmt, dialect, keys, many)
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
    __slots__ = ("inserted_primary_key", "rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int, inserted_primary_key: tuple[Any, ...] | None) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.inserted_primary_key = inserted_primary_key

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise StoreError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

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


def _pg_returns_rows(cur: Any) -> bool:
    result = cur.pgresult
    return result is not None and result.nfields > 0


def _dbapi_returns_rows(cur: Any) -> bool:
    return cur.description is not None


class Connection:
    """One transaction's driver connection, executing SQLAlchemy Core statements."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect) -> None:
        self.dialect = dialect
        self._cursor = dbapi_connection.cursor()
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        if dialect.name == "postgresql":
            # psycopg builds its ``description`` (a Column object per column) on every access, ~9 us for
            # a row of eight; the libpq result says as much for nothing. It is read once per statement.
            self._returns_rows: Callable[[Any], bool] = _pg_returns_rows
        else:
            self._returns_rows = _dbapi_returns_rows

    def _args(self, c: Compiled, params: Mapping[str, Any]) -> Any:
        if c.defaults:
            params = {**c.defaults, **params}
        values = _converted([params.get(name) for name in c.names], c.bind_procs)
        return values if c.keys is None else dict(zip(c.keys, values, strict=True))

    def execute(self, stmt: ClauseElement, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
                ) -> Result:
        cur = self._cursor
        if isinstance(params, Sequence):  # executemany
            if not params:
                return Result([], 0, None)
            c = _compiled(stmt, self.dialect, tuple(params[0]), True)
            many = [self._args(c, p) for p in params]
            try:
                cur.executemany(c.sql, many)
            except self._driver_error as exc:
                raise DBAPIError.instance(c.sql, many, exc, self._driver_error) from exc
            return Result([], cur.rowcount, None)
        given = params or {}
        c = _compiled(stmt, self.dialect, tuple(given), False)
        args = self._args(c, given)
        try:
            cur.execute(c.sql, args)
        except self._driver_error as exc:  # as SQLAlchemy would raise it: IntegrityError, OperationalError...
            raise DBAPIError.instance(c.sql, args, exc, self._driver_error) from exc
        rows: list[Any] = []
        if self._returns_rows(cur):
            if c.results is None:
                c.resolve_results(self.dialect, cur.description)
            raw = cur.fetchall()
            if c.results:
                raw = [_converted(list(r), c.results) for r in raw]
            cls = c.row
            assert cls is not None
            rows = [cls(*r) for r in raw]
        key: tuple[Any, ...] | None = None
        if c.is_insert:
            key = tuple(rows[0]) if c.implicit_key and rows else (getattr(cur, "lastrowid", None),)
            if c.implicit_key:
                rows = []
        return Result(rows, cur.rowcount, key)

    def close(self) -> None:
        self._cursor.close()
