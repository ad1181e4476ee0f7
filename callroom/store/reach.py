"""Telling a database's URL in its one form and whether the database answers, without loading SQLAlchemy's
engine or the schema: ``callroom serve`` asks before it imports the node (seconds on a busy machine), so that
an unreachable database is said at once."""

from __future__ import annotations

from typing import Any

from callroom.errors import StoreError

CONNECT_TIMEOUT_SECS = 5  # how long a first connection to PostgreSQL may take before the node says it cannot


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as well as SQLAlchemy's explicit driver form."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def reach_database(url: str, timeout: int = CONNECT_TIMEOUT_SECS) -> None:
    """Raise ``StoreError`` in one line unless the database at ``url`` answers (PostgreSQL: within ``timeout``
    seconds, unless the URL sets its own ``connect_timeout``; a SQLite file is opened when it is used). The
    driver and SQLAlchemy's URL parsing are imported here, not with this module: a node on SQLite does not
    load the driver for this."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    # The driver's arguments as SQLAlchemy's dialect derives them from the URL (its query too)
    params: dict[str, Any] = dict(parsed.get_dialect()().create_connect_args(parsed)[1])
    params.pop("context", None)
    params.setdefault("connect_timeout", timeout)
    try:
        psycopg.connect(**params).close()
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())  # libpq's message spans lines
        raise StoreError(f"cannot reach the database {parsed.render_as_string(hide_password=True)}: {detail}") from exc
