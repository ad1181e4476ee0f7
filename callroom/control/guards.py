"""Preconditions shared by commands, each raising the Telnyx error a client expects.

Telnyx codes used (see README, "Errors"): 90015 invalid call_control_id, 90018 call already ended,
90019 conference already ended, 90034 call not answered, 90058 conference not found, 90033 conference
name in use, 90036 queue full, 90038 call already in a queue. Where Telnyx documents no code, callroom
uses its own in the 90100 range (listed in ``CODES`` below) and says so in the README.
"""

from __future__ import annotations

from callroom.control.context import Ctx
from callroom.errors import CommandRejected, NotFound
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
}


def reject(code: str, detail: str, pointer: str | None = None) -> CommandRejected:
    return CommandRejected(code, CODES.get(code, "Command rejected"), detail, pointer)


def get_call(ctx: Ctx, call_control_id: str, *, pointer: str | None = None) -> Call:
    """The call, locked for update; 90015 if this account has no such call."""
    call = ctx.tx.get_call(ctx.account_id, call_control_id, lock=True)
    if call is None:
        raise CommandRejected(
            "90015", "Invalid Call Control ID", f"No call with call_control_id {call_control_id!r}.", pointer
        )
    return call


def live_call(ctx: Ctx, call_control_id: str, *, pointer: str | None = None) -> Call:
    call = get_call(ctx, call_control_id, pointer=pointer)
    if not call.is_alive:
        raise CommandRejected(
            "90018", "Call has already ended", "This call is no longer active and can't receive commands.", pointer
        )
    ctx.read_app_ahead(call.connection_id)
    return call


def answered_call(ctx: Ctx, call_control_id: str, *, pointer: str | None = None) -> Call:
    call = live_call(ctx, call_control_id, pointer=pointer)
    if call.state not in ANSWERED_CALL_STATES:
        raise CommandRejected(
            "90034", "Call not answered yet", "The call must be answered before this command.", pointer
        )
    return call


def find_conference(
    ctx: Ctx, id_or_name: str, *, by_name: bool = True, with_members: bool = False, lock: bool = True
) -> Conference:
    """A conference by id, or (for most actions) by the name of an active one; 404 90058 otherwise.
    ``with_members``: the action reads ``mix_members`` next (see ``Tx.get_conference``). ``lock``: its row
    is locked (PostgreSQL) until the command commits."""
    conf = ctx.tx.get_conference(ctx.account_id, id_or_name, lock=lock, with_members=with_members)
    if conf is None and by_name:
        conf = ctx.tx.active_conference_by_name(ctx.account_id, id_or_name, lock=lock)
    if conf is None:
        raise NotFound(f"No conference with id{' or name' if by_name else ''} {id_or_name!r}.", "90058",
                       "Conference not found")
    return conf


def active_conference(
    ctx: Ctx, id_or_name: str, *, by_name: bool = True, with_members: bool = False, lock: bool = True
) -> Conference:
    conf = find_conference(ctx, id_or_name, by_name=by_name, with_members=with_members, lock=lock)
    if not conf.is_active:
        raise CommandRejected("90019", "Conference has already ended", "This conference has already ended.")
    return conf


