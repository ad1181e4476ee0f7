"""Preconditions shared by commands, each raising the Telnyx error a client expects.

Telnyx codes used (see README, "Errors"): 90015 invalid call_control_id, 90018 call already ended,
90019 conference already ended, 90034 call not answered, 90058 conference not found, 90033 conference
name in use, 90036 queue full, 90038 call already in a queue. Where Telnyx documents no code, callroom
uses its own in the 90100 range (listed in ``CODES`` below) and says so in the README. Refusals that depend
only on a call's state live in its transition table (``model.states``).
"""

from __future__ import annotations

from callroom.control.world import Steps, World
from callroom.errors import CommandRejected, NotFound
from callroom.model import reads as r
from callroom.model.records import Call, Conference
from callroom.model.states import ANSWERED_CALL_STATES

CODES = {
    "90100": "Call is not in a queue",
    "90101": "Queue is empty",
    "90102": "Queued call has hung up",
    "90103": "Conference is full",
    "90104": "Call is already in a conference",
    "90105": "Call is not a participant of this conference",
    "90106": "Queue is not empty",
    "90107": "Call is not in a state that allows this command",
    "90108": "Destination cannot be dialled",
    "90130": "Caller ID not allowed on this trunk",
}


def reject(code: str, detail: str, pointer: str | None = None) -> CommandRejected:
    return CommandRejected(code, CODES.get(code, "Command rejected"), detail, pointer)


def known(w: World, call_control_id: str, *, pointer: str | None = None) -> Call:
    """The call (read already); 90015 if this account has no such call."""
    call = w.call(call_control_id)
    if call is None:
        raise CommandRejected(
            "90015", "Invalid Call Control ID", f"No call with call_control_id {call_control_id!r}.", pointer
        )
    return call


def live(w: World, call_control_id: str, *, pointer: str | None = None) -> Call:
    call = known(w, call_control_id, pointer=pointer)
    if not call.is_alive:
        raise CommandRejected(
            "90018", "Call has already ended", "This call is no longer active and can't receive commands.", pointer
        )
    return call


def answered(w: World, call_control_id: str, *, pointer: str | None = None) -> Call:
    call = live(w, call_control_id, pointer=pointer)
    if call.state not in ANSWERED_CALL_STATES:
        raise CommandRejected(
            "90034", "Call not answered yet", "The call must be answered before this command.", pointer
        )
    return call


def conference(w: World, id_or_name: str, *, by_name: bool = True, lock: bool = True, with_members: bool = False,
               mix: bool = False, also: tuple[r.Read, ...] = ()) -> Steps[Conference]:  # fmt: skip
    """A conference by id, or (for most actions) by the name of an active one; 404 90058 otherwise. The id
    is tried first, with the conference's members if ``with_members`` and the command's other reads
    (``also``, after the conference's lock) in one batch; a name then costs a second batch (and a third for
    its members). ``mix``: the members as the mix needs them (``MixOf``), not whole participants."""
    by_id: list[r.Read] = [r.ConferenceById(id_or_name, lock)]
    if with_members:
        by_id.append(r.MixOf(id_or_name) if mix else r.MembersOf(id_or_name))
    yield from w.load(*by_id, *also)
    found: Conference | None = w.result(r.ConferenceById(id_or_name, lock))
    if found is not None:
        return found
    if by_name:
        yield from w.load(r.ConferenceByName(id_or_name, lock), *also)
        named: Conference | None = w.result(r.ConferenceByName(id_or_name, lock))
        if named is not None:
            if with_members:
                yield from w.load(r.MixOf(named.id) if mix else r.MembersOf(named.id))
            return named
    raise NotFound(f"No conference with id{' or name' if by_name else ''} {id_or_name!r}.", "90058",
                   "Conference not found")


def active_conference(w: World, id_or_name: str, *, by_name: bool = True, lock: bool = True,
                      with_members: bool = False, mix: bool = False,
                      also: tuple[r.Read, ...] = ()) -> Steps[Conference]:  # fmt: skip
    conf = yield from conference(w, id_or_name, by_name=by_name, lock=lock, with_members=with_members, mix=mix,
                                 also=also)
    if not conf.is_active:
        raise CommandRejected("90019", "Conference has already ended", "This conference has already ended.")
    return conf
