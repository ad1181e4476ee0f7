"""A fresh PostgreSQL database for the nodes of one cluster test (dropped afterwards); in CI a missing
server fails the test instead of skipping it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from callroom.store.engine import normalise_url
from tests.support.cluster import Cluster, running_cluster
from tests.support.receiver import WebhookReceiver

PG_URL = os.environ.get("CALLROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def cluster_db() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    admin = create_engine(normalise_url(PG_URL), poolclass=NullPool, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    name = f"callroom_cluster_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes (n0, n1, n2) on one fresh database and the local NATS server, shared by a module's tests."""
    receiver = WebhookReceiver()
    try:
        with fresh_database() as url, running_cluster(tmp_path_factory.mktemp("trio"), url, receiver) as cluster:
            yield cluster
    finally:
        receiver.close()
