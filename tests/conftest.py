"""Shared fixtures: one real node (SQLite) and one webhook receiver per test session, and a fresh
account with its own API key, SDK client and application for every test (so tests cannot see each
other's calls, conferences or queues)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import telnyx

from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    data_dir: Path = tmp_path_factory.mktemp("node")
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir)
    yield n
    n.stop()


STRICT_HEAD_TIMEOUT = 1.0
STRICT_RECEIVER_HOST = "127.0.0.2"  # loopback too, but not 127.0.0.1, where everything else listens


@pytest.fixture(scope="session")
def strict_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """A node with its protections as tight as tests allow: a request's head must arrive within 1 s, and
    webhook and media URLs may not reach loopback (or any other non-public address), as for ``callroom
    serve``, but for the one address its tests' receiver listens on (``strict_receiver``)."""
    data_dir: Path = tmp_path_factory.mktemp("strict-node")
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, head_timeout=STRICT_HEAD_TIMEOUT,
                   allow_url_networks=(f"{STRICT_RECEIVER_HOST}/32",))
    yield n
    n.stop()


@pytest.fixture(scope="session")
def strict_receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(STRICT_RECEIVER_HOST)
    yield r
    r.close()


@pytest.fixture
def strict_tenant(strict_node: NodeThread, strict_receiver: WebhookReceiver) -> Tenant:
    """A fresh account on ``strict_node``, its webhooks going to ``strict_receiver``."""
    return _tenant(strict_node, strict_receiver)


@pytest.fixture
def tenant(node: NodeThread, receiver: WebhookReceiver) -> Iterator[Tenant]:
    t = _tenant(node, receiver)
    yield t
    t.check_typed()  # every webhook the test received parses as the SDK's model of its event


def _tenant(node: NodeThread, receiver: WebhookReceiver) -> Tenant:
    name = f"acct-{uuid.uuid4().hex[:10]}"
    key = node.new_key(name)
    client = telnyx.Telnyx(api_key=key, base_url=node.base_url, public_key=node.public_key, max_retries=0)
    path = f"/hooks/{name}"
    app = client.call_control_applications.create(application_name=name, webhook_event_url=receiver.url(path))
    assert app.data is not None and app.data.id
    return Tenant(client=client, node=node, receiver=receiver, api_key=key, path=path, connection_id=app.data.id)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    """In CI a skipped test is a missing tool or service, never an acceptable outcome: say so loudly."""
    import os

    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get("CI") and skipped:
        terminalreporter.write_line(
            f"CI: {len(skipped)} test(s) skipped; every tool and service must be present in CI", red=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1
