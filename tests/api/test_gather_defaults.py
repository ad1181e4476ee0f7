"""A gather's defaults are written once (``model/media.py``): a request body that leaves a field out gets
the media instruction's default for it, and the OpenAPI document shows that default."""

from __future__ import annotations

import dataclasses

import pytest

from callroom.api import schemas_media as s
from callroom.model import media as m

SHARED = ("minimum_digits", "maximum_digits", "terminating_digit", "valid_digits", "timeout_millis",
          "inter_digit_timeout_millis", "initial_timeout_millis", "maximum_tries", "stop_playback_on_dtmf")


@pytest.mark.parametrize("body", [s.GatherAudio, s.GatherSpeak, s.ConferenceGatherAudio])
def test_a_gather_body_defaults_to_the_media_instructions_defaults(body: type[s.GatherAudio | s.GatherSpeak]) -> None:
    instruction = {f.name: f.default for f in dataclasses.fields(m.Gather)}
    properties = body.model_json_schema()["properties"]
    for name in SHARED:
        if name in body.model_fields:
            assert body.model_fields[name].default == instruction[name], name
            assert properties[name]["default"] == instruction[name], name
    assert {"minimum_digits", "valid_digits", "timeout_millis"} <= set(properties)
