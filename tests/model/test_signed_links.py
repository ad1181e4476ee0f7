"""Public recording links: good for ten minutes with the secret they were made with, and for nothing changed."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from callroom.model.signed_links import LINK_LIFETIME_SECS, public_url, refusal

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def _query(url: str) -> tuple[str, str]:
    q = parse_qs(urlsplit(url).query)
    return q["expires"][0], q["signature"][0]


def test_a_link_opens_its_file_for_ten_minutes() -> None:
    url = public_url("http://node:8080", SECRET, "rec-1", "wav", NOW)
    assert url.startswith("http://node:8080/v2/recordings/rec-1/public.wav?expires=")
    expires, sig = _query(url)
    assert int(expires) == NOW + LINK_LIFETIME_SECS == NOW + 600
    assert refusal(SECRET, "rec-1", "wav", expires, sig, NOW) is None
    assert refusal(SECRET, "rec-1", "wav", expires, sig, NOW + 600) is None
    assert refusal(SECRET, "rec-1", "wav", expires, sig, NOW + 601) == (
        "The link has expired; the recording's API (with an API key) gives a new one.")


def test_anything_changed_is_refused() -> None:
    expires, sig = _query(public_url("", SECRET, "rec-1", "wav", NOW))
    mismatch = "The link's signature does not match."
    assert refusal(SECRET, "rec-2", "wav", expires, sig, NOW) == mismatch
    assert refusal(SECRET, "rec-1", "mp3", expires, sig, NOW) == mismatch
    assert refusal(SECRET, "rec-1", "wav", str(int(expires) + 3600), sig, NOW) == mismatch
    assert refusal(SECRET, "rec-1", "wav", expires, sig[:-1] + ("A" if sig[-1] != "A" else "B"), NOW) == mismatch
    assert refusal(b"t" * 32, "rec-1", "wav", expires, sig, NOW) == mismatch
    assert refusal(SECRET, "rec-1", "wav", expires, "", NOW) == mismatch
    for bad in ("", "-5", "1e9", "9" * 40):
        assert refusal(SECRET, "rec-1", "wav", bad, sig, NOW) == "The link has no valid expiry."
