"""Whether a database answers, told before the node is loaded: the real local PostgreSQL, a port nothing
listens on, and the URL forms accepted."""

from __future__ import annotations

import socket

import pytest

from callroom.errors import StoreError
from callroom.store.reach import normalise_url, reach_database
from tests.support.postgres import PG_URL


def test_the_url_forms() -> None:
    assert normalise_url("postgres://u@h:1/d") == "postgresql+psycopg://u@h:1/d"
    assert normalise_url("postgresql://u@h:1/d") == "postgresql+psycopg://u@h:1/d"
    assert normalise_url("postgresql+psycopg://u@h:1/d") == "postgresql+psycopg://u@h:1/d"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_database_that_answers_and_sqlite() -> None:
    reach_database(PG_URL)
    reach_database("sqlite:////nonexistent/dir/x.db")  # a SQLite file is opened when it is used


def test_a_database_that_does_not_answer_is_one_line_without_the_password() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(StoreError) as raised:
        reach_database(f"postgresql://postgres:secret@127.0.0.1:{port}/callroom?application_name=x", timeout=2)
    message = str(raised.value)
    assert message.startswith(f"cannot reach the database postgresql+psycopg://postgres:***@127.0.0.1:{port}/"), message
    assert "secret" not in message and "\n" not in message and "Connection refused" in message
