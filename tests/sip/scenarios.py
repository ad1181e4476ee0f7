"""SIPp scenarios for the node tests, built from a few message templates instead of copies of them."""

from __future__ import annotations

from html import escape

_HEAD = """{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
Call-ID: [call_id]
CSeq: {cseq} {method}
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
"""

_PCMU = """v=0
o=user1 53655765 {version} IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
{extra}"""


def request(method: str, cseq: int, *, in_dialog: bool, sdp_extra: str | None = None, auth: bool = False,
            retrans: bool = True) -> str:
    """One ``<send>`` of a request; with ``sdp_extra`` (possibly empty) it carries a PCMU offer."""
    text = _HEAD.format(method=method, cseq=cseq, to_tag="[peer_tag_param]" if in_dialog else "")
    if auth:
        text += "[authentication]\n"
    if sdp_extra is None:
        text += "Content-Length: 0\n\n"
    else:
        body = _PCMU.format(version=2353687637 + cseq, extra=f"{sdp_extra}\n" if sdp_extra else "")
        text += f"Content-Type: application/sdp\nContent-Length: [len]\n\n{body}"
    attr = ' retrans="500"' if retrans else ""
    return f"  <send{attr}><![CDATA[\n{text}]]></send>\n"


def expect_answer(*, check: str | None = None) -> str:
    """The provisional responses (optional) and the 200, with a regexp the 200's body must match."""
    out = '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    if check is None:
        return out + '  <recv response="200" rtd="true"/>\n'
    return out + (
        '  <recv response="200">\n'
        f'    <action><ereg regexp="{check}" search_in="body" check_it="true" assign_to="checked"/></action>\n'
        '  </recv>\n  <Reference variables="checked"/>\n'
    )


def scenario(name: str, *steps: str) -> str:
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{"".join(steps)}</scenario>\n'


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def ack(cseq: int) -> str:
    return request("ACK", cseq, in_dialog=True, retrans=False)


def bye(cseq: int) -> str:
    return request("BYE", cseq, in_dialog=True) + '  <recv response="200" crlf="true"/>\n'


HOLD_UAC = scenario(
    "call, hold with re-INVITE sendonly, resume, hang up",
    request("INVITE", 1, in_dialog=False, sdp_extra=""), expect_answer(), ack(1), pause(500),
    request("INVITE", 2, in_dialog=True, sdp_extra="a=sendonly"), expect_answer(check="a=recvonly"), ack(2),
    pause(300), bye(3),
)

DTMF_UAC = scenario(
    "call, send in-band DTMF from a WAV, hang up",
    request("INVITE", 1, in_dialog=False, sdp_extra=""), expect_answer(), ack(1),
    '  <nop><action><exec rtp_stream="WAVFILE,1,0"/></action></nop>\n', pause(5000), bye(2),
)

AUTH_UAC = scenario(
    "INVITE, answer the digest challenge, talk, hang up",
    request("INVITE", 1, in_dialog=False), '  <recv response="100" optional="true"/>\n',
    '  <recv response="401" auth="true"/>\n', request("ACK", 1, in_dialog=True, retrans=False),
    request("INVITE", 2, in_dialog=False, sdp_extra="", auth=True), expect_answer(), ack(2), pause(300), bye(3),
)

BUSY_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE" />
  <send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK" />
