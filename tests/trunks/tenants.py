"""Accounts, trunks and API calls for the trunk tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import telnyx

from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant
from tests.trunks.provider import PASSWORD, PROVIDER_IP, USERNAME


def make_tenant(node: NodeThread, receiver: WebhookReceiver, **app: Any) -> Tenant:
    """A fresh account on ``node`` with an application (``app``: more of its settings)."""
    name = f"acct-{uuid.uuid4().hex[:10]}"
    key = node.new_key(name)
    client = telnyx.Telnyx(api_key=key, base_url=node.base_url, public_key=node.public_key,
                           max_retries=0)
    path = f"/hooks/{name}"
    made = client.call_control_applications.create(application_name=name, webhook_event_url=receiver.url(path),
                                                   **app)
    assert made.data is not None and made.data.id
    return Tenant(client=client, node=node, receiver=receiver, api_key=key, path=path, connection_id=made.data.id)


def api(tenant: Tenant, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{tenant.node.base_url}{path}", json=body,
                         headers={"Authorization": f"Bearer {tenant.api_key}"})


def add_trunk(tenant: Tenant, port: int, **settings: Any) -> dict[str, Any]:
    """A trunk to the provider at ``port``, chosen by the tenant's application for its calls to numbers."""
    body = {"name": "carrier", "host": PROVIDER_IP, "port": port, "username": USERNAME, "password": PASSWORD,
            **settings}
    resp = api(tenant, "POST", "/trunks", body)
    assert resp.status_code == 200, resp.text
    trunk: dict[str, Any] = resp.json()["data"]
    assert trunk["password_set"] is True and "password" not in trunk
    app = api(tenant, "GET", f"/call_control_applications/{tenant.connection_id}").json()["data"]
    resp = api(tenant, "PATCH", f"/call_control_applications/{tenant.connection_id}",
               {"application_name": app["application_name"], "webhook_event_url": app["webhook_event_url"],
                "outbound": {"outbound_voice_profile_id": trunk["id"]}})
    assert resp.status_code == 200, resp.text
    return trunk


def own_number(tenant: Tenant, number: str) -> dict[str, Any]:
    """``number`` brought by the tenant's trunk, assigned to its application through /v2/phone_numbers."""
    listed = api(tenant, "GET", "/phone_numbers", None).json()
    (found,) = [n for n in listed["data"] if n["phone_number"] == number]
    assert found["connection_id"] is None and found["record_type"] == "phone_number"
    resp = api(tenant, "PATCH", f"/phone_numbers/{found['id']}", {"connection_id": tenant.connection_id})
    assert resp.status_code == 200, resp.text
    updated: dict[str, Any] = resp.json()["data"]
    assert updated["connection_id"] == tenant.connection_id
    assert api(tenant, "GET", f"/phone_numbers/{found['id']}").json()["data"] == updated
    return updated
