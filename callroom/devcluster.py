"""``scripts/cluster``: a cluster on this machine, to try one in one command.

``up --nodes N`` starts N ``callroom serve`` processes sharing one PostgreSQL database (and NATS, when the
node takes ``--nats-url``), each with its own node id, HTTP port, SIP port and RTP range, and Kamailio in
front of them with ``deploy/kamailio/kamailio.cfg`` and a dispatcher list naming the nodes. It prints what to
connect to (with ``--json``, one JSON object). ``down`` stops exactly what ``up`` started: every process was
started in a session of its own, whose id is kept in the run directory (``.callroom-cluster/state.json``)
with the ports, logs and the API key. ``status`` says what still runs and what Kamailio thinks of each node.

Everything listens on loopback; nothing here is for production (see the README's Cluster section for
several machines). Imports nothing of callroom: the nodes are separate processes, started as a user would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from callroom.cluster_procs import (
    ClusterError,
    group_alive,
    http_json,
    ours,
    spawn,
    stop_group,
    wait_healthy,
    wait_proxy,
)

DEFAULT_RUN_DIR = Path(os.environ.get("CALLROOM_CLUSTER_DIR", ".callroom-cluster"))
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "callroom_cluster"
DEFAULT_NATS = "nats://127.0.0.1:4222"
KAMAILIO_CFG = Path("deploy/kamailio/kamailio.cfg")
DISPATCHER_SET = 1
STATE = "state.json"
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last a NUL


@dataclass
class NodeInfo:
    node_id: str
    api: str  # base URL, ending in /v2
    sip: str  # host:port (UDP)
    pid: int  # also the id of its session and process group
    rtp_ports: str
    data_dir: str
    log: str


@dataclass
class ProxyInfo:
    pid: int
    sip: str
    log: str
    ctl: str  # kamcmd -s <ctl>
    dispatcher_list: str


@dataclass
class ClusterState:
    nodes: list[NodeInfo]
    sip_proxy: str
    api_key: str
    public_key: str
    database_url: str
    nats_url: str | None  # None: the nodes were not given it (callroom serve has no --nats-url)
    run_dir: str
    kamailio: ProxyInfo | None = None
    started_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        nodes = [NodeInfo(**n) for n in data["nodes"]]
        kam = ProxyInfo(**data["kamailio"]) if data.get("kamailio") else None
        rest = {k: v for k, v in data.items() if k not in ("nodes", "kamailio")}
        return cls(nodes=nodes, kamailio=kam, **rest)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- checks -----------------------------------------------------------------------------------------------

def _tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str, kind: int, taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port not in taken:
            return port


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.access(p, os.X_OK)), None)


def _serve_options(python: str) -> str:
    out = subprocess.run([python, "-m", "callroom.cli", "serve", "--help"], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise ClusterError(f"'callroom serve --help' failed: {out.stderr.strip()[-500:]}")
    return out.stdout


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _prepare_database(admin_url: str, name: str, fresh: bool) -> bool:
    """Create the cluster's database if it does not exist (drop it first with ``fresh``); True if created."""
    import psycopg  # the node's own driver; imported here so that 'down' works without it

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ClusterError(f"database name {name!r}: letters, digits and _ only")
    try:
        conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        raise ClusterError(f"PostgreSQL is not reachable at {admin_url}: {exc}".strip() +
                           "\n  start it (scripts/services) or pass --pg-url") from exc
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            return True
    return False


