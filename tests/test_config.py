"""Where ``callroom``'s options come from: a flag over its ``CALLROOM_*`` variable over the configuration file
over the default; unknown keys and wrong types in the file are refused in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from callroom.cli import parser
from callroom.config import COMMON, SERVE, read_file, resolve
from callroom.errors import ConfigError
from tests.support.node import free_port
from tests.support.process import cli_env, run_cli, running


def _serve_options(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    return resolve(parser().parse_args(argv), (*COMMON, *SERVE), environ)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callroom.toml"
    path.write_text(text)
    return path


def test_file_then_environment_then_flag(tmp_path: Path) -> None:
    config = _write(tmp_path, 'port = 9001\nsip-port = 5070\nrate_limit = "50:100"\n'
                              'allow-url-network = ["127.0.0.0/8", "10.0.0.0/8"]\n')
    base = ["--config", str(config), "serve"]
    only_file = _serve_options(base, {})
    assert (only_file.port, only_file.sip_port, only_file.rate_limit) == (9001, 5070, "50:100")
    assert only_file.allow_url_network == ("127.0.0.0/8", "10.0.0.0/8")
    assert only_file.ring_timeout == 120.0  # not in the file: the default

    environment = {"CALLROOM_PORT": "9002", "CALLROOM_ALLOW_URL_NETWORKS": "192.168.0.0/16"}
    over_file = _serve_options(base, environment)
    assert (over_file.port, over_file.sip_port) == (9002, 5070)
    assert over_file.allow_url_network == ("192.168.0.0/16",)

    flagged = _serve_options([*base, "--port", "9003", "--allow-url-network", "::1/128"], environment)
    assert (flagged.port, flagged.sip_port, flagged.allow_url_network) == (9003, 5070, ("::1/128",))


def test_config_named_by_the_environment_and_after_the_command(tmp_path: Path) -> None:
    config = _write(tmp_path, "port = 9001\n")
    assert _serve_options(["serve"], {"CALLROOM_CONFIG": str(config)}).port == 9001
    assert _serve_options(["serve", "--config", str(config)], {}).port == 9001


def test_common_options_before_or_after_the_command(tmp_path: Path) -> None:
    url = "postgresql://u@db.example/callroom"
    for argv in (["--database-url", url, "serve"], ["serve", "--database-url", url]):
        args = _serve_options(argv, {})
        assert args.database_url == url and "database-url" in args.explicit
    after = _serve_options(["--data-dir", "/a", "serve", "--data-dir", "/b"], {})
    assert after.data_dir == Path("/b")
    assert _serve_options(["--data-dir", "/a", "serve"], {}).data_dir == Path("/a")


def test_relative_data_dir_is_taken_from_the_files_folder(tmp_path: Path) -> None:
    config = _write(tmp_path, 'data-dir = "state"\n')
    assert _serve_options(["--config", str(config), "serve"], {}).data_dir == tmp_path / "state"


@pytest.mark.parametrize(("text", "message"), [
    ("prot = 8080\n", "unknown key 'prot' (did you mean 'port'?)"),
    ("frobnicate = true\n", "unknown key 'frobnicate' (known keys: data-dir, database-url, host, port"),
    ('port = "8080"\n', "port must be a number, not '8080'"),
    ("rtp-timeout = true\n", "rtp-timeout must be a number, not True"),
    ("port = 80.5\n", "port must be a whole number, not 80.5"),
    ('allow-url-network = "10.0.0.0/8"\n', "allow-url-network must be a list, not '10.0.0.0/8'"),
    ('allow-url-network = ["nowhere"]\n', "allow-url-network: not a network or an address: 'nowhere'"),
    ('rtp-ports = "30000"\n', "rtp-ports: not a port range LOW-HIGH: '30000'"),
    ("port = 1\nport = 2\n", "not valid TOML"),
])  # fmt: skip
def test_the_file_is_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = _write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        read_file(config)
    assert str(refused.value).startswith(f"{config}: ")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_wrong_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^CALLROOM_PORT: invalid literal"):
        _serve_options(["serve"], {"CALLROOM_PORT": "eighty"})


def test_a_node_runs_from_its_file_and_the_environment_overrides_it(tmp_path: Path) -> None:
    """A real node: its data dir and ports from the file, its port from the environment over the file, and an
    unknown key refused by ``callroom serve`` itself."""
    port = free_port()
    config = _write(tmp_path, f'data-dir = "state"\nport = {free_port()}\nsip-port = 0\nlog-level = "warning"\n'
                              'allow-url-network = ["127.0.0.0/8"]\n')
    env = cli_env(CALLROOM_CONFIG=str(config), CALLROOM_PORT=str(port))
    with running(["serve"], port, tmp_path / "node.log", env=env):
        assert (tmp_path / "state" / "callroom.db").exists()
    listing = run_cli("--config", str(config), "keys", "list")
    assert listing.returncode == 0 and "account=default" in listing.stdout
    assert listing.stderr.strip() == f"database: sqlite:///{tmp_path / 'state' / 'callroom.db'}"

    _write(tmp_path, "sip_prot = 5060\n")
    refused = run_cli("serve", env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"callroom serve: {config}: unknown key 'sip_prot' (did you mean 'sip-port'?)"


def test_the_shipped_service_files_agree() -> None:
    """deploy/systemd: the example configuration is one ``serve`` accepts, at the path the unit names."""
    deploy = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
    values = read_file(deploy / "callroom.toml")
    assert values["data-dir"] == Path("/var/lib/callroom") and values["port"] == 8080
    unit = (deploy / "callroom.service").read_text()
    assert "ExecStart=/opt/callroom/.venv/bin/callroom serve --config /etc/callroom/callroom.toml\n" in unit
    assert "StateDirectory=callroom\n" in unit and "LimitNOFILE=" in unit and "KillSignal=SIGTERM\n" in unit
