"""Store access for media jobs, recordings and uploaded media files (kept apart from ``tx.py``)."""

from __future__ import annotations

from sqlalchemy import and_, delete, insert, or_, select, update

from callroom.model.records import MediaFile, MediaJob, Recording
from callroom.store import schema as t
from callroom.store.tx import Tx, from_row, to_row


def insert_job(tx: Tx, job: MediaJob) -> None:
    tx.conn.execute(insert(t.media_jobs).values(to_row(job)))


def update_job(tx: Tx, job: MediaJob) -> None:
    tx.conn.execute(update(t.media_jobs).where(t.media_jobs.c.id == job.id).values(to_row(job)))


def get_job(tx: Tx, job_id: str) -> MediaJob | None:
    row = tx.conn.execute(select(t.media_jobs).where(t.media_jobs.c.id == job_id)).first()
    return None if row is None else from_row(MediaJob, row)


def open_jobs(tx: Tx, *, call_control_id: str | None = None, conference_id: str | None = None,
              kind: str | None = None) -> list[MediaJob]:
    c = t.media_jobs.c
    where = c.status != "done"
    if call_control_id is not None:
        where = and_(where, c.call_control_id == call_control_id)
    if conference_id is not None:
        where = and_(where, c.conference_id == conference_id)
    if kind is not None:
        where = and_(where, c.kind == kind)
    rows = tx.conn.execute(select(t.media_jobs).where(where).order_by(c.created_at))
    return [from_row(MediaJob, r) for r in rows]


def insert_recording(tx: Tx, rec: Recording) -> None:
    tx.conn.execute(insert(t.recordings).values(to_row(rec)))


def update_recording(tx: Tx, rec: Recording) -> None:
    tx.conn.execute(update(t.recordings).where(t.recordings.c.id == rec.id).values(to_row(rec)))


def get_recording(tx: Tx, account_id: str, recording_id: str) -> Recording | None:
    c = t.recordings.c
    row = tx.conn.execute(select(t.recordings).where(and_(c.id == recording_id, c.account_id == account_id))).first()
    return None if row is None else from_row(Recording, row)


def get_recording_any_account(tx: Tx, recording_id: str) -> Recording | None:
    """For a public recording link, whose signature stands for the account (``api/routes_files.py``)."""
    row = tx.conn.execute(select(t.recordings).where(t.recordings.c.id == recording_id)).first()
    return None if row is None else from_row(Recording, row)


def delete_recording(tx: Tx, rec: Recording) -> None:
    tx.conn.execute(delete(t.recordings).where(t.recordings.c.id == rec.id))


def list_recordings(tx: Tx, account_id: str, page: int, size: int, filters: dict[str, str]) -> tuple[
    list[Recording], int
]:
    c = t.recordings.c
    where = and_(c.account_id == account_id, c.status == "completed")
    for key in ("call_control_id", "call_leg_id", "call_session_id", "conference_id"):
        if key in filters:
            where = and_(where, getattr(c, key) == filters[key])
    return tx._page(Recording, t.recordings, where, [c.created_at.desc(), c.id], page, size)


def put_media(tx: Tx, media: MediaFile) -> None:
    c = t.media_files.c
    key = and_(c.account_id == media.account_id, c.media_name == media.media_name)
    if tx.conn.execute(select(c.media_name).where(key)).first() is None:
        tx.conn.execute(insert(t.media_files).values(to_row(media)))
    else:
        tx.conn.execute(update(t.media_files).where(key).values(to_row(media)))


def get_media(tx: Tx, account_id: str, media_name: str) -> MediaFile | None:
    c = t.media_files.c
    row = tx.conn.execute(
        select(t.media_files).where(and_(c.account_id == account_id, c.media_name == media_name))
    ).first()
    return None if row is None else from_row(MediaFile, row)


def delete_media(tx: Tx, media: MediaFile) -> None:
    c = t.media_files.c
    tx.conn.execute(delete(t.media_files).where(and_(c.account_id == media.account_id,
                                                     c.media_name == media.media_name)))


def list_media(tx: Tx, account_id: str, page: int, size: int, now: float) -> tuple[list[MediaFile], int]:
    c = t.media_files.c
    where = and_(c.account_id == account_id, or_(c.expires_at.is_(None), c.expires_at > now))
    return tx._page(MediaFile, t.media_files, where, [c.created_at, c.media_name], page, size)


def expired_media(tx: Tx, now: float, limit: int = 100) -> list[MediaFile]:
    """Media files of every account past their ``ttl_secs``, the oldest expiry first."""
    c = t.media_files.c
    return tx._all(MediaFile, select(t.media_files).where(c.expires_at <= now).order_by(c.expires_at).limit(limit))
