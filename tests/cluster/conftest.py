"""A fresh PostgreSQL database for the nodes of one cluster test (dropped afterwards); in CI a missing
server fails the test instead of skipping it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, running_cluster
from tests.support.postgres import fresh_database
from tests.support.receiver import WebhookReceiver


@pytest.fixture
def cluster_db() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes (n0, n1, n2) on one fresh database and the local NATS server, shared by a module's tests."""
    receiver = WebhookReceiver()
    try:
        with fresh_database() as url, running_cluster(tmp_path_factory.mktemp("trio"), url, receiver) as cluster:
            yield cluster
    finally:
        receiver.close()
