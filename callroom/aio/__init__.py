"""The asyncio adapters: the sans-I/O cores (``callroom/sip``, ``callroom/rtp``) put on sockets and pipes.

    sip_transport   one UDP SIP socket around ``sip.ua.SipEndpoint``: datagrams and timers in, loop time passed
    rtp_socket      the UDP socket of an RTP session, with kernel receive times; RTCP's datagram endpoint
    rtcp_session    one leg's RTCP: the report timer, what reports go where
    rtp_leg         one RTP session as a leg of the engine (``media.ports.AudioLeg``)
    srtp_leg        the same with SRTP/SRTCP (keys agreed by SDES), never in the lanes
    rtp_lanes       many legs' steady state as arrays (one lane per leg)
    rtp_batch       every RTP leg of the engine read, decoded, encoded and sent as one batch per tick
    pipe            frames of messages between the API and media processes, never blocking the API

Nothing here decides anything about a call: that is the cores' (below) and the engine's and the
endpoint drivers' (above).
"""
