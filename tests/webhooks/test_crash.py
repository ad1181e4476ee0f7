"""``kill -9`` of a node in the middle of a burst loses no committed event: after a restart on the same
data directory every event in the outbox reaches the receiver (by event id)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import telnyx
from sqlalchemy import select

from callroom.store import schema as t
from callroom.store.engine import Store
from tests.support.node import free_port
from tests.support.process import kill_hard, serve
from tests.support.receiver import WebhookReceiver


def test_sigkill_mid_burst_loses_no_committed_event(tmp_path: Path, receiver: WebhookReceiver) -> None:
    path = f"/crash/{uuid.uuid4().hex}"
    receiver.delay_for = lambda p: 0.03 if p == path else 0.0  # a slowish receiver: a backlog builds up
    port = free_port()
    try:
        # (5060 may be taken; the burst goes past the default 40 new calls/s, which the node would refuse)
        with serve(tmp_path, port, "--sip-port", "0", "--max-calls-per-second", "0") as proc:
            key = (tmp_path / "initial-api-key").read_text().strip()
            client = telnyx.Telnyx(api_key=key, base_url=f"http://127.0.0.1:{port}/v2", max_retries=0)
            app = client.call_control_applications.create(application_name="crash",
                                                          webhook_event_url=receiver.url(path))
            assert app.data is not None and app.data.id
            connection_id = app.data.id
            dialled: list[str] = []
            stop = threading.Event()

            def burst(n: int) -> None:
                i = 0
                while not stop.is_set():
                    try:
                        resp = client.calls.dial(connection_id=connection_id, from_="+1",
                                                 to=f"virtual:b{n}-{i};answer_after=0")
                    except telnyx.APIError:
                        return  # the node is gone
                    assert resp.data is not None
                    dialled.append(resp.data.call_control_id)
                    i += 1

            threads = [threading.Thread(target=burst, args=(n,), daemon=True) for n in range(6)]
            for th in threads:
                th.start()
            deadline = time.monotonic() + 10
            while len(dialled) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)
            kill_hard(proc)
            stop.set()
            for th in threads:
                th.join(5)
        assert len(dialled) >= 60

        store = Store(f"sqlite:///{tmp_path / 'callroom.db'}")
        try:
            with store.transaction() as tx:
                committed = set(tx.conn.execute(select(t.outbox.c.event_id)).scalars())
        finally:
            store.dispose()
        arrived = {r.json["data"]["id"] for r in receiver.delivered(path) if r.body}
        missing_at_kill = committed - arrived
        assert len(committed) >= len(dialled)  # call.initiated at least, committed before the dial answered
        assert missing_at_kill, "the kill came after everything was delivered: the test proves nothing"

        receiver.delay_for = lambda _p: 0.0
        with serve(tmp_path, port, "--sip-port", "0"):
            def all_arrived() -> bool:
                got = {r.json["data"]["id"] for r in receiver.delivered(path) if r.body}
                return committed <= got

            deadline = time.monotonic() + 30
            while not all_arrived() and time.monotonic() < deadline:
                time.sleep(0.05)
            got = {r.json["data"]["id"] for r in receiver.delivered(path) if r.body}
            assert committed - got == set(), f"{len(committed - got)} of {len(committed)} committed events lost"
    finally:
        receiver.delay_for = lambda _p: 0.0
