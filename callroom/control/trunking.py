"""Calls to phone numbers through SIP trunks: which trunk, which caller ID, and how the number is written."""

from __future__ import annotations

from callroom.control.guards import reject
from callroom.control.world import World
from callroom.model.numbers import normalise
from callroom.model.records import Application
from callroom.model.trunks import trunk_endpoint


def through_trunk(w: World, app: Application, to: str, from_: str) -> str | None:
    """The far end of a call from ``app`` to number ``to`` through the trunk its outbound settings choose
    (None: no trunk for it). The caller ID must be a number the trunk allows (422 / 90130)."""
    trunk = w.trunks.outbound_trunk(app.account_id, app.outbound)
    number = normalise(to)
    if trunk is None or number is None:
        return None
    caller = normalise(from_)
    if caller is None:
        raise reject("90130", f"Calls through trunk {trunk.name!r} need an E.164 number as their from "
                     f"({from_!r} is not one).", "/from")
    if not trunk.caller_allowed(caller):
        raise reject("90130", f"Trunk {trunk.name!r} does not allow {caller} as caller ID (its allowed_from: "
                     f"{', '.join(trunk.allowed_from)}).", "/from")
    return trunk_endpoint(trunk, number)
