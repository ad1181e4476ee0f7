"""A node's SIP trunks and phone numbers: read from the store, given to the control plane (which decides
with them) and to the media process (which dials, registers and admits with them), and kept current.

They change through the API (``/v2/trunks``, ``/v2/phone_numbers``: this node reloads at once), through
``callroom trunks`` on the command line, or on another node of a cluster: every node also reads them again
every ``REFRESH_SECS`` and passes on what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from callroom.control.service import Control
from callroom.endpoints.media_process import MediaProcess
from callroom.model.messages import SetTrunks, TrunkStatus
from callroom.model.numbers import normalise
from callroom.model.trunks import TrunkDirectory
from callroom.store import cooperative
from callroom.store.engine import Store
from callroom.store.trunk_config import load_directory
from callroom.timefmt import iso

log = logging.getLogger(__name__)

REFRESH_SECS = 10.0


class TrunkSync:
    """Owns the refresh task (``start``/``stop``) and the registration states the media process reports."""

    def __init__(self, store: Store, control: Control, media: MediaProcess, *, sip: bool,
                 refresh_secs: float = REFRESH_SECS) -> None:  # fmt: skip
        self.store = store
        self.control = control
        self.media = media
        self.sip = sip
        self.refresh_secs = refresh_secs
        self.statuses: dict[str, TrunkStatus] = {}
        self._task: asyncio.Task[None] | None = None
        media.on_trunk_status = self._status

    def load(self) -> TrunkDirectory:
        """Read them (at start, before the media process starts: it gets them in its SipConfig)."""
        self.control.trunks = load_directory(self.store)
        return self.control.trunks

    async def reload(self) -> None:
        """Read them again; what changed goes to the control plane and the media process."""
        fresh = await cooperative.run_if(self.control.cooperative, load_directory, self.store)
        old = self.control.trunks
        self.control.trunks = fresh
        if self.sip and dict(fresh.trunks) != dict(old.trunks):
            self.media.send(SetTrunks(tuple(fresh.trunks.values())))
            for gone in set(self.statuses) - set(fresh.trunks):
                self.statuses.pop(gone, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh(), name="trunk-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_secs)
            try:
                await self.reload()
            except Exception:
                log.exception("reading the trunks failed")

    def _status(self, status: TrunkStatus) -> None:
        before = self.statuses.get(status.trunk_id)
        self.statuses[status.trunk_id] = status
        if before is None or before.state != status.state:
            trunk = self.control.trunks.trunks.get(status.trunk_id)
            log.info("trunk %s: %s%s", trunk.name if trunk else status.trunk_id, status.state,
                     f" ({status.status} {status.detail})".rstrip() if status.status else "")

    def registration(self, trunk_id: str) -> dict[str, object] | None:
        """What ``/v2/trunks`` shows of a trunk's registration (None: it does not register)."""
        trunk = self.control.trunks.trunks.get(trunk_id)
        if trunk is None or not trunk.register:
            return None
        status = self.statuses.get(trunk_id)
        if status is None:
            return {"state": "registering", "status": None, "expires_at": None}
        return {"state": status.state, "status": status.status,
                "expires_at": iso(status.expires_at) if status.expires_at is not None else None,
                "detail": status.detail or None}

    def inbound_target(self, trunk_ids: tuple[str, ...], user: str, caller: str,
                       to: str = "") -> tuple[str, str, str, str] | int:  # fmt: skip
        """Where a call from a trunk goes: (account id, connection id, from, to), or the SIP status that
        refuses it (404: not a number of the trunk's account, or one assigned to no application). The number
        is the Request-URI's user, or the To's (a provider that sends calls to our registered contact)."""
        directory = self.control.trunks
        to_user = to.removeprefix("sip:").split("@", 1)[0]
        for trunk_id, called in ((t, u) for t in trunk_ids for u in dict.fromkeys((user, to_user)) if u):
            trunk = directory.trunks.get(trunk_id)
            number = trunk.number_of_user(called) if trunk is not None else None
            owned = directory.number(number) if number is not None else None
            if trunk is None or owned is None or number is None or owned.account_id != trunk.account_id:
                continue
            if owned.connection_id:
                return trunk.account_id, owned.connection_id, caller_number(caller), number
        return 404


def caller_number(from_: str) -> str:
    """The caller as the application sees it: ``+E.164`` when the From's user is a number (written with or
    without ``+``), else the From as it is."""
    user = from_.removeprefix("sip:").split("@", 1)[0]
    normal = normalise(user if user.startswith("+") else "+" + user)
    return normal if normal is not None else from_

