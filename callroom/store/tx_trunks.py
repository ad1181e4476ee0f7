"""SIP trunks and phone numbers in the store (part of ``tx.Tx``). An account sees only its own; the node's
routing reads every account's at once (``all_trunks``, ``all_phone_numbers``), as the SIP plane needs."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, delete, insert, select, update

from callroom.model.trunks import PhoneNumber, Trunk, TrunkSettings
from callroom.store import schema as t
from callroom.store.tx_base import TxBase, to_row


class TrunkTx(TxBase):
    def insert_trunk(self, trunk: Trunk) -> None:
        self.conn.execute(insert(t.trunks).values(to_row(trunk)))

    def update_trunk(self, trunk: Trunk) -> None:
        c = t.trunks.c
        self.conn.execute(update(t.trunks).where(and_(c.id == trunk.id, c.account_id == trunk.account_id))
                          .values(to_row(trunk)))

    def delete_trunk(self, account_id: str, trunk_id: str) -> None:
        """The trunk goes; the numbers it brought stay, without a trunk (calls to them can no longer come)."""
        c = t.trunks.c
        self.conn.execute(delete(t.trunks).where(and_(c.id == trunk_id, c.account_id == account_id)))
        n = t.phone_numbers.c
        self.conn.execute(update(t.phone_numbers).where(and_(n.trunk_id == trunk_id, n.account_id == account_id))
                          .values(trunk_id=None))

    def get_trunk(self, account_id: str, trunk_id: str) -> Trunk | None:
        c = t.trunks.c
        return self._one(Trunk, select(t.trunks).where(and_(c.account_id == account_id,
                                                            (c.id == trunk_id) | (c.name == trunk_id))))

    def list_trunks(self, account_id: str, page: int, size: int) -> tuple[list[Trunk], int]:
        c = t.trunks.c
        return self._page(Trunk, t.trunks, c.account_id == account_id, [c.created_at, c.id], page, size)

    def all_trunks(self) -> list[Trunk]:
        return self._all(Trunk, select(t.trunks).order_by(t.trunks.c.created_at, t.trunks.c.id))

    def put_trunk(self, account_id: str, spec: TrunkSettings, now: float) -> Trunk:
        """Create the trunk ``spec`` names in ``account_id``, or change the one of that name; its numbers are
        added (a number another account holds: ``ValueError``)."""
        trunk = self.get_trunk(account_id, spec.name)
        if trunk is None:
            trunk = spec.trunk(str(uuid.uuid4()), account_id, now)
            self.insert_trunk(trunk)
        else:
            fresh = spec.trunk(trunk.id, account_id, now)
            fresh.created_at = trunk.created_at
            trunk = fresh
            self.update_trunk(trunk)
        for number in spec.numbers:
            self.add_phone_number(account_id, number, trunk.id, now)
        return trunk

    # -- phone numbers --------------------------------------------------------------------------------

    def add_phone_number(self, account_id: str, number: str, trunk_id: str | None, now: float) -> PhoneNumber:
        """The number, brought by ``trunk_id``; one already there keeps its application."""
        c = t.phone_numbers.c
        found = self._one(PhoneNumber, select(t.phone_numbers).where(c.phone_number == number))
        if found is not None:
            if found.account_id != account_id:
                raise ValueError(f"{number} belongs to another account")
            if found.trunk_id != trunk_id:
                found.trunk_id, found.updated_at = trunk_id, now
                self.update_phone_number(found)
            return found
        pn = PhoneNumber(str(uuid.uuid4()), account_id, number, trunk_id, None, now, now)
        self.conn.execute(insert(t.phone_numbers).values(to_row(pn)))
        return pn

    def update_phone_number(self, pn: PhoneNumber) -> None:
        c = t.phone_numbers.c
        self.conn.execute(update(t.phone_numbers).where(and_(c.id == pn.id, c.account_id == pn.account_id))
                          .values(to_row(pn)))

    def get_phone_number(self, account_id: str, id_or_number: str) -> PhoneNumber | None:
        c = t.phone_numbers.c
        return self._one(PhoneNumber, select(t.phone_numbers).where(
            and_(c.account_id == account_id, (c.id == id_or_number) | (c.phone_number == id_or_number))))

    def delete_phone_number(self, account_id: str, number_id: str) -> None:
        c = t.phone_numbers.c
        self.conn.execute(delete(t.phone_numbers).where(and_(c.id == number_id, c.account_id == account_id)))

    def list_phone_numbers(self, account_id: str, page: int, size: int, *, connection_id: str | None = None,
                           contains: str | None = None) -> tuple[list[PhoneNumber], int]:  # fmt: skip
        c = t.phone_numbers.c
        where = c.account_id == account_id
        if connection_id is not None:
            where = and_(where, c.connection_id == connection_id)
        if contains:
            where = and_(where, c.phone_number.contains(contains, autoescape=True))
        return self._page(PhoneNumber, t.phone_numbers, where, [c.phone_number], page, size)

    def all_phone_numbers(self) -> list[PhoneNumber]:
        return self._all(PhoneNumber, select(t.phone_numbers))
