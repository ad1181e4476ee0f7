"""The node's log (``callroom/logs.py``): a line per API request and per committed event, with the ids an
operator follows a call by, as text or as JSON lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import telnyx

from callroom import logs
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver


def _record(name: str, msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": name, "msg": msg, "levelname": "INFO", "levelno": logging.INFO})
    record.__dict__.update(extra)
    return record


def test_text_lines_end_with_the_ids_and_json_lines_carry_every_field() -> None:
    record = _record("callroom.calls", "call.answered", call_control_id="v3:abc", call_session_id="s-1",
                     account_id="acct")
    text = logs.TextFormatter().format(record)
    assert text.endswith("callroom.calls: call.answered call_control_id=v3:abc call_session_id=s-1 account_id=acct")
    line = json.loads(logs.JsonFormatter("media").format(record))
    assert line["msg"] == "call.answered" and line["logger"] == "callroom.calls" and line["process"] == "media"
    assert (line["call_control_id"], line["call_session_id"], line["account_id"]) == ("v3:abc", "s-1", "acct")
    with pytest.raises(ValueError):
        logs.configure("info", "xml")


def test_a_calls_life_in_the_log(tmp_path: Path, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, access_log=True)
    try:
        key = node.new_key("logs")
        client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=0)
        app = client.call_control_applications.create(application_name="logs", webhook_event_url=receiver.url("/l"))
        assert app.data is not None and app.data.id
        dialled = client.calls.dial(connection_id=app.data.id, from_="+1", to="virtual:bob;answer_after=0")
        assert dialled.data is not None
        cid = dialled.data.call_control_id
        receiver.event("call.answered", cid)
        client.calls.actions.hangup(cid)
        receiver.event("call.hangup", cid)
        with pytest.raises(telnyx.AuthenticationError):
            telnyx.Telnyx(api_key="KEYwrong", base_url=node.base_url, max_retries=0).calls.retrieve_status(cid)
    finally:
        node.stop()
    access = [r for r in caplog.records if r.name == "callroom.access"]
    dial = next(r for r in access if r.__dict__["path"] == "/v2/calls" and r.__dict__["method"] == "POST")
    assert dial.__dict__["status"] == 200 and dial.__dict__["account_id"] and dial.__dict__["ms"] >= 0
    refused = next(r for r in access if r.__dict__["status"] == 401)
    assert refused.__dict__["account_id"] is None
    lines = [(r.getMessage(), r.__dict__.get("call_session_id")) for r in caplog.records
             if r.name == "callroom.calls" and r.__dict__.get("call_control_id") == cid]
    assert [m for m, _ in lines] == ["call.initiated", "call.answered", "call.hangup"]
    assert len({s for _, s in lines}) == 1 and lines[0][1]  # one session, named on every line


def test_a_node_writes_json_lines_and_traces_sip_when_asked(tmp_path: Path) -> None:
    import socket

    import httpx

    from tests.support.node import free_port
    from tests.support.process import serve

    port, sip_port = free_port(), free_port()
    with serve(tmp_path, port, "--sip-port", str(sip_port), "--log-level", "info", "--log-format", "json",
               "--sip-trace"):
        key = (tmp_path / "initial-api-key").read_text().strip()
        assert httpx.get(f"http://127.0.0.1:{port}/v2/queues", headers={"Authorization": f"Bearer {key}"}).is_success
        options = (f"OPTIONS sip:probe@127.0.0.1:{sip_port} SIP/2.0\r\n"
                   "Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKlog1\r\n"
                   "From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: log-1\r\nCSeq: 1 OPTIONS\r\n"
                   "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(options, ("127.0.0.1", sip_port))
            assert udp.recv(4096).startswith(b"SIP/2.0 ")
    lines = [json.loads(line) for line in (tmp_path / "node.log").read_text().splitlines() if line.startswith("{")]
    access = [e for e in lines if e["logger"] == "callroom.access"]
    assert any(e["path"] == "/v2/queues" and e["status"] == 200 and e["account_id"] for e in access), access
    traced = [e for e in lines if e["logger"] == "callroom.sip.trace"]
    assert {e["process"] for e in traced} == {"media"}
    assert any("OPTIONS sip:probe" in e["msg"] for e in traced) and any("SIP/2.0 " in e["msg"] for e in traced)
