"""Which relay legs a node keeps, and what a batch of media instructions changes of them. Pure bookkeeping:
instructions and placements in, a ``Plan`` out (relay legs to close, links to make, instructions to apply).

Two kinds of relay leg (``media_worker/relays.py`` opens them):

* at a conference's home, one per member whose call lives on another node, named after the call, so that
  the mix treats it as any member (``members``: conference -> call -> its node);
* on a call's own node, the one relay leg the call is bridged to, toward a conference's home or toward the
  other call of a bridge across nodes (``attached``: call -> relay leg).

A call's relay leg is replaced by whatever places the call anew here (parked, bridged, queued, hung up, a
member of a conference mixed here, linked to another relay); a home's member relay goes when the member
leaves the mix, or the conference closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from callroom.cluster.routing import named
from callroom.model import media as m


@dataclass(frozen=True, slots=True)
class MemberLink:
    """At the home of ``conference_id``: open the relay leg ``call_control_id`` and link it to the call on
    ``node``."""

    conference_id: str
    call_control_id: str
    node: str

    @property
    def far_relay(self) -> str:
        return member_relay(self.call_control_id, self.conference_id)


@dataclass(frozen=True, slots=True)
class BridgeLink:
    """On ``a``'s node: open a relay leg bridged to ``a`` and link it to ``b`` on ``node``."""

    a: str
    b: str
    node: str

    @property
    def relay(self) -> str:
        return bridge_relay(self.a, self.b)

    @property
    def far_relay(self) -> str:
        return bridge_relay(self.b, self.a)


@dataclass(slots=True)
class Plan:
    close: list[str] = field(default_factory=list)  # relay legs to close here, first
    members: list[MemberLink] = field(default_factory=list)
    bridges: list[BridgeLink] = field(default_factory=list)
    ops: list[m.MediaOp] = field(default_factory=list)  # then these, here

    @property
    def links(self) -> bool:
        return bool(self.members or self.bridges)


def member_relay(call_control_id: str, conference_id: str) -> str:
    """The relay leg a member's own node bridges the member to, toward the conference's home."""
    return f"relay:{call_control_id}@{conference_id}"


def bridge_relay(a: str, b: str) -> str:
    """The relay leg ``a``'s node bridges ``a`` to, toward ``b``'s node."""
    return f"relay:{a}>{b}"


class Relays:
    def __init__(self, here: str) -> None:
        self.here = here
        self.members: dict[str, dict[str, str]] = {}
        self.attached: dict[str, str] = {}

    def plan(self, ops: Sequence[m.MediaOp], placements: Mapping[str, str]) -> Plan:
        """What applying ``ops`` here takes, the bookkeeping updated as if it were done (``forget_*`` undo a
        link that failed)."""
        plan = Plan()
        for op in ops:
            for cid in named(op):
                self._detach(cid, plan)
            match op:
                case m.Bridge(a=a, b=b) if placements.get(b, self.here) != self.here:
                    link = BridgeLink(a, b, placements[b])
                    self.attached[a] = link.relay
                    plan.bridges.append(link)
                    continue  # the relay leg opened bridged to ``a`` is the bridge here
                case m.ConferenceMix(conference_id=conf, members=members):
                    self._mix(conf, members, placements, plan)
                case m.ConferenceClosed(conference_id=conf):
                    plan.close += self.members.pop(conf, {})
            plan.ops.append(op)
        return plan

    def wants_links(self, ops: Sequence[m.MediaOp], placements: Mapping[str, str]) -> bool:
        """Whether applying ``ops`` here would open relays (so needs the bus)."""
        for op in ops:
            match op:
                case m.Bridge(b=b) if placements.get(b, self.here) != self.here:
                    return True
                case m.ConferenceMix(conference_id=conf, members=members):
                    have = self.members.get(conf, {})
                    for member in members:
                        where = placements.get(member.call_control_id, self.here)
                        if where != self.here and have.get(member.call_control_id) != where:
                            return True
        return False

    def _mix(self, conf: str, members: Sequence[m.ConferenceMember], placements: Mapping[str, str],
             plan: Plan) -> None:  # fmt: skip
        have = self.members.setdefault(conf, {})
        wanted: dict[str, str] = {}
        for member in members:
            cid = member.call_control_id
            where = placements.get(cid, self.here)
            if where == self.here:
                self._detach(cid, plan)  # mixed here now, not over a relay to another home
            else:
                wanted[cid] = where
        for cid, where in list(have.items()):
            if wanted.get(cid) != where:
                del have[cid]
                plan.close.append(cid)
        for cid, where in wanted.items():
            if cid not in have:
                have[cid] = where
                plan.members.append(MemberLink(conf, cid, where))
        if not have:
            del self.members[conf]

    def _detach(self, cid: str, plan: Plan) -> None:
        relay = self.attached.pop(cid, None)
        if relay is not None:
            plan.close.append(relay)

    def attach(self, cid: str, relay: str) -> str | None:
        """``cid`` is bridged to ``relay`` now; the relay leg it was bridged to before, to close."""
        old = self.attached.get(cid)
        self.attached[cid] = relay
        return old if old != relay else None

    def forget_member(self, link: MemberLink) -> None:
        have = self.members.get(link.conference_id, {})
        if have.get(link.call_control_id) == link.node:
            del have[link.call_control_id]

    def forget_attached(self, cid: str, relay: str) -> None:
        if self.attached.get(cid) == relay:
            del self.attached[cid]
