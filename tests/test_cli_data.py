"""``callroom keys`` finds the node's data as ``serve`` does, says which database it used, and creates none
where it was not told to look; ``callroom phone`` reaches the node on its configured port, or says in one line
that it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from callroom.store.reach import normalise_url
from tests.support.node import NodeThread, free_port
from tests.support.postgres import fresh_database
from tests.support.process import cli_env, run_cli


def test_keys_run_in_the_wrong_place_create_nothing(tmp_path: Path) -> None:
    for command in (["keys", "list"], ["keys", "create"], ["keys", "revoke", "KEYxyz"], ["cluster", "status"]):
        out = run_cli(*command, cwd=tmp_path)
        assert out.returncode == 1, out.stdout
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(f"callroom {command[0]}: no callroom database in the data dir (its default, "
                                   f"./.callroom, in {tmp_path}); nothing was created"), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_keys_find_the_data_as_serve_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli("--data-dir", str(data), "keys", "create", "--account", "ops")
    assert created.returncode == 0 and created.stdout.startswith("KEY")
    assert created.stderr.strip() == f"database: sqlite:///{data / 'callroom.db'}"
    (tmp_path / "callroom.toml").write_text('data-dir = "data"\n')
    for how, env in ((["--config", "callroom.toml"], cli_env()), ([], cli_env(CALLROOM_DATA_DIR=str(data))),
                     ([], cli_env(CALLROOM_CONFIG=str(tmp_path / "callroom.toml")))):  # fmt: skip
        listing = run_cli("keys", "list", *how, env=env, cwd=tmp_path)
        assert listing.returncode == 0 and "account=ops" in listing.stdout, listing.stderr
        assert listing.stderr.strip() == f"database: sqlite:///{data / 'callroom.db'}"


@pytest.mark.postgres
def test_keys_refuse_a_database_callroom_has_not_set_up() -> None:
    with fresh_database() as url:
        listing = run_cli("keys", "list", "--database-url", url)
        assert listing.returncode == 1
        assert listing.stderr.strip().splitlines()[-1].endswith(
            "has no callroom tables (is it the node's database?); nothing was changed ('callroom keys create' sets "
            "up a new one)")
        engine = create_engine(normalise_url(url))
        assert inspect(engine).get_table_names() == []
        engine.dispose()
        assert run_cli("keys", "create", "--database-url", url).returncode == 0  # told where: set up
        assert "account=default" in run_cli("keys", "list", "--database-url", url).stdout


def test_phone_uses_the_configured_port(tmp_path: Path, node: NodeThread) -> None:
    key = node.new_key("phone-port")
    (tmp_path / "callroom.toml").write_text(f"port = {node.port}\n")
    created = run_cli("phone", "call", "0", "--config", "callroom.toml", "--api-key", key, cwd=tmp_path)
    assert created.returncode == 1  # no such application: the node answered
    assert '"errors"' in created.stdout, created.stderr

    closed = free_port()
    out = run_cli("phone", "call", "0", "--api-key", key, env=cli_env(CALLROOM_PORT=str(closed)), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"callroom phone: cannot reach the node at http://127.0.0.1:{closed}: "
                                  "[Errno 111] Connection refused")
