"""The console's push channel: each account's events, as they are committed, to its open consoles.

Every webhook event an account gets is an outbox row; the rows a command commits here are handed to the
hub right after the commit (as to the webhook dispatcher), encoded once as a server-sent event and put in
the queue of every console of that account, and only of that account. The node's operations figures go to
every console (they are the node's, as in ``/metrics``, and name no account's objects); who has the floor
of a conference goes only to the conference's account. A console that falls ``QUEUE_LIMIT`` events behind
is told to reload what it shows (``resync``) instead of making the node keep its backlog.

In a cluster, the events other nodes commit come here too (``cluster/console_feed.py``), so a console
behind any node sees its account's whole cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from callroom.timefmt import iso


class Committed(Protocol):
    """An event as committed: an outbox row here (``PendingDelivery``), or one another node committed."""

    @property
    def account_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def occurred_at(self) -> float: ...
    @property
    def order_key(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...


QUEUE_LIMIT = 2000
RESYNC = b"event: resync\ndata: {}\n\n"


def sse(kind: str, body: object) -> bytes:
    """One server-sent event (the data is JSON: names and client states stay text in the page)."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


@dataclass(eq=False)
class Subscriber:
    """One open console: its account and the events waiting to be written to it."""

    account_id: str
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    lagged: bool = False

    def offer(self, event: bytes) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True  # the writer drains it, then sends RESYNC (``next``)

    async def next(self) -> bytes:
        if self.lagged and self.queue.empty():
            self.lagged = False
            return RESYNC
        return await self.queue.get()


class ConsoleHub:
    def __init__(self) -> None:
        self._by_account: dict[str, set[Subscriber]] = {}
        self.calls_created = 0  # ``call.initiated`` events committed here (the figures' calls per second)
        self.events_published = 0
        self._floors: dict[str, tuple[str, str | None]] = {}  # conference -> (account, talker) last told
        self.touched: set[str] = set()  # conferences changed without a webhook, for ``touched`` to tell
        self.wake: Callable[[], None] = lambda: None  # the figures' loop resolves their accounts
        self.subscribed: Callable[[], None] = lambda: None  # a console opened (a cluster's feed says so at once)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._by_account.values())

    def subscribe(self, account_id: str) -> Subscriber:
        sub = Subscriber(account_id)
        self._by_account.setdefault(account_id, set()).add(sub)
        self.subscribed()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._by_account.get(sub.account_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_account[sub.account_id]

    def publish(self, rows: Iterable[Committed], *, here: bool = True) -> None:
        """Events just committed (called on the loop, after the commit); ``here``: by this node (the figures
        count only this node's calls)."""
        for row in rows:
            if here and row.event_type == "call.initiated":
                self.calls_created += 1
            subs = self._by_account.get(row.account_id)
            if not subs:
                continue
            self.events_published += 1
            event = sse("webhook", {"id": row.event_id, "event_type": row.event_type,
                                    "occurred_at": iso(row.occurred_at), "order_key": row.order_key,
                                    "payload": row.payload})  # fmt: skip
            for sub in subs:
                sub.offer(event)

    def broadcast(self, kind: str, body: object) -> None:
        """To every console (the node's figures)."""
        if not self._by_account:
            return
        event = sse(kind, body)
        for subs in self._by_account.values():
            for sub in subs:
                sub.offer(event)

    def floors(self, floors: dict[str, str], accounts: dict[str, str]) -> None:
        """Who has the floor of each conference now (``accounts``: each conference's account, for those of
        ``floors`` and of the last call); each change goes to the conference's account."""
        changed: list[tuple[str, str, str | None]] = []
        for conf, (account, talker) in list(self._floors.items()):
            if conf not in floors:
                del self._floors[conf]
                if talker is not None:
                    changed.append((account, conf, None))
        for conf, now_talking in floors.items():
            owner = accounts.get(conf)
            if owner is None:
                continue
            if self._floors.get(conf) != (owner, now_talking):
                self._floors[conf] = (owner, now_talking)
                changed.append((owner, conf, now_talking))
        for account, conf, talker in changed:
            event = sse("floor", {"conference_id": conf, "call_control_id": talker})
            for sub in self._by_account.get(account, ()):
                sub.offer(event)

    def floor_of(self, account_id: str) -> dict[str, str]:
        """The account's conferences' current talkers (a console just opened is told them first)."""
        return {conf: talker for conf, (account, talker) in self._floors.items()
                if account == account_id and talker is not None}  # fmt: skip

    def touch(self, conference_ids: set[str]) -> None:
        """Conferences whose mix changed (mute, hold, role): their consoles reload them (``touched``)."""
        if self._by_account:
            self.touched |= conference_ids
            self.wake()

    def tell_touched(self, accounts: dict[str, str]) -> None:
        """Send the touched conferences whose account is known (``accounts``) to that account."""
        touched, self.touched = self.touched, set()
        for conf in touched:
            account = accounts.get(conf)
            if account is None:
                continue
            event = sse("touched", {"conference_id": conf})
            for sub in self._by_account.get(account, ()):
                sub.offer(event)
