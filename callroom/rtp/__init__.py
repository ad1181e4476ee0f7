"""The sans-I/O RTP core: what one RTP stream is, without sockets, clocks or an event loop.

    packet     RTP packets (parse, __bytes__), sequence-number and timestamp arithmetic
    rtcp       RTCP packets and the RFC 3550 receive statistics and reports
    jitter     the jitter buffer, loss concealment and reframing of other packet sizes
    g711       G.711 mu-law / A-law tables
    dtmf       RFC 4733 telephone-events and in-band tones (generator, Goertzel detector)
    leg_dtmf   the DTMF of one leg both ways (digits received once, digits to send)
    sender     the stream one leg sends: sequence numbers, timestamps, marker, counts
    stats      a leg's figures (call_quality_stats)
    srtp       a leg's SRTP/SRTCP sessions (libsrtp through pylibsrtp)

Times are passed in. ``callroom/aio`` puts these on sockets.
"""
