"""The one codec for what crosses a process: ``encode`` a list of messages to bytes, ``decode`` them back.

It is pickle, with every message class and every class they carry (the MediaOps and MediaFacts of
``media.py``, a conference's members, audio specs) reduced to (class, field values) through ``copyreg``:
the default for a slotted dataclass builds its state in Python field by field (``_dataclass_getstate``);
a mute's ``ConferenceMix`` of ten members took 18 us to pickle that way, 7 us this way. Decoding calls
each class with its field values, so every field of these classes must be an ``__init__`` argument
(checked here, when the module is imported).

Pickle, because both ends are callroom processes of the same version started together; a bus between
nodes of different versions will want an explicit encoding of the same classes, here.
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
import pickle
from collections.abc import Callable, Sequence
from typing import Any, get_args

from callroom.model import media as m
from callroom.model import messages as msg

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def encode(messages: Sequence[msg.Message]) -> bytes:
    """One pickle of ``messages``, in order."""
    return pickle.dumps(list(messages), protocol=_PROTOCOL)


def decode(data: bytes | bytearray | memoryview) -> list[msg.Message]:
    messages: list[msg.Message] = pickle.loads(data)
    return messages


def by_fields(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        raise TypeError(f"{cls.__name__}: every field must be an __init__ argument to be decoded")
    if not fields:
        return lambda _obj: (cls, ())
    values = operator.attrgetter(*(f.name for f in fields))
    if len(fields) == 1:
        return lambda obj: (cls, (values(obj),))
    return lambda obj: (cls, values(obj))


CLASSES: tuple[type, ...] = (
    *get_args(m.MediaOp), m.ConferenceMember, m.AudioSpec,
    *get_args(m.MediaFact),
    *(cls for cls in get_args(msg.Message) if cls not in get_args(m.MediaFact)),
)
"""The classes pickled by their field values."""

for _cls in CLASSES:
    copyreg.pickle(_cls, by_fields(_cls))
