"""A node's media plane in a cluster: each instruction carried out on the node its call or conference lives
on, over the bus, and the relay legs that join audio across nodes.

The control plane hands a committed command's instructions here with their placements (which node each
call and conference lives on, ``World.placements``). ``deliver`` sends each node its batch (``routing``) and
waits for every reply; a node's own batch, and every batch another node sends it (``serve``), is applied by
``apply_here``: the relay legs it needs are closed and opened first (``relays``: a conference's home links
each remote member; a bridge's first call links to the second), then the instructions go to the node's own
endpoints and engine.

``deliver`` runs before the command's COMMIT, while it still holds the row locks of the calls and
conferences it changed: the instructions of two commands that change one call or one conference reach its
node in the order the commands commit, whichever nodes ran them. A node that does not answer in time makes
an API command fail with nothing committed; facts, timers and the reaping of dead nodes log it and go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from callroom.cluster.bus import Bus, NodeUnreachable
from callroom.cluster.messages import (
    Apply,
    BusReply,
    BusRequest,
    CallQuality,
    Done,
    Link,
    Linked,
    PhoneAudio,
    PhoneHangup,
    PhoneHeard,
    PhoneKeys,
    Quality,
)
from callroom.cluster.relays import BridgeLink, MemberLink, Relays
from callroom.cluster.routing import Unroutable, route
from callroom.endpoints.media_process import MediaProcess
from callroom.endpoints.virtual import VirtualPhones
from callroom.errors import CommandRejected, NodeUnavailable
from callroom.model import media as m

log = logging.getLogger(__name__)

APPLY_TIMEOUT = 3.0  # a node's reply to its batch (which may wait for links of its own)
LINK_TIMEOUT = 1.5  # a relay leg opened on another node


class ClusterMedia:
    def __init__(self, here: str, local: m.MediaPlane, media: MediaProcess, phones: VirtualPhones, bus: Bus,
                 alive: Callable[[str], bool] = lambda _node: True) -> None:  # fmt: skip
        self.here = here
        self.local = local  # this node's endpoints and engine (``node.NodeMedia``)
        self.media = media
        self.phones = phones
        self.bus = bus
        self.alive = alive  # False for a node the cluster knows is dead or stopped: nothing is sent to it
        self.relays = Relays(here)
        self.sent = 0  # batches sent to other nodes
        self.skipped = 0  # batches for dead nodes, dropped

    # -- the control plane's side -------------------------------------------------------------------

    def needs_bus(self, ops: Sequence[m.MediaOp], placements: Mapping[str, str]) -> bool:
        """Whether ``ops`` go (or link) anywhere but here; if not, ``apply_committed`` does it all."""
        if not placements:
            return False
        batches = route(ops, placements, self.here)
        if any(node != self.here for node in batches):
            return True
        return self.relays.wants_links(batches.get(self.here, []), placements)

    def apply_committed(self, ops: list[m.MediaOp], placements: Mapping[str, str]) -> None:
        """Instructions that stay on this node and open no relay, applied after the COMMIT."""
        plan = self.relays.plan(ops, placements)
        assert not plan.links, "apply_committed with instructions that need the bus (see needs_bus)"
        self._close(plan.close)
        self.local.apply(plan.ops)

    async def deliver(self, ops: Sequence[m.MediaOp], placements: Mapping[str, str], *, strict: bool) -> None:
        """Carry out ``ops`` where they belong and wait for every node. ``strict`` (an API command): the
        first node that did not answer is raised as ``NodeUnavailable`` (the command is then rolled back),
        an instruction no node can carry out as ``CommandRejected``; otherwise they are logged."""
        try:
            batches = route(ops, placements, self.here)
        except Unroutable as exc:
            if strict:
                raise CommandRejected("90114", "Not possible across nodes", exc.detail, f"/{exc.option}") from exc
            log.warning("media instructions dropped: %s", exc.detail)
            return
        pairs = tuple(placements.items())
        jobs: list[Coroutine[Any, Any, object]] = []
        for node, mine in batches.items():
            if node == self.here:
                jobs.append(self.apply_here(mine, placements))
            elif not self.alive(node):
                self.skipped += 1
                log.info("dropped %d media instruction(s) for node %s, which is down", len(mine), node)
            else:
                self.sent += 1
                jobs.append(self._ask(node, Apply(tuple(mine), pairs), APPLY_TIMEOUT))
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, NodeUnreachable):
                raise failure
            if not strict:
                log.warning("media instructions lost: %s", failure)
        if strict and failures:
            first = failures[0]
            assert isinstance(first, NodeUnreachable)
            raise NodeUnavailable(first.node_id, first.why) from first

    async def _ask(self, node: str, request: BusRequest, timeout: float) -> BusReply:
        return await self.bus.ask(node, request, timeout)

    # -- this node's side ---------------------------------------------------------------------------

    async def apply_here(self, ops: Sequence[m.MediaOp], placements: Mapping[str, str]) -> None:
        plan = self.relays.plan(ops, placements)
        self._close(plan.close)
        if plan.links:
            outcomes = await asyncio.gather(*(self._link_member(link) for link in plan.members),
                                            *(self._link_bridge(link) for link in plan.bridges),
                                            return_exceptions=True)  # fmt: skip
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                self.local.apply(plan.ops)  # what did not need the failed links still holds
                raise failures[0]
        self.local.apply(plan.ops)

    def forget_relays(self) -> None:
        """Close every relay leg (the cluster moved this node's conferences and calls on without it)."""
        self._close([*self.relays.attached.values(),
                     *(cid for members in self.relays.members.values() for cid in members)])  # fmt: skip
        self.relays = Relays(self.here)

    def _close(self, relays: list[str]) -> None:
        for relay in relays:
            self.media.close_relay(relay)

    async def _link_member(self, link: MemberLink) -> None:
        """At a conference's home: a relay leg for a member that lives elsewhere, linked to it."""
        try:
            here = await self.media.open_relay(link.call_control_id)
            linked = await self._ask(link.node, Link(link.far_relay, link.call_control_id, here), LINK_TIMEOUT)
            if not isinstance(linked, Linked):
                raise NodeUnreachable(link.node, f"answered a link with {type(linked).__name__}")
        except Exception:
            self.relays.forget_member(link)
            self.media.close_relay(link.call_control_id)
            raise
        self.media.relay_peer(link.call_control_id, (linked.host, linked.port))

    async def _link_bridge(self, link: BridgeLink) -> None:
        """On a bridge's first call's node: a relay leg bridged to it, linked to the second call's node."""
        try:
            here = await self.media.open_relay(link.relay, attach=link.a)
            linked = await self._ask(link.node, Link(link.far_relay, link.b, here), LINK_TIMEOUT)
            if not isinstance(linked, Linked):
                raise NodeUnreachable(link.node, f"answered a link with {type(linked).__name__}")
        except Exception:
            self.relays.forget_attached(link.a, link.relay)
            self.media.close_relay(link.relay)
            raise
        self.media.relay_peer(link.relay, (linked.host, linked.port))
        self.phones.apply([m.Bridge(link.a, link.b)])  # (what a virtual phone says it is connected to)

    async def _linked(self, request: Link) -> Linked:
        """Another node linked one of this node's calls to a relay leg of its own."""
        old = self.relays.attach(request.call_control_id, request.relay_id)
        if old is not None:
            self.media.close_relay(old)
        try:
            host, port = await self.media.open_relay(request.relay_id, request.remote, attach=request.call_control_id)
        except Exception:
            self.relays.forget_attached(request.call_control_id, request.relay_id)
            raise
        return Linked(host, port)

    async def serve(self, request: BusRequest) -> BusReply:
        """A request from another node."""
        match request:
            case Apply(ops=ops, placements=pairs):
                await self.apply_here(ops, dict(pairs))
                return Done()
            case Link():
                return await self._linked(request)
            case PhoneKeys(call_control_id=cid, digits=digits, duration_ms=ms):
                return Done(self.phones.press(cid, digits, ms))
            case PhoneHangup(call_control_id=cid):
                if cid not in self.phones.legs:
                    return Done(False)
                self.phones.hang_up(cid)
                return Done()
            case PhoneHeard(call_control_id=cid, seconds=seconds):
                samples = await self.phones.heard(cid, seconds)
                return PhoneAudio(None if samples is None else samples.astype("<i2").tobytes())
            case CallQuality(call_control_id=cid):
                return Quality(await self.media.quality(cid, timeout=0.5))

    # -- virtual phones and call quality of other nodes --------------------------------------------

    async def press(self, node: str, cid: str, digits: str, duration_ms: int) -> bool:
        reply = await self._ask(node, PhoneKeys(cid, digits, duration_ms), APPLY_TIMEOUT)
        return isinstance(reply, Done) and reply.found

    async def hang_up(self, node: str, cid: str) -> bool:
        reply = await self._ask(node, PhoneHangup(cid), APPLY_TIMEOUT)
        return isinstance(reply, Done) and reply.found

    async def heard(self, node: str, cid: str, seconds: float | None) -> NDArray[np.int16] | None:
        reply = await self._ask(node, PhoneHeard(cid, seconds), 10.0)
        if not isinstance(reply, PhoneAudio) or reply.samples is None:
            return None
        return np.frombuffer(reply.samples, dtype="<i2").astype(np.int16)

    async def quality(self, node: str, cid: str) -> dict[str, object] | None:
        reply = await self._ask(node, CallQuality(cid), 1.0)  # (a hangup waits this long at most for them)
        return reply.stats if isinstance(reply, Quality) else None
