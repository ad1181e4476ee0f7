"""The store fixtures of ``tests/store`` (one run per backend) for the dispatcher tests here."""

from tests.store.conftest import pg_admin, pg_template, postgres_store, sqlite_store, store

__all__ = ["pg_admin", "pg_template", "postgres_store", "sqlite_store", "store"]
