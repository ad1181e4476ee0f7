"""The media process's side of stored files: a key is asked of the node and played from the path it answers;
a failed answer is a ``MediaError`` (the playback then ends as a missing file does); a legacy absolute path
is read as it is, with nothing asked."""

from __future__ import annotations

import asyncio

import pytest

from callroom.errors import MediaError
from callroom.media_worker.stored_files import StoredFiles
from callroom.model.messages import FileReady, FileWanted


def test_a_key_is_asked_of_the_node_and_its_answer_is_the_path() -> None:
    asked: list[FileWanted] = []

    async def run() -> tuple[str, BaseException | None]:
        files = StoredFiles(asked.append)
        first = asyncio.create_task(files.path("media/acct/v1/hold.wav"))
        second = asyncio.create_task(files.path("media/acct/v1/gone.wav"))
        await asyncio.sleep(0)
        assert [a.key for a in asked] == ["media/acct/v1/hold.wav", "media/acct/v1/gone.wav"]
        files.ready(FileReady(asked[1].ask_id, None, "no stored file media/acct/v1/gone.wav"))
        files.ready(FileReady(asked[0].ask_id, "/data/files/media/acct/v1/hold.wav"))
        files.ready(FileReady(999, "/nowhere"))  # an answer nobody waits for (timed out) is dropped
        failure = (await asyncio.gather(second, return_exceptions=True))[0]
        return await first, failure if isinstance(failure, BaseException) else None

    path, failure = asyncio.run(run())
    assert path == "/data/files/media/acct/v1/hold.wav"
    assert isinstance(failure, MediaError) and "gone.wav" in str(failure)


def test_a_legacy_path_is_read_as_it_is() -> None:
    asked: list[FileWanted] = []
    assert asyncio.run(StoredFiles(asked.append).path("/var/lib/callroom/media/acct/old.wav")) == \
        "/var/lib/callroom/media/acct/old.wav"
    assert asked == []


def test_a_node_that_never_answers_fails_the_file_in_time() -> None:
    with pytest.raises(MediaError, match="no copy within"):
        asyncio.run(StoredFiles(lambda _wanted: None, timeout=0.05).path("media/acct/v1/slow.wav"))
