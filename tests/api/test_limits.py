"""The request limits (callroom/api/limits.py): JSON nesting, body sizes."""

from __future__ import annotations

import json

import pytest

from callroom.api import limits
from callroom.errors import ValidationFailed


def _nested(depth: int) -> bytes:
    """A JSON object whose objects and arrays nest ``depth`` levels deep (the object itself is level 1)."""
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_json_as_deep_as_the_limit_is_parsed() -> None:
    assert limits.load_json(_nested(limits.MAX_JSON_DEPTH))["a"] is not None
    assert limits.load_json(json.dumps({"a": "[" * 50}).encode()) == {"a": "[" * 50}  # brackets in text
    wide = {"items": [[{"k": [1]}] for _ in range(5000)]}  # many brackets, little depth
    assert limits.load_json(json.dumps(wide).encode()) == wide


@pytest.mark.parametrize("depth", [limits.MAX_JSON_DEPTH + 1, 900, 1000, 200_000])
def test_json_deeper_than_the_limit_is_refused_with_the_body_pointed_at(depth: int) -> None:
    with pytest.raises(ValidationFailed) as refused:
        limits.load_json(_nested(depth))
    [item] = refused.value.items
    assert (item.code, item.pointer) == ("10015", "/")
    assert f"more than {limits.MAX_JSON_DEPTH} levels deep" in item.detail


def test_invalid_json_is_still_a_value_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        limits.load_json(b"{not json")
    with pytest.raises(ValueError):
        limits.load_json(b'{"a": "\xff"}')
