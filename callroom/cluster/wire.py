"""The bus's encoding: one message (``messages.py``) to bytes and back.

Pickle, reduced to (class, field values) as ``model/codec.py`` does between a node's processes, but read
with an unpickler that builds nothing except the message classes of ``messages.py`` and the media
instructions they carry: a datagram on the bus from anything else than a node of the same version names
some other callable, and is refused (``WireError``) instead of run.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any, get_args

from callroom.cluster import messages as bus
from callroom.errors import CallroomError
from callroom.model.codec import CLASSES, by_fields


class WireError(CallroomError):
    """Bytes from the bus that are not a message of this version."""


BUS_CLASSES: tuple[type, ...] = (*get_args(bus.BusRequest), *get_args(bus.BusReply))
for _cls in BUS_CLASSES:
    copyreg.pickle(_cls, by_fields(_cls))

_ALLOWED: dict[tuple[str, str], type] = {(c.__module__, c.__qualname__): c for c in (*CLASSES, *BUS_CLASSES)}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        cls = _ALLOWED.get((module, name))
        if cls is None:
            raise WireError(f"not a bus message class: {module}.{name}")
        return cls


def encode(message: bus.BusMessage) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> bus.BusMessage:
    try:
        message: object = _Unpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"unreadable bus message: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, bus.BusRequest | bus.BusReply):
        raise WireError(f"not a bus message: {type(message).__name__}")
    return message
