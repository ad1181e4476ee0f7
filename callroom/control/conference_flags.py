"""mute / unmute / hold / unhold: a flag change of some or all of a conference's participants.

One way: the conference (locked) and its members (as the mix needs them) are read in one batch, the change
is checked (an unknown conference 90058, an ended one 90019, a call named that is not a participant 90105),
the flags are set on the targets in one statement, and the mix is sent to the media plane as the change
leaves the members.
"""

from __future__ import annotations

from typing import Any

from callroom.control.conferences import push_mix, targets
from callroom.control.guards import active_conference
from callroom.control.world import Steps, World
from callroom.model import reads as r
from callroom.model.records import MixMember


def set_flags(
    w: World, id_or_name: str, call_control_ids: list[str] | None, *, muted: bool | None = None,
    on_hold: bool | None = None, hold_audio_url: str | None = None, hold_media_name: str | None = None,
) -> Steps[None]:
    """A missing or empty ``call_control_ids`` means every participant."""
    conf = yield from active_conference(w, id_or_name, with_members=True, mix=True)
    present: list[MixMember] = w.result(r.MixOf(conf.id))
    changed = targets(present, call_control_ids)
    changes: dict[str, Any] = {"updated_at": w.now}
    if muted is not None:
        changes["muted"] = muted
    if on_hold is not None:
        changes["on_hold"] = on_hold
        if on_hold and (hold_audio_url or hold_media_name):
            changes["hold_audio_url"], changes["hold_media_name"] = hold_audio_url, hold_media_name
    w.set_participant_flags(changed, changes)
    yield from push_mix(w, conf, also_media=hold_media_name, members=present)
