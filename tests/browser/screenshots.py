"""The README's screenshots of the console, taken by the browser tests' tooling against a real node with
a small scene (a conference with a talker, a queue with callers, a failed webhook):

    PYTHONPATH=. .venv/bin/python -m tests.browser.screenshots docs/console
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM
from tests.conftest import _tenant
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeThread(f"sqlite:///{tmp}/callroom.db", Path(tmp))
        receiver = WebhookReceiver()
        try:
            tenant = _tenant(node, receiver)
            host = tenant.dial("alice")
            conf = tenant.client.conferences.create(call_control_id=host, name="weekly standup")
            assert conf.data is not None
            for name, tone in (("bob", "500"), ("carol", "")):
                cid = tenant.dial(name, f"answer_after=0;tone={tone}" if tone else "answer_after=0")
                tenant.client.conferences.actions.join(conf.data.id, call_control_id=cid)
            tenant.client.conferences.actions.mute(conf.data.id, call_control_ids=[host])
            for name in ("dave", "erin"):
                tenant.client.calls.actions.enqueue(tenant.dial(name), queue_name="support")
            tenant.dial("agent")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                context = browser.new_context(viewport={"width": 1280, "height": 720})
                context.add_init_script(f"sessionStorage.setItem('callroom.console.key', {tenant.api_key!r})")
                page = context.new_page()
                page.goto(f"{node.root_url}/console#overview")
                page.wait_for_selector("[data-live=up]")
                time.sleep(6)  # a few seconds of figures for the charts
                for name in ("overview", "conferences", "queues", "calls", "playground"):
                    page.click(f"[data-page={name}]")
                    time.sleep(1.5)
                    page.screenshot(path=str(out / f"{name}.png"))
                browser.close()
        finally:
            node.stop()
            receiver.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
