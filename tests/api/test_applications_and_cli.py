"""Call control applications through the SDK; the CLI's keys and virtual phone; the OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import telnyx

from tests.support.node import NodeThread
from tests.support.tenant import Tenant


def test_application_crud(tenant: Tenant) -> None:
    created = tenant.client.call_control_applications.create(
        application_name="Support Line", webhook_event_url="https://example.test/hooks",
        webhook_event_failover_url="https://example.test/backup", webhook_timeout_secs=5,
        inbound={"sip_subdomain": "support"},
    )
    assert created.data is not None and created.data.id
    app_id = created.data.id
    assert created.data.record_type == "call_control_application"
    assert created.data.inbound is not None and created.data.inbound.sip_subdomain == "support"
    got = tenant.client.call_control_applications.retrieve(app_id)
    assert got.data is not None and got.data.webhook_timeout_secs == 5
    updated = tenant.client.call_control_applications.update(
        app_id, application_name="Support", webhook_event_url="https://example.test/v2", active=False)
    assert updated.data is not None and updated.data.active is False
    names = [a.application_name for a in tenant.client.call_control_applications.list(
        filter={"application_name": {"contains": "supp"}})]
    assert names == ["Support"]
    with pytest.raises(telnyx.UnprocessableEntityError) as inactive:
        tenant.client.calls.dial(connection_id=app_id, from_="+1", to="virtual:x")
    assert inactive.value.body["errors"][0]["source"]["pointer"] == "/connection_id"  # type: ignore[index]
    tenant.client.call_control_applications.delete(app_id)
    with pytest.raises(telnyx.NotFoundError):
        tenant.client.call_control_applications.retrieve(app_id)
    with pytest.raises(telnyx.UnprocessableEntityError) as bad:
        tenant.client.call_control_applications.create(application_name="x", webhook_event_url="not a url")
    assert bad.value.body["errors"][0]["source"]["pointer"] == "/webhook_event_url"  # type: ignore[index]


def test_unknown_nested_settings_are_ignored_not_stored(tenant: Tenant) -> None:
    # Fields the node does not know inside inbound / outbound are dropped (as Telnyx ignores them): stored,
    # any JSON at all (here a number beyond 64 bits) would have to come back in every read of the row.
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    body = {"application_name": "odd", "webhook_event_url": "https://example.test/hooks",
            "inbound": {"channel_limit": 5, "vendor_x": {"n": 22116040951250616320}},
            "outbound": {"future_setting": [1, 2, 3], "huge": 22116040951250616320}}
    created = httpx.post(f"{tenant.node.base_url}/call_control_applications", json=body, headers=headers)
    assert created.status_code == 200, created.text
    app = created.json()["data"]
    assert app["inbound"]["channel_limit"] == 5 and "vendor_x" not in app["inbound"]
    assert "huge" not in (app["outbound"] or {})
    got = tenant.client.call_control_applications.retrieve(app["id"])
    assert got.data is not None and got.data.inbound is not None and got.data.inbound.channel_limit == 5
    # The same for a dial's conference_config: the leg joins, the unknown field is gone.
    dialled = httpx.post(f"{tenant.node.base_url}/calls", headers=headers, json={
        "connection_id": tenant.connection_id, "from": "+15550001111", "to": "virtual:joiner;answer_after=0",
        "conference_config": {"conference_name": "odd-room", "label": "joiner", "vendor": 22116040951250616320}})
    assert dialled.status_code == 200, dialled.text
    cid = dialled.json()["data"]["call_control_id"]
    tenant.event("conference.participant.joined", cid)
    conf = tenant.client.conferences.list(filter={"name": "odd-room"}).data
    assert conf and conf[0].id
    # The leg that created the conference joined as its conference_config said (here: with its label).
    by_label = httpx.get(f"{tenant.node.base_url}/conferences/{conf[0].id}/participants/joiner", headers=headers)
    assert by_label.status_code == 200 and by_label.json()["data"]["call_control_id"] == cid


def test_openapi_document(node: NodeThread) -> None:
    doc = httpx.get(f"{node.base_url}/openapi.json").json()
    for path in ("/v2/conferences", "/v2/queues/{queue_name}/calls", "/v2/calls/{call_control_id}/actions/bridge"):
        assert path in doc["paths"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callroom.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_keys_and_virtual_phone(tmp_path: Path, tenant: Tenant) -> None:
    data = ["--data-dir", str(tmp_path)]
    key = _cli(*data, "keys", "create", "--account", "acme", "--label", "ci").stdout.strip()
    assert key.startswith("KEY")
    listing = _cli(*data, "keys", "list").stdout
    assert "account=acme" in listing and key[:10] in listing and "active" in listing
    key_id = listing.split()[0]
    assert _cli(*data, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in _cli(*data, "keys", "list").stdout

    # A virtual phone calls the tenant's application through the running node.
    out = _cli("phone", "call", tenant.connection_id, "--server", tenant.node.root_url, "--api-key", tenant.api_key,
               "--from", "virtual:cli-caller")
    assert out.returncode == 0, out.stderr
    initiated = tenant.receiver.wait_for(
        lambda r: r.path == tenant.path and r.event_type == "call.initiated"
        and r.payload.get("from") == "virtual:cli-caller")[0]
    assert initiated.payload["direction"] == "incoming"
