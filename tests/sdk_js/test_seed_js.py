"""The seed document's JavaScript examples, run by Node.js with the official ``telnyx`` npm SDK.

Python prepares real calls (virtual phones) on the test node; ``seed_examples.mjs`` runs the seed's
examples against it and prints what it saw as JSON; the assertions here check the shapes and effects.
Without node/npm the test is skipped, except when ``CI`` is set: then it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import telnyx

from tests.support.tenant import Tenant

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "seed_examples.mjs"
PINNED = json.loads((HERE / "package.json").read_text())["dependencies"]["telnyx"]

CONFERENCE_KEYS = {"id", "record_type", "name", "status", "connection_id", "created_at", "updated_at", "expires_at"}
LISTED_PARTICIPANT_KEYS = {
    "id", "record_type", "call_control_id", "call_leg_id", "conference", "created_at", "updated_at",
    "end_conference_on_exit", "soft_end_conference_on_exit", "muted", "on_hold", "status", "whisper_call_control_ids",
}
PARTICIPANT_KEYS = {
    "id", "call_control_id", "call_leg_id", "conference_id", "created_at", "updated_at", "end_conference_on_exit",
    "soft_end_conference_on_exit", "muted", "on_hold", "status", "whisper_call_control_ids",
}
QUEUE_KEYS = {"id", "record_type", "name", "max_size", "current_size", "average_wait_time_secs", "created_at",
              "updated_at"}
QUEUE_CALL_KEYS = {
    "record_type", "call_control_id", "call_leg_id", "call_session_id", "connection_id", "from", "to", "queue_id",
    "queue_position", "enqueued_at", "wait_time_secs", "is_alive",
}
OK = {"result": "ok"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return path


def _ensure_sdk(npm: str) -> None:
    """``npm install`` into tests/sdk_js/node_modules once; later runs reuse it."""
    installed = HERE / "node_modules" / "telnyx" / "package.json"
    if installed.exists() and json.loads(installed.read_text()).get("version") == PINNED:
        return
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, capture_output=True, text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"npm install failed:\n{proc.stdout}\n{proc.stderr}"
    assert json.loads(installed.read_text())["version"] == PINNED


def _prepare(tenant: Tenant) -> dict[str, str]:
    call_a = tenant.dial("host")
    call_b = tenant.dial("guest")
    call_q = tenant.dial("waiting")
    dead = tenant.dial("gone")
    queue = f"support-{uuid.uuid4().hex[:6]}"
    tenant.client.calls.actions.enqueue(dead, queue_name=queue, keep_after_hangup=True)
    tenant.phone_hangs_up(dead)
    tenant.event("call.hangup", dead)
    hook = tenant.event("call.answered", call_a)
    return {
        "CALL_A": call_a,
        "CALL_B": call_b,
        "CALL_Q": call_q,
        "CALL_DEAD": dead,
        "QUEUE_NAME": queue,
        "CONFERENCE_NAME": f"Business-{uuid.uuid4().hex[:6]}",
        "WEBHOOK_BODY": hook.body,
        "WEBHOOK_HEADERS": json.dumps(hook.headers),
    }


def _run_script(node: str, tenant: Tenant, prepared: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELNYX_")}
    env.update(prepared)
    env.update({
        "BASE_URL": tenant.node.base_url,
        "TELNYX_API_KEY": tenant.api_key,
        "TELNYX_PUBLIC_KEY": tenant.node.public_key,
        "NO_PROXY": "127.0.0.1",
    })
    proc = subprocess.run([node, str(SCRIPT)], cwd=HERE, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"seed_examples.mjs failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_seed_javascript_examples(tenant: Tenant) -> None:
    node = _tool("node")
    npm = _tool("npm")
    _ensure_sdk(npm)
    p = _prepare(tenant)
    out = _run_script(node, tenant, p)
    call_a, call_b, call_q, dead, queue = p["CALL_A"], p["CALL_B"], p["CALL_Q"], p["CALL_DEAD"], p["QUEUE_NAME"]

    # -- queues: a call waits, is looked at, and leaves
    assert out["enqueue"] == OK
    listed = out["queue_calls_list"]
    assert [c["call_control_id"] for c in listed] == [dead, call_q]
    for row in listed:
        assert row.keys() >= QUEUE_CALL_KEYS, row
        assert row["record_type"] == "queue_call"
    assert [c["is_alive"] for c in listed] == [False, True]
    assert [c["queue_position"] for c in listed] == [1, 2]
    assert out["queue_calls_list_paged"] == [dead, call_q]  # auto-pagination over two pages of one
    got = out["queue_call_retrieve"]
    assert got.keys() >= QUEUE_CALL_KEYS
    assert got["call_control_id"] == call_q and got["queue_position"] == 2 and got["is_alive"] is True
    assert got["connection_id"] == tenant.connection_id and isinstance(got["wait_time_secs"], int)
    assert out["queue_call_update"] is None and out["queue_call_update_keep"] is None  # 204, no body
    assert out["queue_call_remove"] is None
    assert out["leave_queue"] == OK
    assert out["queue_calls_after"] == []

    # -- queues: create, retrieve, update, list, delete
    created = out["queue_create"]
    assert [q["name"] for q in created] == ["tier_1_support", "tier_2_support", "tier_3_support"]
    for q in created:
        assert q.keys() >= QUEUE_KEYS, q
        assert q["record_type"] == "queue" and q["current_size"] == 0 and q["max_size"] == 300
    assert out["queue_retrieve"]["id"] == created[0]["id"]
    assert out["queue_update"]["max_size"] == 200 and out["queue_update"]["id"] == created[0]["id"]
    names = sorted(q["name"] for q in out["queue_list"])
    assert names == sorted([queue, "tier_1_support", "tier_2_support", "tier_3_support"])
    assert sorted(out["queue_list_paged"]) == names  # two pages of two
    assert out["queue_delete"] is None
    assert out["queue_retrieve_deleted"]["status"] == 404 and out["queue_retrieve_deleted"]["not_found"] is True

    # -- conferences
    conf = out["conference_create"]
    assert conf.keys() >= CONFERENCE_KEYS
    assert conf["record_type"] == "conference" and conf["name"] == p["CONFERENCE_NAME"]
    assert conf["connection_id"] == tenant.connection_id and conf["status"] in ("init", "in_progress")
    assert [c["id"] for c in out["conference_list"]] == [conf["id"]]
    assert out["conference_list"][0].keys() >= CONFERENCE_KEYS
    assert out["conference_retrieve"]["id"] == conf["id"]
    assert out["join"] == OK

    parts = out["participants"]
    assert sorted(x["call_control_id"] for x in parts) == sorted([call_a, call_b])
    for part in parts:
        assert part.keys() >= LISTED_PARTICIPANT_KEYS, part
        assert part["record_type"] == "participant" and part["conference"]["id"] == conf["id"]
        assert part["muted"] is False and part["on_hold"] is False
    pid_a = next(x["id"] for x in parts if x["call_control_id"] == call_a)
    pid_b = next(x["id"] for x in parts if x["call_control_id"] == call_b)

    assert out["mute"] == OK
    assert all(x["muted"] is True for x in out["participants_muted"])
    muted_b = out["retrieve_participant_muted"]
    assert muted_b.keys() >= PARTICIPANT_KEYS
    assert muted_b["id"] == pid_b and muted_b["conference_id"] == conf["id"] and muted_b["muted"] is True
    assert out["unmute"] == OK
    assert out["hold"] == OK
    assert all(x["on_hold"] is True for x in out["participants_held"])
    assert out["unhold"] == OK
    held = {x["call_control_id"]: x["on_hold"] for x in out["participants_after_unhold"]}
    assert held == {call_a: True, call_b: False}
    assert out["update"] == OK
    got_b = out["retrieve_participant"]
    assert got_b["id"] == pid_b and got_b["call_control_id"] == call_b and got_b["muted"] is False
    assert out["update_participant"]["id"] == pid_b and out["update_participant"].keys() >= PARTICIPANT_KEYS
    assert out["update_participant"]["end_conference_on_exit"] is False
    assert out["update_participant_exit"]["id"] == pid_a
    assert out["update_participant_exit"]["end_conference_on_exit"] is True
    assert out["leave"] == OK
    assert [x["call_control_id"] for x in out["participants_after_leave"] if x["status"] != "left"] == [call_a]
    assert out["end_conference"] == OK
    ended = out["conference_after_end"]
    assert ended["status"] == "completed" and ended["end_reason"] == "ended_via_api"

    # -- errors as the seed's handler sees them
    nf = out["error_not_found"]
    assert nf["api_error"] is True and nf["status"] == 404 and nf["not_found"] is True
    assert nf["errors"] and {"code", "title", "detail"} <= nf["errors"][0].keys()
    bad = out["error_validation"]
    assert bad["api_error"] is True and bad["status"] == 422 and bad["unprocessable"] is True

    # -- webhooks: the SDK verified the node's signature, and refused a tampered body
    event = out["webhook_unwrap"]
    assert event["data"]["event_type"] == "call.answered"
    assert event["data"]["record_type"] == "event"
    assert event["data"]["payload"]["call_control_id"] == call_a
    assert out["webhook_tampered"]["verified"] is False
    assert out["webhook_tampered"]["class"] == "TelnyxWebhookVerificationError"

    # -- and the server agrees with what the script did
    after = tenant.client.conferences.retrieve(conf["id"])
    assert after.data is not None and after.data.status == "completed"
    with pytest.raises(telnyx.NotFoundError):
        tenant.client.queues.retrieve("tier_3_support")
