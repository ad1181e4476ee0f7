"""The messages that cross a process, and their one codec: every class survives the pipe unchanged, and
the codec pickles each of them by its field values."""

from __future__ import annotations

import copyreg
import dataclasses
import pickle
import typing

import numpy as np

from callroom.aio.pipe import FrameReader, frame
from callroom.model import codec
from callroom.model import media as m
from callroom.model import messages as msg


def sample(cls: type) -> object:
    """An instance of ``cls`` with a value of the right kind in every field."""
    values: dict[str, object] = {}
    hints = typing.get_type_hints(cls, vars(m) | vars(msg))
    for i, f in enumerate(dataclasses.fields(cls)):
        hint = str(hints[f.name])
        if "MediaOp" in hint or "Ring" in hint:
            values[f.name] = (m.Park("v3:1"), m.Bridge("v3:2", "v3:3"))
        elif "NDArray" in hint or "ndarray" in hint:
            values[f.name] = np.arange(320, dtype=np.int16)
        elif "dict" in hint:
            values[f.name] = {"mos": 4.2, "jitter": {"max": 3}}
        elif "tuple" in hint:
            values[f.name] = ("a", "b") if "str" in hint else ()
        elif "bool" in hint:
            values[f.name] = True
        elif "int" in hint or "float" in hint:
            values[f.name] = 7 + i
        elif "AudioSpec" in hint:
            values[f.name] = m.AudioSpec("tts", "hello", voice="female")
        else:
            values[f.name] = f"{f.name}-{i}"
    return cls(**values)


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, typing.cast(np.ndarray, b)))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


def test_every_instruction_and_fact_crosses_the_pipe_unchanged() -> None:
    ops = [sample(cls) for cls in typing.get_args(m.MediaOp) + typing.get_args(m.MediaFact)]
    members = tuple(m.ConferenceMember(f"v3:{i}", i % 2 == 0, False, "none", ("v3:0",), None) for i in range(3))
    ops.append(m.ConferenceMix("conf", members, False, "enter", "url:http://127.0.0.1/a.wav"))
    n_ops, n_facts = len(typing.get_args(m.MediaOp)), len(typing.get_args(m.MediaFact))
    assert (n_ops, n_facts) == (26, 11)  # (a new one needs its sample above)
    instructions = msg.Instructions(tuple(typing.cast(list[m.MediaOp], ops[:n_ops])))
    facts = typing.cast(list[msg.Message], ops[n_ops:n_ops + n_facts])
    reader = FrameReader()
    assert reader.feed(frame([instructions, *facts])) == [instructions, *facts]
    assert reader.feed(frame([msg.Instructions((typing.cast(m.MediaOp, ops[-1]),))]))[0] == msg.Instructions(
        (typing.cast(m.MediaOp, ops[-1]),))


def test_every_message_crosses_the_pipe_unchanged() -> None:
    classes = typing.get_args(msg.Message)
    assert len(classes) == 46
    sent = [typing.cast(msg.Message, sample(cls)) for cls in classes]
    got = FrameReader().feed(frame(sent))
    assert len(got) == len(sent)
    for a, b in zip(sent, got, strict=True):
        assert same(a, b), (a, b)


def test_the_codec_pickles_every_message_and_what_it_carries_by_its_fields() -> None:
    for cls in (*typing.get_args(msg.Message), *typing.get_args(m.MediaOp), m.ConferenceMember, m.AudioSpec):
        assert cls in copyreg.dispatch_table, cls
        assert cls in codec.CLASSES
        one = sample(cls)
        reducer = copyreg.dispatch_table[cls]
        rebuilt, args = typing.cast(tuple[type, tuple[object, ...]], reducer(one))
        assert rebuilt is cls and same(cls(*args), one)
    # The reduced form names the class and its values: no per-field state dictionary.
    data = codec.encode([msg.RemoveLeg("v3:1")])
    assert b"__dict__" not in data and b"call_control_id" not in data
    assert pickle.loads(data) == [msg.RemoveLeg("v3:1")]
