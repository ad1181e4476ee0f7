"""A console behind one node of a cluster sees its account's events from every node
(``cluster/console_feed.py``): a call dialled through another node, and a mute carried out on the
conference's home, reach it."""

from __future__ import annotations

import uuid

import pytest

from tests.console.push import PushReader
from tests.support.cluster import Cluster

pytestmark = pytest.mark.postgres


def test_a_console_on_one_node_sees_what_the_others_commit(trio: Cluster) -> None:
    console = PushReader(trio.roots[2], trio.api_key)
    try:
        console.wait(lambda kind, _body: kind == "hello")
        cid = trio.dial(0, "elsewhere")  # committed by n0; the console is served by n2
        console.wait(lambda kind, body: kind == "webhook" and body["event_type"] == "call.answered"
                     and body["payload"]["call_control_id"] == cid, timeout=5.0)  # fmt: skip
        conf = trio.client(1).conferences.create(call_control_id=cid, name=f"watched-{uuid.uuid4().hex}")
        assert conf.data is not None
        console.wait(lambda kind, body: kind == "webhook" and body["event_type"] == "conference.created",
                     timeout=5.0)  # fmt: skip
        trio.client(1).conferences.actions.mute(conf.data.id)  # no webhook: the home tells of the change
        conf_id = conf.data.id
        console.wait(lambda kind, body: kind == "touched" and body["conference_id"] == conf_id, timeout=5.0)
    finally:
        console.close()
