"""The README's command lines work as written: each ``callroom ...`` and ``scripts/serve ...`` it quotes is
accepted by the command line (placeholders filled in), and the ones an operator runs first are run for real
against a node (``scripts/serve`` is ``callroom serve`` with its arguments passed through)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import pytest

from callroom.cli import parser
from tests.support.node import free_port
from tests.support.postgres import fresh_database
from tests.support.process import ROOT, run_cli, running

README = (ROOT / "README.md").read_text()
PLACEHOLDERS = {"NAME": "acme", " ID": " 1234", "<connection_id>": "5678", "postgresql://...": "postgresql://u@h/db",
                "nats://...": "nats://127.0.0.1:4222", "--database-url ...": "--database-url sqlite:///x.db",
                "[--grace-hours 24]": "--grace-hours 24", "<its address>": "192.0.2.1",
                "<Kamailio's address>": "192.0.2.2"}  # fmt: skip


def quoted_commands() -> list[str]:
    """Every quoted command line that has arguments (a bare ``callroom serve`` in a sentence names one)."""
    spans = [" ".join(m.split()) for m in re.findall(r"`((?:callroom|scripts/serve) [^`]+)`", README)]
    # The cluster table writes a node's command line in two spans: "`callroom serve ...` with `--host ...`".
    spans += ["callroom serve " + " ".join(m.split()) for m in re.findall(r"` with `(--host [^`]+)`", README)]
    # The quick start's: "`scripts/serve --port 9000`, `--database-url postgresql://user@host/db` ... pass through".
    spans += ["scripts/serve " + " ".join(m.split()) for m in re.findall(r"`scripts/serve --port 9000`, `([^`]+)`",
                                                                          README)]
    return [s for s in spans if len(s.split()) > 2 and ": " not in s]  # not an error message quoted


def test_the_readme_quotes_the_commands_this_test_knows() -> None:
    commands = quoted_commands()
    assert "scripts/serve --database-url postgresql://user@host/db" in commands
    assert "callroom serve --config callroom.toml" in commands
    assert any(c.startswith("callroom serve --host 0.0.0.0 --port 8080") for c in commands)
    assert len(commands) >= 10


@pytest.mark.parametrize("command", quoted_commands())
def test_a_quoted_command_line_is_accepted(command: str) -> None:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    argv = shlex.split(command)
    argv = ["serve", *argv[1:]] if argv[0] == "scripts/serve" else argv[1:]
    args = parser().parse_args(argv)  # argparse exits (SystemExit) on what it does not accept
    assert args.func is not None


@pytest.mark.postgres
def test_an_operators_first_commands(tmp_path: Path) -> None:
    """On a new PostgreSQL database: ``callroom --database-url ... keys create``, then a node started as the
    README's first lines start it (``--database-url`` after ``serve``), then the keys and phone commands."""
    with fresh_database() as url:
        first = run_cli("--database-url", url, "keys", "create")
        assert first.returncode == 0 and first.stdout.startswith("KEY"), first.stderr
        key = first.stdout.strip()
        port = free_port()
        argv = ["serve", "--database-url", url, "--port", str(port), "--sip-port", "0", "--data-dir", str(tmp_path),
                "--log-level", "warning", "--allow-url-network", "127.0.0.0/8"]
        with running(argv, port, tmp_path / "node.log"):
            created = run_cli("keys", "create", "--account", "acme", "--database-url", url)
            assert created.returncode == 0 and created.stdout.startswith("KEY")
            listing = run_cli("keys", "list", "--database-url", url).stdout
            assert "account=acme" in listing and "account=default" in listing
            acme_id = next(line.split()[0] for line in listing.splitlines() if "account=acme" in line)
            assert run_cli("keys", "revoke", acme_id, "--database-url", url).stdout == f"revoked {acme_id}\n"
            status = run_cli("cluster", "status", "--database-url", url)
            assert status.returncode == 0 and f"http://127.0.0.1:{port}/v2" in status.stdout, status.stdout

            app = httpx.post(f"http://127.0.0.1:{port}/v2/call_control_applications",
                             headers={"Authorization": f"Bearer {key}"},
                             json={"application_name": "readme", "webhook_event_url": f"http://127.0.0.1:{free_port()}/hooks"})
            assert app.status_code in (200, 201), app.text
            (tmp_path / "callroom.toml").write_text(f"port = {port}\n")
            call = run_cli("phone", "call", app.json()["data"]["id"], "--config", str(tmp_path / "callroom.toml"),
                           "--api-key", key)
            assert call.returncode == 0, call.stderr
            rotated = run_cli("keys", "rotate-webhook-key", "--grace-hours", "1", "--database-url", url)
            assert rotated.returncode == 0 and "new webhook public key" in rotated.stdout