</scenario>
"""


def _reply(status: str, *, sdp: bool = False, extra: str = "") -> str:
    """One ``<send>`` of a response to the last request (with a PCMU answer: ``sdp``)."""
    head = (f"SIP/2.0 {status}\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n"
            "[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\n{extra}")
    head = head.replace("{extra}", extra)
    if sdp:
        body = _PCMU.format(version=2353687637, extra="")
        text = head + f"Content-Type: application/sdp\nContent-Length: [len]\n\n{body}"
    else:
        text = head + "Content-Length: 0\n\n"
    attr = ' retrans="500"' if status.startswith("200") and sdp else ""
    return f"  <send{attr}><![CDATA[\n{text}]]></send>\n"


def answering_uas(name: str, *, checks: dict[str, str], challenge: tuple[str, str] | None = None) -> str:
    """A UAS that answers one call and waits for its BYE, after checking headers of the INVITE (``checks``:
    header -> a regexp its value must match) and, with ``challenge`` (user, password), a digest challenge
    answered with those credentials."""
    steps = []
    if challenge is not None:
        steps += ['  <recv request="INVITE"/>\n',
                  _reply("401 Unauthorized", extra='WWW-Authenticate: Digest realm="sipp.test", nonce="4a8b7c"\n'),
                  '  <recv request="ACK"/>\n',
                  '  <recv request="INVITE" check_it="true">\n    <action>\n'
                  f'      <verifyauth assign_to="authvalid" username="{challenge[0]}" password="{challenge[1]}"/>\n'
                  '    </action>\n  </recv>\n',
                  '  <nop test="authvalid" next="good"/>\n  <nop><action><exec int_cmd="stop_now"/></action></nop>\n'
                  '  <label id="good"/>\n']
    else:
        action = "".join(f'      <ereg regexp="{escape(rx)}" search_in="hdr" header="{hdr}:" check_it="true" '
                         f'assign_to="h{i}"/>\n' for i, (hdr, rx) in enumerate(checks.items()))
        steps.append(f'  <recv request="INVITE">\n    <action>\n{action}    </action>\n  </recv>\n')
        if checks:
            steps.append(f'  <Reference variables="{",".join(f"h{i}" for i in range(len(checks)))}"/>\n')
    steps += [_reply("180 Ringing"), _reply("200 OK", sdp=True), '  <recv request="ACK"/>\n',
              '  <recv request="BYE"/>\n', _reply("200 OK")]
    return scenario(name, *steps)


def headers_uac(headers: str) -> str:
    """A UAC that calls in with ``headers`` (lines) on its INVITE, is answered, and hangs up."""
    invite = request("INVITE", 1, in_dialog=False, sdp_extra="").replace("Max-Forwards: 70\n",
                                                                          f"Max-Forwards: 70\n{headers}")
    return scenario("INVITE with headers", invite, expect_answer(), ack(1), pause(500), bye(2))


_ANSWER = ['  <recv request="INVITE"/>\n', _reply("180 Ringing"), _reply("200 OK", sdp=True),
           '  <recv request="ACK"/>\n']
_HANG_UP = ['  <recv request="BYE"/>\n', _reply("200 OK")]


def info_uas(content_type: str, body: str) -> str:
    """A UAS that answers, then checks an INFO (its Content-Type, a regexp of its body) and waits for BYE."""
    check = (f'      <ereg regexp="{content_type}" search_in="hdr" header="Content-Type:" check_it="true" '
             'assign_to="ct"/>\n'
             f'      <ereg regexp="{body}" search_in="body" check_it="true" assign_to="b"/>\n')
    return scenario("INFO", *_ANSWER, f'  <recv request="INFO">\n    <action>\n{check}    </action>\n  </recv>\n',
                    '  <Reference variables="ct,b"/>\n', _reply("200 OK"), *_HANG_UP)


def _notify(cseq: int, sipfrag: str, state: str) -> str:
    text = ("NOTIFY [$contact] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            "From:[$me]\nTo:[$node]\nCall-ID: [call_id]\n"
            f"CSeq: {cseq} NOTIFY\nContact: <sip:[local_ip]:[local_port]>\nMax-Forwards: 70\nEvent: refer\n"
            f"Subscription-State: {state}\nContent-Type: message/sipfrag\nContent-Length: [len]\n\n{sipfrag}\n")
    return f'  <send retrans="500"><![CDATA[\n{text}]]></send>\n  <recv response="200"/>\n'


def refer_uas(refer_to: str, outcome: str) -> str:
    """A UAS that answers, accepts a REFER whose Refer-To matches ``refer_to`` (a regexp), reports the
    transfer in two NOTIFYs (100 Trying, then ``outcome``, a status line) and waits for BYE."""
    action = ('    <action>\n'
              f'      <ereg regexp="{escape(refer_to)}" search_in="hdr" header="Refer-To:" check_it="true" '
              'assign_to="rt"/>\n'
              '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="node"/>\n'
              '      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="me"/>\n'
              '      <ereg regexp="&lt;(sip:[^&gt;]*)&gt;" search_in="hdr" header="Contact:" assign_to="c,contact"/>\n'
              '    </action>\n')
    return scenario("REFER", *_ANSWER, f'  <recv request="REFER">\n{action}  </recv>\n',
                    '  <Reference variables="rt,c"/>\n', _reply("202 Accepted"),
                    _notify(1, "SIP/2.0 100 Trying", "active;expires=60"),
                    _notify(2, outcome, "terminated;reason=noresource"), *_HANG_UP)


def headers_uac_checking_200(checks: dict[str, str]) -> str:
    """A UAC that calls in, checks headers of the 200 (header -> a regexp of its value), and hangs up."""
    action = "".join(f'      <ereg regexp="{escape(rx)}" search_in="hdr" header="{hdr}:" check_it="true" '
                     f'assign_to="h{i}"/>\n' for i, (hdr, rx) in enumerate(checks.items()))
    answer = ('  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
              f'  <recv response="200">\n    <action>\n{action}    </action>\n  </recv>\n'
              f'  <Reference variables="{",".join(f"h{i}" for i in range(len(checks)))}"/>\n')
    return scenario("INVITE, headers on the 200", request("INVITE", 1, in_dialog=False, sdp_extra=""), answer,
                    ack(1), pause(300), bye(2))
