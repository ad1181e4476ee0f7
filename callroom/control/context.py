"""The context one command runs in: its transaction, its account, its ``now``, and what it causes.

Handlers never commit, send, sleep or read the clock: they read and write through ``ctx.tx``, append
webhooks with ``ctx.emit_*`` (outbox rows in the same transaction), schedule timers, and queue media
instructions that the service hands to the media plane once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callroom.errors import ApiError
from callroom.model.media import MediaOp
from callroom.model.records import (
    Application,
    Call,
    Conference,
    OutboundEvent,
    Timer,
    new_uuid,
)
from callroom.store import outbox
from callroom.store.outbox import PendingDelivery
from callroom.store.sql import Result
from callroom.store.tx import Tx
from callroom.timefmt import iso

DEFAULT_WEBHOOK_TIMEOUT_SECS = 2.0


@dataclass
class Ctx:
    tx: Tx
    account_id: str
    now: float
    node_id: str
    media: list[MediaOp] = field(default_factory=list)
    # Outbox rows written by this command, handed to the dispatcher once the transaction commits.
    emitted: list[PendingDelivery] = field(default_factory=list)
    timers_added: bool = False
    # An error to raise *after* committing: a dequeue that removed the head but could not bridge it.
    deferred_error: ApiError | None = None
    # Destinations this node can ring (virtual phones always; SIP URIs when the SIP plane runs).
    dialable: tuple[str, ...] = ("virtual:",)
    # How long an incoming call may ring before the node gives up on the application (0: for ever).
    ring_timeout_secs: float = 0.0
    # What a deduplicated command produced, kept with its command_id (e.g. the dialled call's id).
    command_result: str | None = None
    # PostgreSQL writes: reads likely needed later are sent ahead, to travel with a round trip going anyway.
    read_ahead: bool = False
    # The request's command_id, if any (a command that fails must then roll back, not commit its check).
    command_id: str | None = None
    # Set after commit by a command that found it must run again another way (nothing having changed).
    again: bool = False
    _apps: dict[str, Application | None] = field(default_factory=dict)
    _app_reads: dict[str, Result] = field(default_factory=dict)
    _apps_ahead: list[Result] = field(default_factory=list)  # applications read before knowing their ids
    _appended: list[outbox.Appended] = field(default_factory=list)  # the outbox rows of ``emitted``
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    # -- lookups ------------------------------------------------------------------------------------

    def app(self, connection_id: str) -> Application | None:
        if self._apps_ahead and connection_id not in self._apps:
            self._take_apps_ahead(wait=True)
        if connection_id not in self._apps:
            read = self._app_reads.pop(connection_id, None)
            if read is None:
                read = self.tx.read_application(self.account_id, connection_id)
            self._apps[connection_id] = self.tx.application_in(read)
        return self._apps[connection_id]

    def read_app_ahead(self, connection_id: str) -> None:
        """A command on a call will likely emit webhooks to the call's application: send its read now."""
        if self._apps_ahead:
            self._take_apps_ahead(wait=False)
        if self.read_ahead and connection_id not in self._apps and connection_id not in self._app_reads:
            self._app_reads[connection_id] = self.tx.read_application(self.account_id, connection_id)

    def read_apps_ahead(self, *, of_call: str | None = None, of_queue_head: str | None = None) -> None:
        """Send now the reads of the applications of a call and/or of the call at the head of a queue,
        before those calls are read: they travel with the command's first round trip."""
        if not self.read_ahead:
            return
        if of_call is not None:
            self._apps_ahead.append(self.tx.read_application_of_call(self.account_id, of_call))
        if of_queue_head is not None:
            self._apps_ahead.append(self.tx.read_application_of_queue_head(self.account_id, of_queue_head))

    def _take_apps_ahead(self, *, wait: bool) -> None:
        """The applications read ahead, by id (``wait=False``: only those whose results are in)."""
        keep: list[Result] = []
        for read in self._apps_ahead:
            if not wait and not read.ready:
                keep.append(read)
                continue
            for row in read:
                self._apps.setdefault(row.id, self.tx.application_in_row(row))
        self._apps_ahead = keep

    # -- timers -------------------------------------------------------------------------------------

    def schedule(self, kind: str, ref: str, due_at: float) -> None:
        self.tx.add_timer(Timer(kind=kind, ref=ref, due_at=due_at, account_id=self.account_id))
        self.timers_added = True

    def cancel(self, kind: str, ref: str) -> None:
        self.tx.cancel_timers(kind, ref)

    # -- webhooks -----------------------------------------------------------------------------------

    def after_commit(self, work: Callable[[], None]) -> None:
        """Run ``work`` once the transaction has committed, before its effects are applied: it may look at
        results of statements that travelled with the COMMIT, queue media instructions and set
        ``deferred_error``; it may not read or write the store."""
        self._after_commit.append(work)

    def settle(self) -> None:
        """After commit: run the ``after_commit`` work, and give ``emitted`` their outbox ids and sequence
        numbers (on PostgreSQL the statements that chose them ran with the COMMIT; looking earlier would
        cost a round trip)."""
        for work in self._after_commit:
            work()
        for delivery, row in zip(self.emitted, self._appended, strict=True):
            delivery.id = row.id
            delivery.payload = {**delivery.payload, row.sequence_field: row.sequence}

    def _emit(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        connection_id: str,
        webhook_url: str | None,
        method: str,
        order_key: str,
        occurred_at_in_payload: bool,
    ) -> None:
        app = self.app(connection_id)
        url = webhook_url or (app.webhook_event_url if app else None)
        failover = app.webhook_event_failover_url if app else None
        timeout = float(app.webhook_timeout_secs) if app and app.webhook_timeout_secs else DEFAULT_WEBHOOK_TIMEOUT_SECS
        if occurred_at_in_payload:
            payload = {**payload, "occurred_at": iso(self.now)}
        ev = OutboundEvent(
            id=new_uuid(),
            account_id=self.account_id,
            event_type=event_type,
            occurred_at=self.now,
            payload=payload,
            url=url,
            failover_url=failover,
            method=method,
            timeout_secs=timeout,
            order_key=order_key,
            occurred_at_in_payload=occurred_at_in_payload,
        )
        # Order within one call / conference, for receivers (an extra field: Telnyx's models ignore it).
        self._appended.append(outbox.append(self.tx, ev, self.now, outbox.sequence_field(order_key)))
        self.emitted.append(
            PendingDelivery(
                id=0, event_id=ev.id, account_id=ev.account_id, event_type=ev.event_type,
                occurred_at=ev.occurred_at, payload=ev.payload, occurred_at_in_payload=ev.occurred_at_in_payload,
                url=ev.url, failover_url=ev.failover_url, method=ev.method, timeout_secs=ev.timeout_secs,
                order_key=ev.order_key, attempts=0, next_attempt_at=self.now, created_at=self.now,
            )
        )

    def emit_call(self, event_type: str, call: Call, **extra: Any) -> None:
        """A ``call.*`` webhook about ``call``, to the call's application (or its ``webhook_url``)."""
        payload = call_base_payload(call)
        payload.update(extra)
        self._emit(
            event_type,
            payload,
            connection_id=call.connection_id,
            webhook_url=call.webhook_url,
            method=call.webhook_url_method,
            order_key=f"call:{call.call_control_id}",
            occurred_at_in_payload=False,
        )

    def emit_participant(self, event_type: str, conf: Conference, call: Call) -> None:
        """``conference.participant.joined`` / ``.left``: about one leg, to that leg's application."""
        payload = {
            "call_control_id": call.call_control_id,
            "call_leg_id": call.call_leg_id,
            "call_session_id": call.call_session_id,
            "client_state": call.client_state,
            "connection_id": call.connection_id,
            "conference_id": conf.id,
        }
        self._emit(
            event_type,
            payload,
            connection_id=call.connection_id,
            webhook_url=call.webhook_url,
            method=call.webhook_url_method,
            order_key=f"conference:{conf.id}",
            occurred_at_in_payload=False,
        )

    def emit_conference(self, event_type: str, conf: Conference, **extra: Any) -> None:
        """A conference-wide webhook, to the conference's application; ``occurred_at`` in the payload."""
        payload: dict[str, Any] = {
            "call_control_id": conf.creator_call_control_id,
            "call_session_id": conf.creator_call_session_id,
            "client_state": conf.client_state,
            "conference_id": conf.id,
            "connection_id": conf.connection_id,
        }
        payload.update(extra)
        self._emit(
            event_type,
            payload,
            connection_id=conf.connection_id,
            webhook_url=None,
            method="POST",
            order_key=f"conference:{conf.id}",
            occurred_at_in_payload=True,
        )


def call_base_payload(call: Call) -> dict[str, Any]:
    return {
        "call_control_id": call.call_control_id,
        "call_leg_id": call.call_leg_id,
        "call_session_id": call.call_session_id,
        "client_state": call.client_state,
        "connection_id": call.connection_id,
        "from": call.from_,
        "to": call.to,
    }
