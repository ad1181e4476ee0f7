"""A SIP trunk provider on loopback, played by SIPp: a gateway that challenges our INVITEs (digest), checks
who we say we are and answers (echoing our audio), a carrier that calls our numbers, a stranger."""

from __future__ import annotations

from pathlib import Path

from tests.support.node import free_port
from tests.support.sipp import SippProcess

PROVIDER_IP = "127.0.0.2"  # the trunk's gateway (loopback, but not where the node listens)
STRANGER_IP = "127.0.0.3"  # neither a trunk nor an allowed network
USERNAME, PASSWORD, REALM = "acct7", "s3cret-pw", "provider.test"

_RESPONSE = """SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
"""

_ANSWER_SDP = """v=0
o=gw 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""


def _send(text: str) -> str:
    return f"  <send><![CDATA[\n{text}]]></send>\n"


def _checks(patterns: dict[str, str]) -> str:
    """ereg checks on the INVITE: each (where, regexp) must match or the scenario fails."""
    out = ""
    for i, (where, regexp) in enumerate(patterns.items()):
        place = 'search_in="msg"' if where == "msg" else f'search_in="hdr" header="{where}"'
        out += f'      <ereg regexp="{regexp}" {place} check_it="true" assign_to="c{i}"/>\n'
    return out


def gateway_scenario(challenge: int = 407, *, checks: dict[str, str] | None = None) -> str:
    """Challenge the INVITE with ``challenge`` (401 or 407), verify the credentials of the INVITE sent again
    (403 if wrong), check it with ``checks`` (header name or "msg" -> regexp), answer it, wait for our BYE."""
    asking = "WWW-Authenticate" if challenge == 401 else "Proxy-Authenticate"
    reason = "Unauthorized" if challenge == 401 else "Proxy Authentication Required"
    refs = ",".join(f"c{i}" for i in range(len(checks or {})))
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="trunk gateway with digest">\n'
        '  <recv request="INVITE"/>\n'
        + _send(_RESPONSE.format(status=f"{challenge} {reason}")
                + f'{asking}: Digest realm="{REALM}", nonce="8f0e1d2c3b4a5968", qop="auth", algorithm=MD5\n'
                + "Content-Length: 0\n\n")
        + '  <recv request="ACK"/>\n'
        '  <recv request="INVITE">\n    <action>\n'
        f'      <verifyauth assign_to="authvalid" username="{USERNAME}" password="{PASSWORD}"/>\n'
        + _checks(checks or {})
        + "    </action>\n  </recv>\n"
        + (f'  <Reference variables="{refs}"/>\n' if refs else "")
        + '  <nop hide="true" test="authvalid" next="good"/>\n'
        + _send(_RESPONSE.format(status="403 Forbidden") + "Content-Length: 0\n\n")
        + '  <recv request="ACK" next="end"/>\n'
        '  <label id="good"/>\n'
        + _send(_RESPONSE.format(status="180 Ringing") + "Content-Length: 0\n\n")
        + _send(_RESPONSE.format(status="200 OK") + "Contact: <sip:gw@[local_ip]:[local_port]>\n"
                + "Content-Type: application/sdp\nContent-Length: [len]\n\n" + _ANSWER_SDP)
        + '  <recv request="ACK"/>\n'
        '  <recv request="BYE"/>\n'
        + _send(_RESPONSE.format(status="200 OK") + "Content-Length: 0\n\n")
        + '  <label id="end"/>\n</scenario>\n'
    )


def refused_offer_scenario(proto: str | None, crypto: bool, to: str = "[service]") -> str:
    """A caller whose INVITE offers PCMU over ``proto`` (``RTP/SAVP`` or ``RTP/AVP``; None: no offer, a
    delayed one), with an SDES crypto line when ``crypto``, and expects 488 Not Acceptable Here (then ACKs
    it)."""
    key = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\n" if crypto else ""
    invite = (f"INVITE sip:{to}@[remote_ip]:[remote_port] SIP/2.0\n"
              "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
              "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
              f"To: <sip:{to}@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\n"
              "Contact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
              + ("Content-Length: 0\n\n" if proto is None else
                 "Content-Type: application/sdp\nContent-Length: [len]\n\n"
                 "v=0\no=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]\ns=-\n"
                 f"c=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] {proto} 0\n"
                 f"a=rtpmap:0 PCMU/8000\n{key}"))  # fmt: skip
    ack = (f"ACK sip:{to}@[remote_ip]:[remote_port] SIP/2.0\n"  # the INVITE's branch: 3 messages back
           "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]\n"
           "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n"
           f"To: <sip:{to}@[remote_ip]:[remote_port]>[peer_tag_param]\nCall-ID: [call_id]\nCSeq: 1 ACK\n"
           "Max-Forwards: 70\nContent-Length: 0\n\n")  # fmt: skip
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="an offer refused with 488">\n'
        + '  <send retrans="500"><![CDATA[\n' + invite + "]]></send>\n"
        '  <recv response="100" optional="true"/>\n  <recv response="488"/>\n'
        + _send(ack)
        + "</scenario>\n"
    )


def registrar_scenario() -> str:
    """A registrar that challenges the first REGISTER, grants 4 s to the answer (so that the refresh comes
    within the test), grants the refresh, and then sees our contact removed (Expires: 0)."""
    ok = _RESPONSE.format(status="200 OK") + "[last_Contact:];expires=4\nContact-Length: 0\n\n"
    ok = ok.replace("Contact-Length", "Content-Length")
    verify = ('  <recv request="REGISTER">\n    <action>\n'
              f'      <verifyauth assign_to="authvalid" username="{USERNAME}" password="{PASSWORD}"/>\n'
              '    </action>\n  </recv>\n  <nop hide="true" test="authvalid" next="{label}"/>\n'
              + _send(_RESPONSE.format(status="403 Forbidden") + "Content-Length: 0\n\n")
              + '  <nop hide="true" next="end"/>\n  <label id="{label}"/>\n' + _send(ok))
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="registrar with digest">\n'
        '  <recv request="REGISTER"/>\n'
        + _send(_RESPONSE.format(status="401 Unauthorized")
                + f'WWW-Authenticate: Digest realm="{REALM}", nonce="5a4b3c2d1e0f", qop="auth", algorithm=MD5\n'
                + "Content-Length: 0\n\n")
        + verify.replace("{label}", "granted") + verify.replace("{label}", "refreshed")
        + '  <recv request="REGISTER">\n    <action>\n'
        '      <ereg regexp="Expires: 0" search_in="msg" check_it="true" assign_to="removed"/>\n'
        '    </action>\n  </recv>\n  <Reference variables="removed"/>\n'
        + _send(_RESPONSE.format(status="200 OK") + "Content-Length: 0\n\n")
        + '  <label id="end"/>\n</scenario>\n'
    )


class Sipp(SippProcess):
    """SIPp in the background at ``ip`` (its media too), with its output kept for assertions."""

    def __init__(self, args: list[str], cwd: Path, ip: str = PROVIDER_IP) -> None:
        self.port = free_port()
        super().__init__([*args, "-i", ip, "-mi", ip, "-p", str(self.port), "-mp", str(free_port() & ~1), "-nostdin",
                          "-timeout", "30s", "-timeout_error", "-trace_err", "-trace_msg"], cwd)

