"""Phone numbers, and the node's number plan: where a number dialled through the API rings on this node.

Telnyx applications dial ``+E.164`` numbers (most refuse to pass anything else). On a node without a SIP
trunk, the number plan maps numbers to local far ends, so such an application runs unchanged against a
laptop node: ``+15550000100`` → ``virtual:agent1;tone=700`` (a virtual phone) or → ``sip:desk@10.0.0.5``
(a SIP phone). The call keeps the number as its ``to`` (what the application dialled, in every webhook);
only the far end that rings is the plan's.

A plan is written ``NUMBER=ENDPOINT`` (``--number``, repeatable) or as a TOML table (``--number-plan``):

    [numbers]
    "+15550000100" = "virtual:agent1;tone=700"
    "+1 555 000 0101" = "sip:desk@10.0.0.5"

Numbers are normalised (spaces, dashes, dots and brackets dropped) and must be ``+`` and 8 to 15 digits.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_SEPARATORS = re.compile(r"[\s\-.()]")
ENDPOINT_SCHEMES = ("virtual:", "sip:")


def normalise(number: str) -> str | None:
    """``number`` as ``+`` and digits, or None if it is not an E.164 number."""
    compact = _SEPARATORS.sub("", number)
    return compact if _E164.fullmatch(compact) else None


def is_number(to: str) -> bool:
    return normalise(to) is not None


@dataclass(frozen=True)
class NumberPlan:
    entries: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> NumberPlan:
        """A plan of (number, endpoint) pairs; ``ValueError`` naming the first that is not one."""
        entries: dict[str, str] = {}
        for number, endpoint in pairs:
            normal = normalise(number)
            if normal is None:
                raise ValueError(f"{number!r} is not an E.164 number (+ and 8 to 15 digits)")
            endpoint = endpoint.strip()
            if not endpoint.startswith(ENDPOINT_SCHEMES):
                raise ValueError(f"{number}: {endpoint!r} is not a virtual: or sip: endpoint")
            if normal in entries and entries[normal] != endpoint:
                raise ValueError(f"{number} is mapped twice ({entries[normal]!r} and {endpoint!r})")
            entries[normal] = endpoint
        return cls(MappingProxyType(entries))

    @classmethod
    def parse(cls, items: Iterable[str], files: Iterable[Path] = ()) -> NumberPlan:
        """``NUMBER=ENDPOINT`` items and TOML files with a ``[numbers]`` table, together."""
        pairs: list[tuple[str, str]] = []
        for path in files:
            with path.open("rb") as f:
                table = tomllib.load(f).get("numbers", {})
            if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
                raise ValueError(f"{path}: [numbers] must map numbers to endpoint strings")
            pairs += table.items()
        for item in items:
            number, sep, endpoint = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r}: write NUMBER=ENDPOINT")
            pairs.append((number, endpoint))
        return cls.of(pairs)

    def endpoint_for(self, to: str) -> str | None:
        """Where ``to`` rings on this node, if the plan has it."""
        normal = normalise(to)
        return self.entries.get(normal) if normal is not None else None

    def __len__(self) -> int:
        return len(self.entries)


NO_NUMBERS = NumberPlan()
