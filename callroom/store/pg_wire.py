"""A PostgreSQL connection driven through libpq's pipeline mode (psycopg's ``pq`` binding).

The store's transactions are short runs of small statements, most of them writes whose results nobody
reads. psycopg's cursors send each statement as it is executed (a system call or two each, even in its
pipeline mode) and cost ~40 us of Python per statement here. This session keeps statements in libpq's
output buffer until their results are needed: ``sync()`` sends everything queued with one Sync message,
waits once, and hands back each statement's results. A write's only cost is libpq's buffering; the
round trip it travels in is the next read's, or the COMMIT's.

What is borrowed, not written here: libpq (framing, the protocol, TLS, authentication) and psycopg's
adaptation (``Transformer``: parameters to text, result columns to Python values with the engine's
adapters, JSON through the same functions as elsewhere; errors as psycopg's exception classes, which
SQLAlchemy's ``DBAPIError.instance`` turns into ``IntegrityError`` and the rest as usual).

Statements the store builds once (``sql.prebuilt``) are prepared on each connection the first time
they are sent (in the same round trip), then sent by name. Parameters are sent as text with no type:
the statement's casts (SQLAlchemy renders them) or its context decide, as for a typed literal.

Nothing here is shared between threads: a session belongs to one transaction at a time. Waits for the
server block the calling thread, except inside ``cooperative.run``, where the event loop goes on.
"""

from __future__ import annotations

import select
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres, pq
from psycopg.adapt import AdaptersMap, Dumper, PyFormat, Transformer

from callroom.store import cooperative

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


class _HexBytes(Dumper):
    """Bytes as bytea's hex text (``\\x0a1b...``). psycopg's own text dumper escapes for the connection it
    is given; with none (this session has a libpq connection, not a psycopg one) it writes the escape
    format for non-standard string literals, doubling every backslash: wrong for a parameter. SQLAlchemy's
    ``LargeBinary`` hands bytes over wrapped in the driver's ``Binary``."""

    def dump(self, obj: Any) -> bytes:
        if isinstance(obj, psycopg.Binary):
            obj = obj.obj
        return b"\\x" + bytes(obj).hex().encode()


def _adapters(context: Any) -> AdaptersMap:
    adapters = AdaptersMap(context.adapters if context is not None else postgres.adapters)
    for cls in (bytes, bytearray, memoryview, psycopg.Binary):
        adapters.register_dumper(cls, _HexBytes)
    return adapters


@dataclass(slots=True)
class Outcome:
    """What one statement returned: its last result (rows, row count), or the error it raised."""

    result: pq.abc.PGresult | None = None
    error: psycopg.Error | None = None
    rowcount: int = -1


@dataclass(slots=True)
class _Sent:
    outcome: Outcome | None  # None: a PREPARE (its result matters only if it did not happen)
    prepared_sql: bytes = b""


