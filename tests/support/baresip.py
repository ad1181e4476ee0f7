"""baresip, the SIP softphone, as a test peer: finding it, its configuration (plain on UDP, or SRTP over TLS),
the tone it plays and the pieces of what it recorded, and telling it to quit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from numpy.typing import NDArray

from tests.support.node import free_port

MODULES = Path("/usr/lib/baresip/modules")
# baresip quits on its own this long after it starts, should a test fail to end its call. The tests end the
# call from the node once they have what they need and then tell baresip to quit (SIGTERM): a call timed
# from baresip's start was cut short when starting and answering took long on a busy machine, and what
# the test still had to hear or play was missing.
SAFETY_SECONDS = 60


def baresip() -> str:
    path = shutil.which("baresip")
    if path is None or not (MODULES / "sndfile.so").exists():
        if os.environ.get("CI"):
            pytest.fail("baresip (with its sndfile, aufile and aubridge modules) is not installed")
        pytest.skip("baresip is not installed")
    return path


def tone_wav(path: Path, freq: float, seconds: float, amplitude: float = 8000.0) -> None:
    t = np.arange(int(8000 * seconds)) / 8000
    soundfile.write(path, (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16), 8000, subtype="PCM_16")


def baresip_config(directory: Path, source: Path, *, tls_ca: Path | None = None) -> None:
    """A headless baresip on loopback: SIP and RTP on 127.0.0.1, audio from ``source``, what it hears (and
    what it sends) written by ``sndfile`` as ``dump-*-dec.wav`` / ``dump-*-enc.wav`` in ``directory``.
    With ``tls_ca``: its account calls over TLS (trusting that CA) and insists on SRTP (``mediaenc=srtp-mand``:
    an ``RTP/SAVP`` offer with SDES keys, its ``srtp`` module).

    ``aubridge`` is a clocked player with no hardware behind it, so the decode path (and the sndfile
    filter on it) runs in real time. ``sipnat=outbound`` (which needs the ``uuid`` module) makes baresip
    1.0 send ``Supported: path, outbound`` instead of an empty ``Supported:`` header."""
    sip_port = free_port()
    rtp_low = free_port() & ~1
    cafile = f"sip_cafile\t{tls_ca}\n" if tls_ca is not None else ""
    srtp = "module\tsrtp.so\n" if tls_ca is not None else ""
    (directory / "config").write_text(
        f"""poll_method\tepoll
sip_listen\t127.0.0.1:{sip_port}
{cafile}net_interface\t127.0.0.1
rtp_ports\t{rtp_low}-{rtp_low + 10}
audio_player\taubridge,bridge
audio_source\taufile,{source}
audio_alert\taubridge,bridge
snd_path\t{directory}
jitter_buffer_delay\t1-10
module_path\t{MODULES}
module\tg711.so
module\taufile.so
module\taubridge.so
module\tsndfile.so
{srtp}module_tmp\tuuid.so
module_tmp\taccount.so
module_app\tmenu.so
"""
    )
    transport, mediaenc = (";transport=tls", ";mediaenc=srtp-mand") if tls_ca is not None else ("", "")
    (directory / "accounts").write_text(
        f"<sip:baresip@127.0.0.1:{sip_port}{transport}>;regint=0;sipnat=outbound;audio_codecs=PCMU{mediaenc}\n"
    )


def segment(samples: NDArray[np.int16], start: float, end: float) -> NDArray[np.int16]:
    """``samples[start s : end s]``, negative times counted from the end."""
    n = len(samples)
    a = int(start * 8000) % n if start < 0 else int(start * 8000)
    b = int(end * 8000) % n if end < 0 else int(end * 8000)
    return samples[a:b]


def quit_baresip(proc: subprocess.Popen[bytes]) -> bytes:
    """Tell baresip to quit (its call has ended); what it wrote."""
    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    return out
