"""Flag changes (mute/unmute/hold/unhold) on PostgreSQL: the conference and its members are read in one round
trip, unlocked, the change is decided from them, and it is written with the conference's lock and the COMMIT
in a second; an invalid change changes nothing. A command holding the conference's lock (a join, a leave,
another flag change) makes a flag change wait at its COMMIT."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid

import pytest

from callroom.control import conference_flags
from callroom.control.service import Control
from callroom.control.world import Steps, World
from callroom.errors import ApiError
from callroom.model import reads as r
from callroom.model.media import MemberFlags
from callroom.model.records import Conference, MediaFile, Participant
from callroom.model.states import ConferenceStatus, ParticipantStatus
from callroom.store import commands, media_tx, reads
from callroom.store.engine import Store
from tests.store import factories as f
from tests.store.factories import NOW

pytestmark = pytest.mark.postgres


class _OpsLog:
    def __init__(self) -> None:
        self.ops: list[object] = []

    def apply(self, ops: list[object]) -> None:
        self.ops.extend(ops)


def _setup(store: Store, *, status: ConferenceStatus = ConferenceStatus.IN_PROGRESS, name: str = "standup",
           ) -> tuple[str, Conference, list[Participant]]:
    acct = f.uid()
    conf = f.conference(acct, id=str(uuid.uuid4()), name=name, status=status, hold_media_name=None)
    people = [f.participant(acct, conf.id, status=ParticipantStatus.JOINED, muted=False, on_hold=False,
                            hold_media_name=None, hold_audio_url=None) for _ in range(3)]
    with store.transaction() as tx:
        tx.insert_conference(conf)
        for p in people:
            tx.insert_participant(p)
    return acct, conf, people


def _flags(store: Store, conf: Conference) -> dict[str, tuple[bool, bool]]:
    with store.transaction() as tx:
        return {p.call_control_id: (p.muted, p.on_hold) for p in tx.participants_of(conf.id, present_only=False)}


def _changes(media: _OpsLog) -> list[MemberFlags]:
    return [op for op in media.ops if isinstance(op, MemberFlags)]


def _mute(w: World, *, conference_id: str) -> Steps[None]:
    return conference_flags.set_flags(w, conference_id, None, muted=True)


def _control(store: Store) -> tuple[Control, _OpsLog]:
    media = _OpsLog()
    control = Control(store, "node-test", media)  # type: ignore[arg-type]
    control.cooperative = True
    return control, media


def test_the_reads_go_in_one_round_trip_and_the_change_with_the_commit(postgres_store: Store) -> None:
    acct, conf, people = _setup(postgres_store)
    with postgres_store.transaction() as tx:
        world = World(acct, NOW + 10, "node-test")
        before = tx.conn.round_trips
        _, effects, _ = commands.run(tx, world, conference_flags.set_flags(
            world, conf.id, [people[1].call_control_id], muted=True))
        assert tx.conn.round_trips == before + 1  # the conference and its members, together
        committing = tx.conn.round_trips
    assert tx.conn.round_trips == committing + 1  # the UPDATE travelled with the COMMIT
    assert effects.error is None
    assert effects.media == [MemberFlags(conf.id, (people[1].call_control_id,), muted=True)]
    assert _flags(postgres_store, conf)[people[1].call_control_id] == (True, False)


async def test_everyone_and_some(postgres_store: Store) -> None:
    acct, conf, people = _setup(postgres_store)
    control, media = _control(postgres_store)
    await control.arun(acct, lambda w: conference_flags.set_flags(w, conf.id, None, muted=True))
    assert set(_flags(postgres_store, conf).values()) == {(True, False)}
    ids = [people[0].call_control_id, people[2].call_control_id]
    await control.arun(acct, lambda w: conference_flags.set_flags(w, conf.id, ids, on_hold=True))
    flags = _flags(postgres_store, conf)
    assert [flags[p.call_control_id] for p in people] == [(True, True), (True, False), (True, True)]
    assert sorted(_changes(media)[0].call_control_ids) == sorted(p.call_control_id for p in people)
    last = _changes(media)[-1]
    assert sorted(last.call_control_ids) == sorted(ids) and (last.muted, last.on_hold) == (None, True)


async def test_an_unknown_call_changes_nobody(postgres_store: Store) -> None:
    acct, conf, people = _setup(postgres_store)
    control, media = _control(postgres_store)
    ids = [people[0].call_control_id, "v3:nobody"]
    with pytest.raises(ApiError) as rejected:
        await control.arun(acct, lambda w: conference_flags.set_flags(w, conf.id, ids, muted=True))
    [item] = rejected.value.items
    assert item.code == "90105" and "v3:nobody" in item.detail and item.pointer == "/call_control_ids"
    assert set(_flags(postgres_store, conf).values()) == {(False, False)}
    assert not _changes(media)


async def test_an_ended_conference_changes_nobody(postgres_store: Store) -> None:
    acct, conf, _people = _setup(postgres_store, status=ConferenceStatus.COMPLETED)
    control, media = _control(postgres_store)
    with pytest.raises(ApiError) as rejected:
        await control.arun(acct, lambda w: conference_flags.set_flags(w, conf.id, None, muted=True))
    assert [i.code for i in rejected.value.items] == ["90019"]
    assert set(_flags(postgres_store, conf).values()) == {(False, False)}
    assert not _changes(media)


async def test_another_account_or_no_such_id_is_not_found(postgres_store: Store) -> None:
    _acct, conf, _people = _setup(postgres_store)
    control, _media = _control(postgres_store)
    for acct, conference_id in ((f.uid(), conf.id), (conf.account_id, str(uuid.uuid4()))):
        with pytest.raises(ApiError) as missing:
            await control.arun(acct, functools.partial(_mute, conference_id=conference_id))
        assert missing.value.status == 404 and [i.code for i in missing.value.items] == ["90058"]
    assert set(_flags(postgres_store, conf).values()) == {(False, False)}


async def test_a_conference_named_like_an_id_is_found_by_its_name(postgres_store: Store) -> None:
    name = str(uuid.uuid4())
    acct, conf, _people = _setup(postgres_store, name=name)
    control, media = _control(postgres_store)
    await control.arun(acct, lambda w: conference_flags.set_flags(w, name, None, muted=True))
    assert set(_flags(postgres_store, conf).values()) == {(True, False)}
    assert _changes(media)[-1].conference_id == conf.id


async def test_stored_hold_audio_is_resolved(postgres_store: Store) -> None:
    acct, conf, people = _setup(postgres_store)
    with postgres_store.transaction() as tx:
        media_tx.put_media(tx, MediaFile(account_id=acct, media_name="lobby", path="/var/media/lobby.wav",
                                         content_type="audio/wav", size_bytes=44, created_at=NOW, updated_at=NOW))
    control, media = _control(postgres_store)
    target = [people[0].call_control_id]
    await control.arun(acct, lambda w: conference_flags.set_flags(w, conf.id, target, on_hold=True,
                                                                 hold_media_name="lobby"))
    lobby = "file:/var/media/lobby.wav"
    assert _changes(media) == [MemberFlags(conf.id, tuple(target), on_hold=True, hold_audio=lobby)]


def _hold_lock(store: Store, conf: Conference, held: threading.Event, release: threading.Event) -> None:
    """A transaction that takes the conference's lock and keeps it until ``release``."""
    with store.transaction() as tx:
        reads.answer(tx, conf.account_id, (r.ConferenceById(conf.id, lock=True),))
        held.set()
        release.wait(5)


async def test_a_flag_change_waits_for_the_conferences_lock_with_its_writes(postgres_store: Store) -> None:
    acct, conf, people = _setup(postgres_store)
    control, _media = _control(postgres_store)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(postgres_store, conf, held, release))
    holder.start()
    try:
        assert held.wait(5)
        mute = asyncio.ensure_future(control.arun(acct, lambda w: conference_flags.set_flags(
            w, conf.id, [people[0].call_control_id], muted=True)))
        done, _ = await asyncio.wait({mute}, timeout=0.5)
        assert not done  # a join or leave holds the lock: the change (and its instruction) waits for it
        assert _flags(postgres_store, conf)[people[0].call_control_id] == (False, False)
        release.set()
        await asyncio.wait_for(mute, 5)
    finally:
        release.set()
        holder.join()
    assert _flags(postgres_store, conf)[people[0].call_control_id] == (True, False)
