"""The media process: what runs there around the engine (``callroom/media``).

    main            the process's entry point and the loop that carries out the API process's messages
    sip_phones      the SIP endpoint driver: calls in and out, SDP, one RTP leg per answered call
    sip_addresses   where a SIP call's packets go (host names looked up once per call, off the loop)

The API process reaches it through ``callroom/endpoints/media_process.py``.
"""
