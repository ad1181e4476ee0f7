"""mute / unmute / hold / unhold: a flag change of some or all of a conference's participants.

Both ways end the same: the flags written, the conference's row locked only while the server works (not
across a round trip and this process's turn), and the mix sent to the media plane built after the commit
from the members as the change left them (``Ctx.after_commit``).

- Checked, then written (``_checked_then_written``, SQLite and the general case): the conference and its
  members are read and checked (unknown ids, an ended conference); then the row is locked, the flags
  written and the members read back, on PostgreSQL all travelling with the COMMIT. Two round trips.
- Written, then checked (``_in_one_trip``, PostgreSQL, a conference named by its id, no ``command_id``):
  the lock, one statement that writes only if the change is valid (``Tx.set_flags_if_valid``), the
  members and the stored hold audio read back, and the COMMIT go in one round trip; the reads then say
  whether it was valid, and an invalid change (which changed nothing) answers the same error as the
  checked way. When no conference has that id (nothing changed), the command runs again the checked way
  (``Ctx.again``), which answers "not found" or finds a conference *named* so.
"""

from __future__ import annotations

import re
from typing import Any

from callroom.control.conferences import _hold_audio, _targets, _unknown_ids, push_mix
from callroom.control.context import Ctx
from callroom.control.guards import active_conference, reject
from callroom.errors import CommandRejected

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def set_flags(
    ctx: Ctx, id_or_name: str, call_control_ids: list[str] | None, *, muted: bool | None = None,
    on_hold: bool | None = None, hold_audio_url: str | None = None, hold_media_name: str | None = None,
) -> None:
    """A missing or empty ``call_control_ids`` means every participant."""
    changes: dict[str, Any] = {"updated_at": ctx.now}
    if muted is not None:
        changes["muted"] = muted
    if on_hold is not None:
        changes["on_hold"] = on_hold
        if on_hold and (hold_audio_url or hold_media_name):
            changes["hold_audio_url"], changes["hold_media_name"] = hold_audio_url, hold_media_name
    if ctx.read_ahead and ctx.command_id is None and _UUID.match(id_or_name):
        _in_one_trip(ctx, id_or_name, call_control_ids or [], changes, hold_media_name)
    else:
        _checked_then_written(ctx, id_or_name, call_control_ids, changes, hold_media_name)


def _checked_then_written(
    ctx: Ctx, id_or_name: str, call_control_ids: list[str] | None, changes: dict[str, Any],
    hold_media_name: str | None,
) -> None:
    conf = active_conference(ctx, id_or_name, with_members=True, lock=False)
    present = ctx.tx.mix_members(conf.id)
    targets = _targets(present, call_control_ids)
    # Locked, then read again as the lock found it (on SQLite the first read stands: no other writer).
    locked = ctx.tx.read_conference(ctx.account_id, conf.id, lock=True) if ctx.tx.rows_can_change else None
    ctx.tx.set_participant_flags([p.id for p in targets], changes)  # never a participant who has left
    members = ctx.tx.read_mix_members(conf.id)
    # Stored hold audio is looked up now (a read), not after the commit. (A file named by a change that
    # committed in between is not known here: that member gets the built-in music until the next change.)
    names = {hold_media_name, conf.hold_media_name, *(p.hold_media_name for p in present)}
    hold_files = {name: _hold_audio(ctx, None, name) for name in names if name}

    def push() -> None:
        now = ctx.tx.conference_in(locked) if locked is not None else conf
        if now is None or not now.is_active:  # ended meanwhile: the write changed nobody (they have left)
            ctx.deferred_error = reject("90019", "This conference has already ended.")
            return
        push_mix(ctx, now, present=ctx.tx.mix_members_in(members), hold_files=hold_files)

    ctx.after_commit(push)


def _in_one_trip(
    ctx: Ctx, conference_id: str, call_control_ids: list[str], changes: dict[str, Any], hold_media_name: str | None
) -> None:
    locked = ctx.tx.read_conference(ctx.account_id, conference_id, lock=True)
    ctx.tx.set_flags_if_valid(ctx.account_id, conference_id, call_control_ids, changes)
    members = ctx.tx.read_mix_members(conference_id)
    hold_media = ctx.tx.read_hold_media(ctx.account_id, conference_id, hold_media_name)

    def push() -> None:
        conf = ctx.tx.conference_in(locked)
        if conf is None:  # nothing changed; the checked way tells "not found" or finds one named so
            ctx.again = True
            return
        if not conf.is_active:
            ctx.deferred_error = CommandRejected("90019", "Conference has already ended",
                                                 "This conference has already ended.")
            return
        present = ctx.tx.mix_members_in(members)
        unknown = _unknown_ids(present, call_control_ids)
        if unknown:  # nothing was written
            ctx.deferred_error = reject("90105", f"Not participants of this conference: {', '.join(unknown)}.",
                                        "/call_control_ids")
            return
        hold_files: dict[str, str | None] = {name: f"file:{path}" for name, path in hold_media}
        push_mix(ctx, conf, present=present, hold_files=hold_files)

    ctx.after_commit(push)
