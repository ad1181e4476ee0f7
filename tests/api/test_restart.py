"""A node restart keeps applications, queues and conference history, and ends the legs whose media
died with the old process (with their webhooks)."""

from __future__ import annotations

from pathlib import Path

import telnyx

from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant


def test_restart_keeps_state_and_ends_orphaned_legs(tmp_path: Path, receiver: WebhookReceiver) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = NodeThread(url, tmp_path, node_id="node-restart")
    key = first.new_key("restart")
    client = telnyx.Telnyx(api_key=key, base_url=first.base_url, max_retries=0)
    app = client.call_control_applications.create(application_name="r", webhook_event_url=receiver.url("/restart"))
    assert app.data is not None and app.data.id
    tenant = Tenant(client, first, receiver, key, "/restart", app.data.id)
    client.queues.create(queue_name="survivor", max_size=7)
    host = tenant.dial("host")
    conf = client.conferences.create(call_control_id=host, name="before-restart")
    assert conf.data is not None
    waiting = tenant.call_in()
    client.calls.actions.enqueue(waiting, queue_name="survivor", keep_after_hangup=True)
    tenant.event("call.enqueued", waiting)
    first.stop()  # the process goes away with its legs still up

    second = NodeThread(url, tmp_path, node_id="node-restart")
    try:
        client2 = telnyx.Telnyx(api_key=key, base_url=second.base_url, max_retries=0)
        for cid in (host, waiting):
            hangup = tenant.event("call.hangup", cid)
            assert hangup.payload["hangup_source"] == "unknown"
        ended = tenant.event("conference.ended", conference_id=conf.data.id)
        assert ended.payload["reason"] == "all_left"
        q = client2.queues.retrieve("survivor")
        assert q.data is not None and q.data.max_size == 7
        kept = list(client2.queues.calls.list("survivor"))
        assert [(c.call_control_id, c.is_alive) for c in kept] == [(waiting, False)]
        got = client2.conferences.retrieve(conf.data.id)
        assert got.data is not None and got.data.status == "completed"
        assert client2.call_control_applications.retrieve(app.data.id).data is not None
        status = client2.calls.retrieve_status(host)
        assert status.data is not None and status.data.is_alive is False
    finally:
        second.stop()