class PgSession:
    """One server connection in pipeline mode, for one transaction at a time."""

    def __init__(self, conninfo: str, context: Any) -> None:
        pg = pq.PGconn.connect(conninfo.encode())
        if pg.status != pq.ConnStatus.OK:
            message = pg.get_error_message()
            pg.finish()
            raise psycopg.OperationalError(f"connecting to PostgreSQL failed: {message}")
        pg.nonblocking = 1
        pg.enter_pipeline_mode()
        self.pg = pg
        self._watch = cooperative.ReadableWatch(pg.socket)
        self._adapt = Transformer(_adapters(context))
        self._prepared: dict[bytes, bytes] = {}  # SQL text -> statement name on this connection
        self._sent: list[_Sent] = []
        self.broken = False
        self.round_trips = 0  # Syncs sent so far (for tests and measurements)

    # -- sending (buffered by libpq until ``sync``) ---------------------------------------------------

    def send(self, sql: bytes, params: list[Any], *, prepare: bool) -> Outcome:
        """Queue a statement; its ``Outcome`` is filled at the next ``sync``."""
        values = self._adapt.dump_sequence(params, [PyFormat.TEXT] * len(params)) if params else None
        outcome = Outcome()
        pg = self.pg
        if prepare:
            name = self._prepared.get(sql)
            if name is None:
                name = self._prepared[sql] = b"s%d" % len(self._prepared)
                pg.send_prepare(name, sql, None)
                self._sent.append(_Sent(None, sql))
            pg.send_query_prepared(name, values, None, 0)
        else:
            pg.send_query_params(sql, values, None, None, 0)
        self._sent.append(_Sent(outcome))
        return outcome

    def send_command(self, command: bytes) -> None:
        """BEGIN, COMMIT, ROLLBACK: their results only matter if they fail (then ``sync`` raises)."""
        self.pg.send_query_params(command, None)
        self._sent.append(_Sent(Outcome()))

    @property
    def pending(self) -> bool:
        return bool(self._sent)

    # -- one round trip -------------------------------------------------------------------------------

    def sync(self) -> None:
        """Send what is queued and a Sync, wait, and fill every queued statement's ``Outcome``.

        If a statement failed, the later ones were skipped by the server; the first error is raised
        (the transaction is then in error on the server, to be rolled back)."""
        sent, self._sent = self._sent, []
        self.round_trips += 1
        try:
            self._exchange(sent)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                self.broken = True
            raise
        except BaseException:  # interrupted half-way (a cancelled request): out of step with the server
            self.broken = True
            raise
        for item in sent:
            if item.outcome is not None and item.outcome.error is not None:
                raise item.outcome.error

    def _exchange(self, sent: list[_Sent]) -> None:
        pg = self.pg
        pg.pipeline_sync()
        while pg.flush() == 1:
            self._wait(writable=True)
            pg.consume_input()
        first_error: psycopg.Error | None = None
        for item in sent:
            while True:
                res = self._next_result()
                if res is None:  # the end of this statement's results
                    break
                status = res.status
                if status == pq.ExecStatus.FATAL_ERROR or status == pq.ExecStatus.PIPELINE_ABORTED:
                    if status == pq.ExecStatus.FATAL_ERROR:
                        error = pg_errors.error_from_result(res, encoding="utf-8")
                        first_error = first_error or error
                    else:  # skipped: an earlier statement of this round failed
                        error = first_error or psycopg.OperationalError("statement skipped")
                    if item.outcome is not None:
                        item.outcome.error = error
                    else:  # the PREPARE did not happen: prepare again next time
                        self._prepared.pop(item.prepared_sql, None)
                elif status in _OK and item.outcome is not None:
                    item.outcome.result = res
                    tuples = res.command_tuples
                    item.outcome.rowcount = int(tuples) if tuples is not None else -1
        res = self._next_result()
        if res is None or res.status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.OperationalError("PostgreSQL pipeline out of step")

    def _next_result(self) -> Any:
        pg = self.pg
        while pg.is_busy():
            self._wait(writable=False)
            pg.consume_input()
        return pg.get_result()

    def _wait(self, *, writable: bool) -> None:
        """Until the socket is readable (or writable): blocking this thread, or, inside
        ``cooperative.run``, letting the event loop go on meanwhile."""
        fd = self.pg.socket
        if cooperative.cooperative():
            if writable:
                cooperative.wait_for(cooperative.writable(fd))
            else:
                self._watch.wait()
        elif writable:
            select.select([fd], [fd], [])
        else:
            select.select([fd], [], [])

    # -- results --------------------------------------------------------------------------------------

    def rows(self, result: Any) -> list[tuple[Any, ...]]:
        """The rows of a result, each column loaded by the adapters of its type."""
        adapt = self._adapt
        adapt.set_pgresult(result)
        return adapt.load_rows(0, result.ntuples, tuple)

    @staticmethod
    def description(result: Any) -> list[tuple[str, int]]:
        """(name, type oid) of each column, as a DB-API ``description`` gives them."""
        return [(result.fname(i).decode(), result.ftype(i)) for i in range(result.nfields)]

    # -- state ----------------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No transaction open and nothing queued: fit to be handed to the next transaction."""
        return not self.broken and not self._sent and self.pg.transaction_status == pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.broken = True
        self._watch.close()  # before the socket is closed (its number may be reused)
        self.pg.finish()
