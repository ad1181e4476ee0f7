"""mute / unmute / hold / unhold: a flag change of some or all of a conference's participants.

One way: the conference and its members (as the mix needs them) are read in one batch, unlocked; the change
is checked (an unknown conference 90058, an ended one 90019, a call named that is not a participant 90105);
the conference is locked with the writes (``World.lock_with_writes``), the flags are set on the targets in
one statement, and the media plane is told what changed of them (``MemberFlags``), not the whole mix.

What a flag change writes does not depend on what it read (it sets the same values whatever they were), so it
need not hold the conference's lock while it reads and decides: it takes it with its writes, in the round
trip of the COMMIT, and a busy conference's flag changes follow each other at the pace of one round trip,
not two. Holding the lock while the writes travel still orders its media instruction against every other
command on the conference (joins and leaves send the whole mix, read under the same lock); and since it
names only what it changed, it undoes nobody else's change read stale.
"""

from __future__ import annotations

from typing import Any

from callroom.control.conferences import hold_audio, targets
from callroom.control.guards import active_conference
from callroom.control.world import Steps, World
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.records import MixMember


def set_flags(
    w: World, id_or_name: str, call_control_ids: list[str] | None, *, muted: bool | None = None,
    on_hold: bool | None = None, hold_audio_url: str | None = None, hold_media_name: str | None = None,
) -> Steps[None]:
    """A missing or empty ``call_control_ids`` means every participant."""
    conf = yield from active_conference(w, id_or_name, lock=False, with_members=True, mix=True)
    w.lock_with_writes(conf)
    present: list[MixMember] = w.result(r.MixOf(conf.id))
    changed = targets(present, call_control_ids)
    changes: dict[str, Any] = {"updated_at": w.now}
    if muted is not None:
        changes["muted"] = muted
    audio = None
    if on_hold is not None:
        changes["on_hold"] = on_hold
        if on_hold and (hold_audio_url or hold_media_name):
            changes["hold_audio_url"], changes["hold_media_name"] = hold_audio_url, hold_media_name
            audio = yield from hold_audio(w, hold_audio_url, hold_media_name)
    w.set_participant_flags(changed, changes)
    if changed:
        w.media.append(m.MemberFlags(conf.id, tuple(p.call_control_id for p in changed), muted, on_hold, audio))
