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
