"""The media engine, which runs in the media process: legs and sources as mixer ports, mixed every 20 ms.

    engine      the engine: legs, placements (who hears whom), the tick; a batch of legs is given to it
    mixer       ports and a who-hears-whom graph, N-1 mixing with adaptive gain
    topology    placements as mixer edges (bridges, queues, conferences as talkers x listeners)
    ports       what the engine needs of a leg (``AudioLeg``) and the frame format
    tones       tones, beeps, comfort noise, hold music
    talkers     who has the floor in a conference
    actions     playback, speech, recording, gathering, DTMF sending, carried out in the engine
    players, recorders, gather, sources   their parts
    op_batches  the instructions of one tick, less the conference mixes a later one supersedes
    virtual_audio   a virtual phone's audio as a leg

No sockets here: the RTP legs and their batch come from ``callroom/aio``, wired by ``callroom/media_worker``.
"""
