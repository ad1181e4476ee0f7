"""Audio in and out for the media engine, which works in 8 kHz mono int16 (160-sample frames).

    pcm        the sample format and float <-> int16 conversion
    resample   band-limited polyphase sample-rate conversion
    sniff      what a blob of bytes is (WAV, MP3, or why it is not playable)
    decode     WAV / MP3 bytes -> 8 kHz mono int16
    encode     recording writers (WAV, MP3) and silence trimming
    recording  RecordingBuffer, the streaming per-channel recorder
    tts        text-to-speech with espeak-ng
    lru        a sample-bounded LRU used by tts and fetch
    fetch      MediaFetcher, the async http(s) downloader with caches and limits

Everything but ``fetch`` is synchronous and CPU-bound: run it in an executor.
"""
