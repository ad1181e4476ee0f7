"""baresip as an SRTP peer: it calls one of our numbers over TLS from the address of a trunk that requires
SRTP, with ``mediaenc=srtp-mand`` (an ``RTP/SAVP`` offer with SDES keys, its ``srtp`` module), plays a tone,
and records what it hears; both directions are checked by their tones."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from callroom.model.messages import SipConfig
from tests.media.audio import tone_level
from tests.support.baresip import baresip, baresip_config, segment, tone_wav
from tests.support.node import NodeThread, free_port
from tests.support.receiver import WebhookReceiver
from tests.trunks.tenants import add_trunk, make_tenant, own_number

pytestmark = pytest.mark.sip

NUMBER = "+15557654392"
CALL_SECONDS = 8


@pytest.fixture(scope="module")
def tls_node(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    data_dir = tmp_path_factory.mktemp("srtp-baresip")
    sip = SipConfig(port=0, tls_port=free_port(), tls_cert=str(certs / "node.pem"), tls_key=str(certs / "node.key"))
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir, sip=sip)
    yield n
    n.stop()


def test_baresip_calls_a_number_with_srtp(tls_node: NodeThread, receiver: WebhookReceiver, certs: Path,
                                          tmp_path: Path) -> None:  # fmt: skip
    exe = baresip()
    tenant = make_tenant(tls_node, receiver)
    add_trunk(tenant, 5061, name="baresip", host="127.0.0.1", transport="tls", srtp="required", numbers=[NUMBER])
    own_number(tenant, NUMBER)
    source = tmp_path / "tone500.wav"
    tone_wav(source, 500, CALL_SECONDS + 5)
    baresip_config(tmp_path, source, tls_ca=certs / "ca.pem")
    assert tls_node.node.config.sip is not None
    target = f"sip:{NUMBER[1:]}@127.0.0.1:{tls_node.node.config.sip.tls_port};transport=tls"
    proc = subprocess.Popen([exe, "-f", str(tmp_path), "-e", f"/dial {target}", "-t", str(CALL_SECONDS)],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        try:
            initiated = receiver.wait_for(lambda r: r.path == tenant.path and r.event_type == "call.initiated",
                                          timeout=8)[0]  # fmt: skip
        except AssertionError:
            proc.kill()
            output = proc.communicate()[0].decode(errors="replace")
            raise AssertionError(f"baresip's call never reached the application:\n{output[-3000:]}") from None
        assert initiated.payload["to"] == NUMBER
        cid = initiated.payload["call_control_id"]
        tenant.client.calls.actions.answer(cid)
        tenant.event("call.answered", cid)
        phone = tenant.dial("tone900", "answer_after=0;tone=900")
        tenant.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=phone)
        time.sleep(2.0)
        heard = tenant.heard(phone, 1.5)
        assert tone_level(heard, 500) > 3000, "the virtual phone should hear baresip's 500 Hz, decrypted"
        out, _ = proc.communicate(timeout=CALL_SECONDS + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    output = out.decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert "srtp" in output.lower(), output[-3000:]
    tenant.event("call.hangup", cid, timeout=10)
    dumps = sorted(tmp_path.glob("dump-*-dec.wav"))
    assert dumps, f"baresip wrote no recording of what it heard:\n{output[-3000:]}"
    recorded, _rate = soundfile.read(dumps[-1], dtype="int16")
    tail = segment(np.asarray(recorded, dtype=np.int16), -2.5, -0.5)
    assert tone_level(tail, 900) > 3000, "baresip should hear the virtual phone's 900 Hz through SRTP"
