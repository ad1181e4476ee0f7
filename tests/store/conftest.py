"""The ``store`` fixture: every test in this package runs once per backend.

``sqlite``: a fresh database file in the test's ``tmp_path``.
``postgres``: a fresh database with a unique name on the server named by ``CALLROOM_TEST_PG_URL``
(default: the local trust-auth server), migrated, and dropped after the test. To keep the suite fast the
database is cloned (``CREATE DATABASE ... TEMPLATE``) from one migrated once per session, and ``migrate()``
is run on it again; ``fresh_store`` migrates an empty database instead, for the migration tests.

When the server cannot be reached the postgres tests are skipped, except under CI (env ``CI`` set), where
they fail: a CI run that silently tested SQLite only would be a green light for nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from callroom.store.engine import Store
from callroom.store.reach import normalise_url

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pg_base_url() -> URL:
    return make_url(normalise_url(os.environ.get("CALLROOM_TEST_PG_URL", DEFAULT_PG_URL)))


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason} (CI is set, so the postgres store tests must run; check CALLROOM_TEST_PG_URL)", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine | str]:
    """An autocommit engine on the maintenance database, or the reason there is none."""
    url = pg_base_url()
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        yield f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable: {type(exc).__name__}: {exc}"
        return
    yield engine
    engine.dispose()


@contextmanager
def _pg_database(admin: Engine | str, template: str | None = None) -> Iterator[URL]:
    """A new database with a unique name (a copy of ``template`` if given), dropped on exit."""
    if isinstance(admin, str):
        _unavailable(admin)
    name = f"callroom_test_{uuid.uuid4().hex[:16]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    try:
        yield pg_base_url().set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def _migrated(url: URL | str) -> Iterator[Store]:
    store = Store(url if isinstance(url, str) else url.render_as_string(hide_password=False))
    try:
        store.migrate()
        yield store
    finally:
        store.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin: Engine | str) -> Iterator[str]:
    """The name of a database migrated once per session (closed again: a template must be idle)."""
    with _pg_database(pg_admin) as url:
        with _migrated(url):
            pass
        assert url.database is not None
        yield url.database


@pytest.fixture
def postgres_store(pg_admin: Engine | str, pg_template: str) -> Iterator[Store]:
    with _pg_database(pg_admin, template=pg_template) as url, _migrated(url) as store:
        yield store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with _migrated(f"sqlite:///{tmp_path / 'callroom.db'}") as store:
        yield store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    """A migrated, empty store on each backend."""
    backend: str = request.param
    chosen: Store = request.getfixturevalue(f"{backend}_store")
    return chosen


@pytest.fixture(params=BACKENDS)
def fresh_store(request: pytest.FixtureRequest, pg_admin: Engine | str, tmp_path: Path) -> Iterator[Store]:
    """Like ``store``, but always migrated from an empty database."""
    if request.param == "sqlite":
        with _migrated(f"sqlite:///{tmp_path / 'fresh.db'}") as store:
            yield store
        return
    with _pg_database(pg_admin) as url, _migrated(url) as store:
        yield store
