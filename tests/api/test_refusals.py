"""Mistakes and commands callroom does not carry out are refused at once, in Telnyx's error shape, and
change nothing."""

from __future__ import annotations

import httpx
import pytest
import telnyx

from tests.support.tenant import Tenant


@pytest.mark.parametrize(("to", "said"), [
    ("virtual:x;tonne=500", "unknown virtual phone option 'tonne'"),
    ("virtual:x;tone=5000", "between 20 and 3900 Hz"),
    ("virtual:x;answer_after=soon", "answer_after=soon"),
    ("virtual:x;cadence=hello", "cadence=hello"),
    ("virtual:x;beep=9000", "between 20 and 3900 Hz"),
    ("virtual:x;say=Hi;play=hello", "say and play cannot be used together"),
    ("virtual:x;tone=500;say=Hi", "say replaces tone and cadence"),
    ("virtual:x;play=nothing-uploaded", "no uploaded media named 'nothing-uploaded'"),
    ("virtual:x;play=ftp%3A%2F%2Fhost%2Fa.wav", "an http(s) URL or the name of an uploaded media file"),
    ("virtual:x;say=Hi;voice=espeak.nosuchvoice", "bad virtual phone option 'voice'"),
    ("virtual:x;voice=male", "it is the voice of say"),
    ("virtual:x;say=%FF", "say=%FF"),
])  # fmt: skip
def test_dial_to_a_misspelt_virtual_phone_is_refused(tenant: Tenant, to: str, said: str) -> None:
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to=to)
    error = refused.value.body["errors"][0]  # type: ignore[index]
    assert error["code"] == "10015" and error["source"] == {"pointer": "/to"}
    assert said in error["detail"]
    # nothing rings: the same mistake calling in is refused the same way, and no call was made
    resp = httpx.post(f"{tenant.node.root_url}/virtual/calls", json={"connection_id": tenant.connection_id,
                      "from": to}, headers={"Authorization": f"Bearer {tenant.api_key}"})  # fmt: skip
    assert resp.status_code == 422 and said in resp.json()["errors"][0]["detail"]
    assert tenant.virtual_phones() == []
    assert tenant.events() == []


def test_a_command_callroom_does_not_carry_out_says_so(tenant: Tenant) -> None:
    cid = tenant.dial("recorded")
    with pytest.raises(telnyx.APIStatusError) as refused:
        tenant.client.with_options(max_retries=2).calls.actions.start_siprec(cid)
    assert refused.value.status_code == 501
    error = refused.value.body["errors"][0]  # type: ignore[index]
    assert (error["code"], error["title"]) == ("90117", "Command not supported")
    assert "'siprec_start'" in error["detail"]
    # the SDK was told not to retry it (it retries other 5xx): the answer is to its first attempt
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refused.value.response.request.headers["x-stainless-retry-count"] == "0"
    status = tenant.client.calls.retrieve_status(cid)
    assert status.data is not None and status.data.is_alive is True
    # transcription on answer in a language the recogniser does not know is refused, naming it, and the call
    # is not answered
    ringing = tenant.call_in(answer=False)
    with pytest.raises(telnyx.UnprocessableEntityError) as transcribed:
        tenant.client.calls.actions.answer(ringing, transcription=True,
                                           transcription_config={"transcription_engine": "Google",
                                                                 "transcription_engine_config": {"language": "de"}})
    assert "'de'" in transcribed.value.body["errors"][0]["detail"]  # type: ignore[index]
    assert "call.answered" not in tenant.events(ringing)
    # a path Telnyx does not have is still a plain 404
    with pytest.raises(telnyx.NotFoundError) as unknown:
        tenant.client.post(f"/calls/{cid}/actions/teleport", cast_to=object, body={})
    assert unknown.value.body["errors"][0]["code"] == "10005"  # type: ignore[index]
