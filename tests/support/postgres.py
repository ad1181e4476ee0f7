"""A fresh PostgreSQL database for the nodes of one test (dropped afterwards), on the server named by
``CALLROOM_TEST_PG_URL``; in CI a missing server fails the test instead of skipping it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from callroom.store.reach import normalise_url

PG_URL = os.environ.get("CALLROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def fresh_database(prefix: str = "callroom_cluster") -> Iterator[str]:
    """A new PostgreSQL database (dropped after), its URL; PostgreSQL unreachable: a failure in CI, else a skip."""
    admin = create_engine(normalise_url(PG_URL), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL is unreachable: {exc}")
    try:
        yield normalise_url(PG_URL).rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
