"""A node stops answering without closing anything (``SIGSTOP``: its machine stalled or was cut off): a
command that needs it fails with 503 / 90113 and changes nothing; the cluster then takes it for dead, ends
its calls and moves its conference; when it comes back (``SIGCONT``) it hangs up what the cluster ended and
joins again."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
import telnyx

from tests.media.audio import tone_level
from tests.support.cluster import running_cluster
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.postgres


def test_a_stalled_node_fails_commands_cleanly_then_is_replaced_then_rejoins(
        tmp_path: Path, receiver: WebhookReceiver, cluster_db: str) -> None:  # fmt: skip
    with running_cluster(tmp_path, cluster_db, receiver, 2) as duo:
        a = duo.dial(0, "a", "answer_after=0;tone=1900")
        b = duo.dial(1, "b", "answer_after=0;tone=500")
        c = duo.dial(1, "c", "answer_after=0;tone=2500")
        conf = duo.client(0).conferences.create(call_control_id=a, name=f"stall-{uuid.uuid4().hex}",
                                                comfort_noise=False)  # fmt: skip
        assert conf.data is not None
        conf_id = conf.data.id
        for leg in (b, c):
            duo.client(1).conferences.actions.join(conf_id, call_control_id=leg)

        duo.procs[0].send_signal(signal.SIGSTOP)
        stalled = time.monotonic()
        try:
            started = time.monotonic()
            with pytest.raises(telnyx.APIStatusError) as refused:
                duo.client(1).conferences.actions.mute(conf_id, call_control_ids=[b])  # mixed on the stalled node
            assert refused.value.status_code == 503
            error = refused.value.body["errors"][0]  # type: ignore[index]
            assert error["code"] == "90113" and "n0" in error["detail"], error
            assert time.monotonic() - started < 5
            participants = list(duo.client(1).conferences.list_participants(conf_id))
            assert not any(p.muted for p in participants), "a refused command changed something"

            hangup = duo.event("call.hangup", a, timeout=15)
            assert time.monotonic() - stalled < 10 and hangup.payload["hangup_source"] == "unknown"
            # the conference is mixed on n1 now: b and c hear each other
            deadline = time.monotonic() + 6
            while tone_level(duo.heard(1, b, 0.4), 2500) < 1500 or tone_level(duo.heard(1, c, 0.4), 500) < 1500:
                assert time.monotonic() < deadline, "the conference did not come back on the live node"
                time.sleep(0.2)
        finally:
            duo.procs[0].send_signal(signal.SIGCONT)

        # back: it finds itself taken for dead, hangs up the call the cluster ended, and is up again
        deadline = time.monotonic() + 10
        while True:
            phones = httpx.get(f"{duo.roots[0]}/virtual/phones", headers=duo.headers, timeout=5).json()["data"]
            nodes = {n["node_id"]: n for n in
                     httpx.get(f"{duo.roots[1]}/v2/cluster", headers=duo.headers, timeout=5).json()["data"]["nodes"]}
            if not any(p["call_control_id"] == a for p in phones) and nodes["n0"]["status"] == "up":
                break
            assert time.monotonic() < deadline, (phones, nodes["n0"])
            time.sleep(0.3)
        # and takes commands again
        duo.client(1).conferences.actions.mute(conf_id, call_control_ids=[b])
        assert next(p for p in duo.client(0).conferences.list_participants(conf_id) if p.call_control_id == b).muted
