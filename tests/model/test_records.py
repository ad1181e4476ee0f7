"""Identifiers and time text the control plane hands out."""

from __future__ import annotations

import uuid

from callroom.model.records import new_uuid
from callroom.timefmt import iso


def test_new_uuid_is_a_random_version_4_uuid_in_canonical_text() -> None:
    seen = {new_uuid() for _ in range(2000)}
    assert len(seen) == 2000
    for text in list(seen)[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case 8-4-4-4-12
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_iso_is_the_same_text_remembered_or_not() -> None:
    assert iso(None) is None
    assert iso(0) == "1970-01-01T00:00:00.000000Z"
    ts = 1795873093.49222
    first = iso(ts)
    assert first == "2026-11-28T13:38:13.492220Z"
    assert iso(ts) == first
    assert iso(ts + 1e-6) != first