def proxy_view(state: ClusterState) -> dict[str, str]:
    """Kamailio's state of each node by its SIP URI (``AP``: active and probed, ``IP``: inactive, ...), read
    with kamcmd; empty when Kamailio or kamcmd is not there."""
    kamcmd = shutil.which("kamcmd") or ("/usr/sbin/kamcmd" if os.access("/usr/sbin/kamcmd", os.X_OK) else None)
    if state.kamailio is None or kamcmd is None:
        return {}
    try:
        out = subprocess.run([kamcmd, "-s", state.kamailio.ctl, "dispatcher.list"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", out))


# ---- up / down / status -----------------------------------------------------------------------------------

@dataclass
class Plan:
    nodes: int
    host: str
    api_ports: list[int]
    sip_ports: list[int]
    proxy_port: int
    rtp_ranges: list[tuple[int, int]]


def _plan(args: argparse.Namespace) -> Plan:
    n, host = args.nodes, args.host
    taken: set[int] = set()

    def ports(first: int, kind: int) -> list[int]:
        chosen = []
        for i in range(n):
            port = _free_port(host, kind, taken) if first == 0 else first + i
            taken.add(port)
            chosen.append(port)
        return chosen

    api = ports(args.api_port, socket.SOCK_STREAM)
    sip = ports(args.sip_port, socket.SOCK_DGRAM)
    proxy = args.proxy_port or _free_port(host, socket.SOCK_DGRAM, taken)
    span = args.rtp_span
    rtp = [(args.rtp_base + i * span, args.rtp_base + (i + 1) * span - 1) for i in range(n)]
    busy = [f"TCP {host}:{p} (node {i + 1}'s API)" for i, p in enumerate(api)
            if not _port_free(host, p, socket.SOCK_STREAM)]
    busy += [f"UDP {host}:{p} (node {i + 1}'s SIP)" for i, p in enumerate(sip)
             if not _port_free(host, p, socket.SOCK_DGRAM)]
    if proxy in sip or proxy in api:
        raise ClusterError(f"the proxy's port {proxy} is also a node's port")
    if not _port_free(host, proxy, socket.SOCK_DGRAM):
        busy.append(f"UDP {host}:{proxy} (Kamailio)")
    if busy:
        raise ClusterError("ports in use: " + ", ".join(busy) + "\n  stop what holds them, or choose others "
                           "(--api-port, --sip-port, --proxy-port; 0 for any free port)")
    if rtp[-1][1] > 65535:
        raise ClusterError(f"RTP ranges run past 65535: lower --rtp-base or --rtp-span ({rtp[-1]})")
    return Plan(n, host, api, sip, proxy, rtp)


def _load_state(run_dir: Path) -> ClusterState | None:
    path = run_dir / STATE
    if not path.exists():
        return None
    return ClusterState.from_json(json.loads(path.read_text()))


def _save_state(run_dir: Path, state: ClusterState) -> None:
    path = run_dir / STATE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.chmod(0o600)  # it holds the API key
    tmp.replace(path)


def _create_key(python: str, database_url: str, cwd: Path) -> str:
    out = subprocess.run([python, "-m", "callroom.cli", "--database-url", database_url, "keys", "create",
                          "--account", "default", "--label", "scripts/cluster"],
                         capture_output=True, text=True, cwd=cwd, timeout=120)
    key = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not key:
        raise ClusterError(f"'callroom keys create' failed:\n{out.stderr[-2000:]}")
    return key


def up(args: argparse.Namespace) -> ClusterState:
    run_dir: Path = args.run_dir.resolve()
    root = Path.cwd()
    python = args.python or sys.executable
    previous = _load_state(run_dir)
    if previous is not None:
        alive = [n.node_id for n in previous.nodes if group_alive(n.pid) and ours(n.pid, str(run_dir))]
        if previous.kamailio and group_alive(previous.kamailio.pid) and ours(previous.kamailio.pid, str(run_dir)):
            alive.append("kamailio")
        if alive:
            raise ClusterError(f"a cluster is already up in {run_dir} ({', '.join(alive)}): "
                               "'scripts/cluster down' first")
        (run_dir / STATE).unlink()

    # Fail fast, before anything is started, on whatever is missing.
    kamailio = args.kamailio or kamailio_binary()
    if kamailio is None or not os.access(kamailio, os.X_OK):
        raise ClusterError("kamailio is not installed: 'scripts/setup --system' installs it "
                           "(apt-get install kamailio)")
    cfg = (root / args.kamailio_cfg).resolve()
    if not cfg.exists():
        raise ClusterError(f"no Kamailio configuration at {cfg}")
    nats = urllib.parse.urlsplit(args.nats_url)
    if not _tcp_reachable(nats.hostname or "127.0.0.1", nats.port or 4222):
        raise ClusterError(f"NATS is not reachable at {args.nats_url}: start nats-server (with -js) or pass "
                           "--nats-url")
    plan = _plan(args)
    passes_nats = "--nats-url" in _serve_options(python)
    created = _prepare_database(args.pg_url, args.database, args.fresh)
    database_url = with_database(args.pg_url, args.database)

    run_dir.mkdir(parents=True, exist_ok=True)
    key_file = run_dir / "api-key.json"
    saved = json.loads(key_file.read_text()) if key_file.exists() else {}
    if created or saved.get("database_url") != database_url or not saved.get("api_key"):
        _say(f"creating the database's API key ({'new database ' if created else ''}{args.database})")
        saved = {"database_url": database_url, "api_key": _create_key(python, database_url, root)}
        key_file.write_text(json.dumps(saved) + "\n")
        key_file.chmod(0o600)
    api_key: str = saved["api_key"]

    state = ClusterState(nodes=[], sip_proxy=f"{plan.host}:{plan.proxy_port}", api_key=api_key, public_key="",
                         database_url=database_url, nats_url=args.nats_url if passes_nats else None,
                         run_dir=str(run_dir))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(plan.nodes):
            node_id = f"{args.node_prefix}{i + 1}"
            data_dir = run_dir / node_id
            log = data_dir / "node.log"
            low, high = plan.rtp_ranges[i]
            cmd = [python, "-m", "callroom.cli", "--data-dir", str(data_dir), "--database-url", database_url,
                   "serve", "--host", plan.host, "--port", str(plan.api_ports[i]), "--node-id", node_id,
                   "--sip-host", plan.host, "--sip-port", str(plan.sip_ports[i]), "--rtp-ports", f"{low}-{high}",
                   "--allow-url-network", "127.0.0.0/8", "--log-level", args.log_level]
            if passes_nats:
                cmd += ["--nats-url", args.nats_url]
            cmd += args.node_args
            _say(f"starting {node_id}: API {plan.host}:{plan.api_ports[i]}, SIP {plan.host}:{plan.sip_ports[i]}")
            proc = spawn(cmd, log, root)
            procs.append(proc)
            state.nodes.append(NodeInfo(node_id, f"http://{plan.host}:{plan.api_ports[i]}/v2",
                                        f"{plan.host}:{plan.sip_ports[i]}", proc.pid, f"{low}-{high}",
                                        str(data_dir), str(log)))
            _save_state(run_dir, state)  # so that 'down' can stop a half-started cluster too
        for node, proc in zip(state.nodes, procs, strict=True):
            wait_healthy(proc, node.api, Path(node.log))
        status, body = http_json(state.nodes[0].api + "/public_key", api_key)
        if status != 200:
            raise ClusterError(f"{state.nodes[0].api}/public_key answered {status} to the cluster's API key")
        state.public_key = body["data"]["public_key"]

        kdir = run_dir / "kamailio"
        kdir.mkdir(parents=True, exist_ok=True)
        ds_list = kdir / "dispatcher.list"
        ds_list.write_text("# written by scripts/cluster up\n" +
                           "".join(f"{DISPATCHER_SET} sip:{n.sip} 8 0\n" for n in state.nodes))
        ctl = kdir / "ctl"
        if len(str(ctl)) > UNIX_PATH_MAX:  # a deep run directory: the socket goes where its path fits
            digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
            ctl = Path(f"/tmp/callroom-cluster-{os.getuid()}-{digest}.ctl")
        klog = kdir / "kamailio.log"
        kcmd = [kamailio, "-DD", "-E", "-f", str(cfg), "-Y", str(kdir), "-P", str(kdir / "kamailio.pid"),
                "-m", "64", "-M", "8",
                "-A", f"LISTEN=udp:{plan.host}:{plan.proxy_port}", "-A", f'DISPATCHER_LIST="{ds_list}"',
                "-A", f'CTL_SOCKET="unix:{ctl}"', "-A", f"PING_INTERVAL={args.ping_interval}",
                "-A", f"FR_TIMER={args.fr_timer}", "-A", "CHILDREN=2"]
        _say(f"starting kamailio on udp {state.sip_proxy} in front of {plan.nodes} node(s)")
        kproc = spawn(kcmd, klog, kdir)
        procs.append(kproc)
        state.kamailio = ProxyInfo(kproc.pid, state.sip_proxy, str(klog), f"unix:{ctl}", str(ds_list))
        _save_state(run_dir, state)
        wait_proxy(kproc, plan.host, plan.proxy_port, klog)
    except BaseException:
        _say("stopping what was started")
        for proc in reversed(procs):
            stop_group(proc.pid, str(run_dir), grace=5.0)
        (run_dir / STATE).unlink(missing_ok=True)
        raise
    _save_state(run_dir, state)
    return state


def down(run_dir: Path) -> list[str]:
    """Stop what ``up`` started in ``run_dir``; the names of what was still running."""
    run_dir = run_dir.resolve()
    state = _load_state(run_dir)
    if state is None:
        return []
    stopped = []
    groups = ([("kamailio", state.kamailio.pid)] if state.kamailio else []) + [(n.node_id, n.pid) for n in state.nodes]
    for name, pgid in groups:
        if group_alive(pgid):
            stopped.append(name)
        stop_group(pgid, str(run_dir))
    if state.kamailio and state.kamailio.ctl.startswith("unix:/tmp/"):
        Path(state.kamailio.ctl.removeprefix("unix:")).unlink(missing_ok=True)
    (run_dir / STATE).unlink(missing_ok=True)
    return stopped


def status(run_dir: Path) -> dict[str, Any] | None:
    run_dir = run_dir.resolve()
    state = _load_state(run_dir)
    if state is None:
        return None
    view = proxy_view(state)
    out = state.to_json()
    for node in out["nodes"]:
        node["alive"] = group_alive(node["pid"]) and ours(node["pid"], str(run_dir))
        node["proxy_state"] = view.get(f"sip:{node['sip']}")
    if out["kamailio"]:
        pid = out["kamailio"]["pid"]
        out["kamailio"]["alive"] = group_alive(pid) and ours(pid, str(run_dir))
    return out


def _describe(state: ClusterState) -> str:
    host, port = state.sip_proxy.rsplit(":", 1)
    lines = [f"callroom cluster: {len(state.nodes)} node(s) behind Kamailio",
             f"  SIP, for callers:   sip:<connection_id>@{host}:{port} (Kamailio, UDP; it picks a live node)"]
    for n in state.nodes:
        lines.append(f"  {n.node_id:<18}  API {n.api}  SIP {n.sip}  RTP {n.rtp_ports}  pid {n.pid}")
    lines += [f"  API key:            {state.api_key}",
              f"  webhook public key: {state.public_key}",
              f"  database (shared):  {state.database_url}",
              "  NATS (shared):      " + (state.nats_url or "not passed: this callroom serve has no --nats-url"),
              f"  logs:               {state.run_dir}/<node>/node.log, {state.run_dir}/kamailio/kamailio.log",
              "  any node's API serves every call's records; stop everything with: scripts/cluster down"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help="where the state, logs and data live (env CALLROOM_CLUSTER_DIR; default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start N nodes and Kamailio in front of them")
    p_up.add_argument("--nodes", type=int, default=2)
    p_up.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    p_up.add_argument("--host", default="127.0.0.1", help="the loopback address everything listens on")
    p_up.add_argument("--api-port", type=int, default=8101, help="node 1's HTTP port, node 2's the next ... "
                      "(0: any free ports)")
    p_up.add_argument("--sip-port", type=int, default=5071, help="node 1's SIP port, then the next ... (0: any)")
    p_up.add_argument("--proxy-port", type=int, default=5060, help="Kamailio's SIP port (0: any)")
    p_up.add_argument("--rtp-base", type=int, default=20000, help="node i's RTP ports: base + (i-1)*span ...")
    p_up.add_argument("--rtp-span", type=int, default=1000)
    p_up.add_argument("--pg-url", default=os.environ.get("CALLROOM_CLUSTER_PG_URL", DEFAULT_PG),
                      help="a PostgreSQL server to create the database on (default %(default)s)")
    p_up.add_argument("--database", default=DEFAULT_DATABASE, help="the nodes' database (created if missing)")
    p_up.add_argument("--fresh", action="store_true", help="drop and create the database first")
    p_up.add_argument("--nats-url", default=DEFAULT_NATS)
    p_up.add_argument("--ping-interval", type=int, default=1, help="seconds between Kamailio's OPTIONS probes")
    p_up.add_argument("--fr-timer", type=int, default=1000, help="ms Kamailio waits for a node's first answer")
    p_up.add_argument("--node-prefix", default="node-", help="node ids: <prefix>1, <prefix>2 ...")
    p_up.add_argument("--log-level", default="info")
    p_up.add_argument("--kamailio", default=os.environ.get("CALLROOM_KAMAILIO"),
                      help="the kamailio program (env CALLROOM_KAMAILIO; default: found on PATH or in /usr/sbin)")
    p_up.add_argument("--kamailio-cfg", type=Path, default=KAMAILIO_CFG)
    p_up.add_argument("--python", help="the Python that runs the nodes (default: this one)")
    p_up.add_argument("node_args", nargs="*", metavar="-- SERVE_OPTION",
                      help="after --: more 'callroom serve' options for every node")
    p_status = sub.add_parser("status", help="what runs, and Kamailio's view of each node")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("down", help="stop what 'up' started")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            if args.nodes < 1:
                raise ClusterError("--nodes must be at least 1")
            state = up(args)
            if args.json:
                print(json.dumps(state.to_json()), flush=True)
            else:
                print(_describe(state), flush=True)
        elif args.command == "down":
            stopped = down(args.run_dir)
            _say(f"stopped {', '.join(stopped)}" if stopped else f"nothing was running ({args.run_dir})")
        else:
            info = status(args.run_dir)
            if info is None:
                _say(f"no cluster is up ({args.run_dir})")
                return 1
            if args.json:
                print(json.dumps(info), flush=True)
            else:
                for n in info["nodes"]:
                    print(f"{n['node_id']:<18} {'up' if n['alive'] else 'DOWN':<5} API {n['api']}  SIP {n['sip']}"
                          f"  Kamailio: {n['proxy_state'] or '?'}")
                kam = info["kamailio"]
                print(f"kamailio           {'up' if kam and kam['alive'] else 'DOWN'}  SIP {info['sip_proxy']}")
    except ClusterError as exc:
        _say(f"scripts/cluster {args.command}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
