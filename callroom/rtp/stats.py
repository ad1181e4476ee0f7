"""Counters of one RTP leg, and the call quality figures (MOS, Telnyx's ``call_quality_stats``) made of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RtpLegStats:
    """A snapshot of one leg's counters. ``*_bytes`` count whole RTP datagrams."""

    packets_received: int
    bytes_received: int
    packets_sent: int
    bytes_sent: int
    packets_lost: int  # RFC 3550 cumulative loss of the stream we receive
    jitter_ms: float  # RFC 3550 interarrival jitter of the stream we receive, now
    max_jitter_ms: float
    late_or_duplicate: int  # packets the jitter buffer could not play
    concealed_frames: int
    malformed: int  # datagrams that did not parse (RTP or RTCP)
    dropped: int  # valid packets ignored: unknown payload type, foreign source, before set_remote
    remote_fraction_lost: float  # from the peer's last report block about our stream (0..1)
    remote_packets_lost: int
    remote_jitter_ms: float
    round_trip_ms: float | None

    def mos(self) -> float:
        """Listening-quality estimate from a simplified ITU-T G.107 E-model for G.711 with concealment."""
        expected = self.packets_received + max(0, self.packets_lost)
        loss = 100.0 * max(0, self.packets_lost) / expected if expected else 0.0
        delay = (self.round_trip_ms or 0.0) / 2 + 2 * self.jitter_ms + 40.0  # 40 ms: jitter buffer + packet
        r = 93.2 - 0.024 * delay - (0.11 * (delay - 177.3) if delay > 177.3 else 0.0)
        r -= 95.0 * loss / (loss + 25.1)
        r = max(0.0, min(100.0, r))
        return 1.0 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)

    def call_quality_stats(self) -> dict[str, dict[str, str]]:
        """The ``call_quality_stats`` object of Telnyx's ``call.hangup`` webhook."""
        return {
            "inbound": {
                "jitter_max_variance": f"{self.max_jitter_ms:.2f}",
                "jitter_packet_count": str(self.late_or_duplicate),
                "mos": f"{self.mos():.2f}",
                "packet_count": str(self.packets_received),
                "skip_packet_count": str(max(0, self.packets_lost)),
            },
            "outbound": {"packet_count": str(self.packets_sent), "skip_packet_count": "0"},
        }
