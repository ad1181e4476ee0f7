"""The relay legs a node keeps and what a batch of instructions changes of them (``cluster/relays.py``)."""

from __future__ import annotations

from callroom.cluster.relays import BridgeLink, MemberLink, Relays, bridge_relay, member_relay
from callroom.model import media as m


def mix(conf: str, *cids: str, muted: tuple[str, ...] = ()) -> m.ConferenceMix:
    return m.ConferenceMix(conf, tuple(m.ConferenceMember(c, c in muted, False, "none") for c in cids))


def test_a_home_links_each_member_that_lives_elsewhere_once() -> None:
    home = Relays("h")
    where = {"a": "h", "b": "r1", "c": "r2"}
    plan = home.plan([mix("conf", "a", "b", "c")], where)
    assert plan.members == [MemberLink("conf", "b", "r1"), MemberLink("conf", "c", "r2")]
    assert plan.ops == [mix("conf", "a", "b", "c")] and plan.close == []
    assert plan.members[0].far_relay == member_relay("b", "conf")
    # a mute changes no relay
    again = home.plan([mix("conf", "a", "b", "c", muted=("b",))], where)
    assert not again.links and again.close == []
    assert not home.wants_links([mix("conf", "a", "b", "c")], where)


def test_a_member_that_leaves_loses_its_relay_and_a_closed_conference_all_of_them() -> None:
    home = Relays("h")
    where = {"a": "h", "b": "r1", "c": "r2"}
    home.plan([mix("conf", "a", "b", "c")], where)
    plan = home.plan([mix("conf", "a", "c")], where)
    assert plan.close == ["b"] and not plan.links
    plan = home.plan([m.ConferenceClosed("conf")], where)
    assert plan.close == ["c"]
    assert home.members == {}


def test_a_call_linked_to_a_remote_home_is_unlinked_by_whatever_places_it_next() -> None:
    node = Relays("r1")
    assert node.attach("b", member_relay("b", "conf")) is None
    plan = node.plan([m.Park("b")], {})
    assert plan.close == [member_relay("b", "conf")] and plan.ops == [m.Park("b")]
    assert node.attached == {}
    # a link to another relay replaces the first
    node.attach("b", member_relay("b", "conf"))
    assert node.attach("b", member_relay("b", "conf2")) == member_relay("b", "conf")


def test_a_conference_moved_home_mixes_its_local_members_here_instead_of_over_their_relays() -> None:
    node = Relays("r1")
    node.attach("b", member_relay("b", "conf"))  # the conference was mixed on a node that died
    plan = node.plan([mix("conf", "b", "c")], {"b": "r1", "c": "r2", "conf": "r1"})
    assert plan.close == [member_relay("b", "conf")]
    assert plan.members == [MemberLink("conf", "c", "r2")]


def test_a_bridge_to_a_call_elsewhere_becomes_a_link_not_an_instruction() -> None:
    node = Relays("r1")
    plan = node.plan([m.Bridge("a", "b")], {"a": "r1", "b": "r2"})
    assert plan.bridges == [BridgeLink("a", "b", "r2")] and plan.ops == []
    assert node.attached == {"a": bridge_relay("a", "b")}
    assert plan.bridges[0].far_relay == bridge_relay("b", "a")
    # hanging up closes it
    assert node.plan([m.Release("a")], {}).close == [bridge_relay("a", "b")]


def test_a_failed_link_is_forgotten() -> None:
    home = Relays("h")
    plan = home.plan([mix("conf", "a", "b")], {"a": "h", "b": "r1"})
    home.forget_member(plan.members[0])
    assert home.wants_links([mix("conf", "a", "b")], {"a": "h", "b": "r1"})
    node = Relays("r1")
    node.plan([m.Bridge("a", "b")], {"b": "r2"})
    node.forget_attached("a", bridge_relay("a", "b"))
    assert node.attached == {}
