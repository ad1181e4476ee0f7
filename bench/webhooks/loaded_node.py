"""A node process whose own event loop commits webhook-emitting transactions at a fixed rate (used by
``run.py --mode inproc``): the real path from commit to ``enqueue`` to delivery, without the cost of
the HTTP API and the media plane in front of it.

Run: python bench/webhooks/loaded_node.py DATA_DIR RECEIVER_URL EVENTS_PER_S SECONDS
Prints one JSON line with the node's metrics text and its CPU seconds when done.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import uvloop

from callroom.control.world import Steps, World
from callroom.model.records import Application
from callroom.node import Node
from callroom.node_config import NodeConfig
from callroom.outbound import LOOPBACK


async def main(data_dir: Path, url: str, rate: float, seconds: float) -> None:
    node = Node(NodeConfig(database_url=f"sqlite:///{data_dir / 'callroom.db'}", data_dir=data_dir, sip=None,
                           allow_url_networks=LOOPBACK))  # the receiver is on this machine
    app = Application(id=str(uuid.uuid4()), account_id="bench", application_name="bench", webhook_event_url=url,
                      created_at=time.time(), updated_at=time.time())
    with node.store.transaction() as tx:
        tx.insert_application(app)
    await node.start()
    per_tx = 10  # events per transaction, each for its own call
    keys = [f"v3:{uuid.uuid4().hex}" for _ in range(500)]

    def emit(w: World, start: int) -> Steps[None]:
        yield from ()  # reads nothing: the webhooks alone
        for j in range(per_tx):
            cid = keys[(start + j) % len(keys)]
            w.emit("call.initiated", {"call_control_id": cid, "connection_id": app.id, "from": "+1", "to": "x"},
                      connection_id=app.id, webhook_url=None, method="POST", order_key=f"call:{cid}",
                      occurred_at_in_payload=False)

    t0 = time.monotonic()
    cpu0 = time.process_time()
    n = 0
    while time.monotonic() - t0 < seconds:
        def handler(w: World, start: int = n) -> Steps[None]:
            return emit(w, start)

        node.control.write("bench", handler)
        n += per_tx
        await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
    assert node.dispatcher is not None
    await node.dispatcher.drain(30)
    cpu = time.process_time() - cpu0
    print(json.dumps({"emitted": n, "cpu_seconds": cpu, "wall": time.monotonic() - t0,
                      "metrics": node.dispatcher.render_metrics()}), flush=True)
    await node.stop()


if __name__ == "__main__":
    uvloop.run(main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
