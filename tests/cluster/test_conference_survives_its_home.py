"""A conference's home (the node that mixes it) is killed (``kill -9``) while members on two other nodes talk:
within 10 s the survivors end the dead node's call (``call.hangup``, ``conference.participant.left``), move
the conference to a member's node, and the members left hear each other again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.media.audio import tone_level
from tests.support.cluster import Cluster, running_cluster
from tests.support.process import kill_hard
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.postgres

HEARD = 1500.0
SILENT = 150.0


def _hear_each_other(trio: Cluster, b: str, c: str, timeout: float) -> float:
    """Seconds until ``b`` (on n1) and ``c`` (on n2) hear each other's tones."""
    started = time.monotonic()
    while True:
        heard_b, heard_c = trio.heard(1, b, 0.4), trio.heard(2, c, 0.4)
        if tone_level(heard_b, 500) > HEARD and tone_level(heard_c, 2500) > HEARD:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (tone_level(heard_b, 500), tone_level(heard_c, 2500))
        time.sleep(0.2)


def test_a_conference_goes_on_when_the_node_that_mixes_it_dies(tmp_path: Path, receiver: WebhookReceiver,
                                                                cluster_db: str) -> None:  # fmt: skip
    with running_cluster(tmp_path, cluster_db, receiver) as trio:
        a = trio.dial(0, "a", "answer_after=0;tone=1900")
        b = trio.dial(1, "b", "answer_after=0;tone=2500")
        c = trio.dial(2, "c", "answer_after=0;tone=500")
        conf = trio.client(0).conferences.create(call_control_id=a, name=f"home-{uuid.uuid4().hex}",
                                                 comfort_noise=False)  # fmt: skip
        assert conf.data is not None
        conf_id = conf.data.id
        trio.client(1).conferences.actions.join(conf_id, call_control_id=b)
        trio.client(2).conferences.actions.join(conf_id, call_control_id=c)
        _hear_each_other(trio, b, c, timeout=4)
        assert tone_level(trio.heard(1, b, 0.4), 1900) > HEARD  # and a, mixed on n0

        kill_hard(trio.procs[0])
        killed = time.monotonic()
        left = trio.event("conference.participant.left", a, timeout=15, conference_id=conf_id)
        hangup = trio.event("call.hangup", a, timeout=15)
        assert time.monotonic() - killed < 10
        assert hangup.payload["hangup_source"] == "unknown" and left.payload["conference_id"] == conf_id
        _hear_each_other(trio, b, c, timeout=10 - (time.monotonic() - killed) + 2)
        assert tone_level(trio.heard(2, c, 0.4), 1900) < SILENT
        status = trio.client(1).conferences.retrieve(conf_id)
        assert status.data is not None and status.data.status != "completed"
        # the conference takes new members where it is mixed now
        d = trio.dial(2, "d", "answer_after=0;tone=1300")
        trio.client(1).conferences.actions.join(conf_id, call_control_id=d)
        deadline = time.monotonic() + 4
        while tone_level(trio.heard(1, b, 0.4), 1300) < HEARD:
            assert time.monotonic() < deadline, "b does not hear d, who joined after the move"
            time.sleep(0.2)
