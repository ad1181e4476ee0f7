"""``callroom``: run a node, manage API keys, place test calls from a virtual phone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import httpx

from callroom.admission import (
    DEFAULT_MAX_CALLS,
    DEFAULT_MAX_CALLS_PER_SECOND,
    DEFAULT_MAX_SETUP_BACKLOG,
    DEFAULT_MAX_TICK_LATENESS_MS,
    Limits,
)
from callroom.model.numbers import NumberPlan
from callroom.model.trunks import TrunkSettings
from callroom.model.virtual_phone import VirtualSpec

DEFAULT_DATA_DIR = Path(os.environ.get("CALLROOM_DATA_DIR", ".callroom"))
DEFAULT_PORT = 8080


def _database_url(args: argparse.Namespace) -> str:
    url: str | None = args.database_url or os.environ.get("CALLROOM_DATABASE_URL")
    if url:
        return url
    args.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(args.data_dir / 'callroom.db').resolve()}"


def _network(value: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a network or an address: {value!r}") from exc
    return value.strip()


def _count(value: str | int) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from exc
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more: {value!r}")
    return n


def _rate(value: str | float) -> float:
    try:
        x = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or a positive number: {value!r}")
    return x


def _serve(args: argparse.Namespace) -> int:
    from callroom.api.server import DrainingServer, uvicorn_config
    from callroom.drain import DEFAULT_GRACE_SECS, DrainReport
    from callroom.model.messages import SipConfig
    from callroom.node import Node, NodeConfig, ensure_first_key

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sip = None
    if args.sip_port >= 0:
        low, _, high = args.rtp_ports.partition("-")
        credentials = tuple(tuple(c.split(":", 1)) for c in args.sip_credential if ":" in c)
        sip = SipConfig(host=args.sip_host, port=args.sip_port, advertise=args.sip_advertise,
                        rtp_ports=(int(low), int(high)), allow=tuple(n.strip() for n in args.sip_allow.split(",")),
                        credentials=credentials, rtp_timeout=args.rtp_timeout, tcp_port=args.sip_tcp_port,
                        tls_port=args.sip_tls_port, tls_cert=args.sip_tls_cert, tls_key=args.sip_tls_key,
                        tls_ca=args.sip_tls_ca)
        if sip.tls_port is not None and not (sip.tls_cert and sip.tls_key):
            print("callroom serve: --sip-tls-port needs --sip-tls-cert and --sip-tls-key", file=sys.stderr)
            return 2
    limits = Limits(max_calls=args.max_calls, max_calls_per_second=args.max_calls_per_second,
                    max_tick_lateness_ms=args.max_tick_lateness, max_setup_backlog=args.max_setup_backlog)
    rate, _, burst = args.rate_limit.partition(":")
    rate_limit = (float(rate), float(burst or 2 * float(rate))) if float(rate) > 0 else None
    allow_urls = tuple(args.allow_url_network if args.allow_url_network is not None else
                       [n for n in os.environ.get("CALLROOM_ALLOW_URL_NETWORKS", "").split(",") if n.strip()])
    try:
        [_network(n) for n in allow_urls]
    except argparse.ArgumentTypeError as exc:
        print(f"callroom serve: CALLROOM_ALLOW_URL_NETWORKS: {exc}", file=sys.stderr)
        return 2
    try:
        numbers = _number_plan(args)
        if sip is None and any(e.startswith("sip:") for e in numbers.entries.values()):
            raise ValueError("it names sip: far ends, and SIP is off (--sip-port -1)")
    except (OSError, ValueError) as exc:
        print(f"callroom serve: number plan: {exc}", file=sys.stderr)
        return 2
    try:
        trunks = TrunkSettings.gather(args.trunk, args.trunks_file)
    except (OSError, ValueError) as exc:
        print(f"callroom serve: trunks: {exc}", file=sys.stderr)
        return 2
    node = Node(NodeConfig(database_url=_database_url(args), data_dir=args.data_dir, node_id=args.node_id, sip=sip,
                           rate_limit=rate_limit, freeze_startup_objects=True, ring_timeout_secs=args.ring_timeout,
                           api_url=f"http://{args.host}:{args.port}/v2",
                           allow_url_networks=allow_urls, nats_url=args.nats_url, relay_host=args.relay_host,
                           drain_grace_secs=DEFAULT_GRACE_SECS if args.drain_timeout is None else args.drain_timeout,
                           numbers=numbers, admission=limits, trunks=trunks))
    first_key = ensure_first_key(node.store)
    key_file = args.data_dir / "initial-api-key"
    if first_key:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(first_key + "\n")
        key_file.chmod(0o600)
    base = f"http://{args.host}:{args.port}/v2"
    print(f"callroom node {node.node_id} listening on {base}", flush=True)
    print(f"  database:           {node.store.safe_url}", flush=True)
    if args.nats_url:
        print(f"  cluster bus:        {args.nats_url}", flush=True)
    if first_key:
        print(f"  API key (new):      {first_key}", flush=True)
    elif key_file.exists():
        print(f"  API key:            {key_file.read_text().strip()}  (from {key_file})", flush=True)
    else:
        print("  API key:            create one with 'callroom keys create'", flush=True)
    print(f"  webhook public key: {node.signer.public_key_b64}", flush=True)
    if sip is not None:
        print(f"  SIP:                udp {args.sip_host}:{args.sip_port} (calls to sip:<connection_id>@host; "
              f"allowed from {args.sip_allow})", flush=True)
    print(f"  webhook/media URLs: {node.url_policy.describe()}", flush=True)
    if len(numbers):
        print(f"  number plan:        {len(numbers)} numbers ring local far ends", flush=True)
    for trunk in node.trunks.control.trunks.trunks.values():
        print(f"  trunk:              {trunk.name} {trunk.transport} {trunk.host}:{trunk.port}"
              f"{' (registers)' if trunk.register else ''}", flush=True)
    print(f"  new calls:          refused (SIP 503, API 503 / 90115) past {limits.describe()}", flush=True)
    print(f"  OpenAPI:            {base}/openapi.json", flush=True)
    config = uvicorn_config(
        node.asgi, args.host, args.port, log_level="warning", loop="uvloop", lifespan="on",
        # No access log (it would be dropped at this level anyway, after uvicorn had formatted its
        # arguments for every request: ~2 % of a request's CPU).
        access_log=False,
    )
    server = DrainingServer(config, drain=node.drain.start, hurry=node.drain.hurry)

    def drained(report: DrainReport) -> None:
        logging.getLogger("callroom").warning(report.line(node.node_id))
        server.stop()

    node.drain.on_drained = drained
    asyncio.run(server.serve()) if sys.platform == "win32" else server.run()
    return 0


def _number_plan(args: argparse.Namespace) -> NumberPlan:
    """The node's number plan from ``--number``, ``--number-plan`` and ``CALLROOM_NUMBERS`` (comma-separated);
    each virtual phone in it must be one the node can ring."""
    items = list(args.number) + [n for n in os.environ.get("CALLROOM_NUMBERS", "").split(",") if n.strip()]
    plan = NumberPlan.parse(items, args.number_plan)
    for number, endpoint in plan.entries.items():
        if endpoint.startswith("virtual:"):
            try:
                VirtualSpec.parse(endpoint)
            except ValueError as exc:
                raise ValueError(f"{number}: {exc}") from exc
    return plan


def _keys(args: argparse.Namespace) -> int:
    import time

    from callroom.node import create_api_key
    from callroom.store.engine import Store

    store = Store(_database_url(args))
    store.migrate()
    if args.keys_command == "create":
        print(create_api_key(store, args.account, args.label))
    elif args.keys_command == "list":
        with store.transaction() as tx:
            for row in tx.list_api_keys():
                state = "revoked" if row["revoked_at"] else "active"
                print(f"{row['id']}  {row['prefix']}…  account={row['account_name']}  {state}  {row['label'] or ''}")
    elif args.keys_command == "revoke":
        with store.transaction() as tx:
            n = tx.revoke_api_key(args.key_id, time.time())
        if not n:
            print(f"no active key {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    elif args.keys_command == "rotate-webhook-key":
        from callroom.webhooks.signing import WebhookSigner

        WebhookSigner.load_or_create(store)
        old, new = WebhookSigner.rotate(store, grace_secs=args.grace_hours * 3600.0)
        print(f"new webhook public key:      {new}")
        print(f"previous key (valid {args.grace_hours:g} h): {old}")
        print("running nodes sign with the new key within a few seconds; until the grace period ends each")
        print("webhook also carries the previous key's signature in 'callroom-signature-ed25519-previous'")
    return 0


def _cluster(args: argparse.Namespace) -> int:
    """``callroom cluster status``: every node of the cluster sharing this database, read from it."""
    import json
    import time

    from callroom.api.routes_cluster import cluster_view
    from callroom.cluster.membership import TIME_TO_LIVE_SECS
    from callroom.control.service import ReadCtx
    from callroom.store.engine import Store

    store = Store(_database_url(args))
    store.migrate()
    with store.transaction(read_only=True) as tx:
        view = cluster_view(ReadCtx(tx, "", time.time(), ""), time.time(), TIME_TO_LIVE_SECS)
    store.dispose()
    if args.json:
        print(json.dumps(view["nodes"], indent=2))
        return 0
    if not view["nodes"]:
        print("no node has run against this database")
        return 0
    print(f"{'node':24} {'health':8} {'calls':>6} {'legs':>6} {'heartbeat':>10}  api / sip")
    for n in view["nodes"]:
        legs = n["load"].get("legs", "") if isinstance(n["load"], dict) else ""
        print(f"{n['node_id']:24} {n['health']:8} {n['live_calls']:>6} {legs!s:>6} {n['heartbeat_age_secs']:>9.1f}s"
              f"  {n['api_url'] or '-'} {n['sip'] or '-'}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    """``callroom drain NODE_ID``: ask a running node (through the database it shares) to drain and stop."""
    import time

    from callroom.store import nodes
    from callroom.store.engine import Store

    store = Store(_database_url(args))
    store.migrate()
    with store.transaction() as tx:
        asked = nodes.drain(tx, args.node_id, time.time())
    if not asked:
        print(f"callroom drain: no node {args.node_id!r} is up on {store.safe_url}", file=sys.stderr)
        store.dispose()
        return 1
    print(f"node {args.node_id} drains within a heartbeat: no new calls; it stops once its calls have ended "
          "(or its grace period is over)")
    deadline = time.monotonic() + args.wait
    status = nodes.UP
    while args.wait and time.monotonic() < deadline:
        with store.transaction(read_only=True) as tx:
            status = nodes.statuses(tx).get(args.node_id, nodes.STOPPED)
        if status != nodes.UP:
            print(f"node {args.node_id} {status}")
            break
        time.sleep(0.5)
    store.dispose()
    return 0 if not args.wait or status != nodes.UP else 1


def _trunks(args: argparse.Namespace) -> int:
    """``callroom trunks add|list|remove``: an account's SIP trunks, in the database (a running node takes a
    change within its refresh; see callroom/trunk_sync.py)."""
    import time

    from callroom.store.engine import Store
    from callroom.store.trunk_config import put_trunks

    store = Store(_database_url(args))
    store.migrate()
    try:
        if args.trunks_command == "add":
            try:
                put_trunks(store, args.account, TrunkSettings.gather([args.spec]))
            except ValueError as exc:
                print(f"callroom trunks add: {exc}", file=sys.stderr)
                return 2
            return 0
        with store.transaction() as tx:
            account = tx.get_account_by_name(args.account)
            trunks = tx.list_trunks(account.id, 1, 250)[0] if account is not None else []
            if args.trunks_command == "remove":
                gone = [t for t in trunks if args.name in (t.id, t.name)]
                if not gone:
                    print(f"callroom trunks remove: no trunk {args.name!r} in {args.account}", file=sys.stderr)
                    return 1
                tx.delete_trunk(gone[0].account_id, gone[0].id)
                return 0
            numbers = tx.list_phone_numbers(account.id, 1, 250)[0] if account is not None else []
        for t in trunks:
            brought = [n.phone_number for n in numbers if n.trunk_id == t.id]
            print(f"{t.id}  {t.name:16} {t.transport} {t.host}:{t.port}  user={t.username or '-'}"
                  f"  register={'yes' if t.register else 'no'}  caller_id={t.caller_id_header}"
                  f"  numbers={','.join(brought) or '-'}  updated={time.strftime('%F %T', time.gmtime(t.updated_at))}")
        return 0
    finally:
        store.dispose()


def _phone(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("CALLROOM_API_KEY")
    key_file = args.data_dir / "initial-api-key"
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    if not key:
        print("no API key: pass --api-key or set CALLROOM_API_KEY", file=sys.stderr)
        return 2
    body = {"connection_id": args.connection_id, "from": args.from_, "to": args.to}
    resp = httpx.post(f"{args.server.rstrip('/')}/virtual/calls", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=10)
    print(resp.text)
    return 0 if resp.is_success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callroom", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where SQLite and keys live")
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://... (env CALLROOM_DATABASE_URL)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a node")
    serve.add_argument("--host", default=os.environ.get("CALLROOM_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CALLROOM_PORT", DEFAULT_PORT)))
    serve.add_argument("--node-id", default=os.environ.get("CALLROOM_NODE_ID"))
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--sip-host", default=os.environ.get("CALLROOM_SIP_HOST", "127.0.0.1"))
    serve.add_argument("--sip-port", type=int, default=int(os.environ.get("CALLROOM_SIP_PORT", 5060)),
                       help="UDP port for SIP (-1: no SIP, virtual phones only)")
    serve.add_argument("--sip-advertise", default=os.environ.get("CALLROOM_SIP_ADVERTISE"),
                       help="address put in Contact and SDP when --sip-host is a wildcard")
    serve.add_argument("--sip-allow", default=os.environ.get("CALLROOM_SIP_ALLOW", "127.0.0.0/8,::1/128"),
                       help="comma-separated networks allowed to call in")
    serve.add_argument("--sip-credential", action="append", default=[], metavar="USER:PASSWORD",
                       help="digest credentials callers must prove (repeat for several; none: networks only)")
    serve.add_argument("--sip-tcp-port", type=int, default=None, metavar="PORT",
                       help="take SIP over TCP too, on this port (0: a free one; default: UDP only)")
    serve.add_argument("--sip-tls-port", type=int, default=None, metavar="PORT",
                       help="take SIP over TLS too, on this port (5061 is usual; --sip-tls-cert, --sip-tls-key)")
    serve.add_argument("--sip-tls-cert", metavar="FILE", help="this node's certificate (chain), PEM")
    serve.add_argument("--sip-tls-key", metavar="FILE", help="the certificate's private key, PEM")
    serve.add_argument("--sip-tls-ca", metavar="FILE",
                       help="trust this CA (PEM) for TLS trunks' certificates instead of the system's CAs")
    serve.add_argument("--rtp-ports", default=os.environ.get("CALLROOM_RTP_PORTS", "20000-30000"))
    serve.add_argument("--rtp-timeout", type=float, default=float(os.environ.get("CALLROOM_RTP_TIMEOUT", 60)),
                       metavar="SECS", help="hang up an answered SIP call whose far end sends no media for this "
                       "long, unless on hold (0: never; default 60)")
    serve.add_argument("--ring-timeout", type=float, default=float(os.environ.get("CALLROOM_RING_TIMEOUT", 120)),
                       metavar="SECS", help="end an incoming call nobody answers or rejects after this long, "
                       "with SIP 480 (0: never; default 120)")
    serve.add_argument("--rate-limit", default=os.environ.get("CALLROOM_RATE_LIMIT", "1000"),
                       help="requests per second per API key, optionally ':burst' (0: no limit)")
    serve.add_argument("--allow-url-network", action="append", metavar="NETWORK", type=_network,
                       help="a network webhook and media URLs may reach besides public addresses, e.g. "
                            "127.0.0.0/8 for receivers on this machine (repeat for several; env "
                            "CALLROOM_ALLOW_URL_NETWORKS, comma-separated; 0.0.0.0/0 and ::/0: any address)")
    serve.add_argument("--number", action="append", default=[], metavar="NUMBER=ENDPOINT",
                       help="a number of the node's number plan: dialling it rings ENDPOINT (virtual:... or "
                            "sip:...), e.g. +15550000100=virtual:agent1;tone=700 (repeatable)")
    serve.add_argument("--number-plan", action="append", default=[], type=Path, metavar="FILE",
                       help="a TOML file whose [numbers] table maps numbers to endpoints")
    serve.add_argument("--trunk", action="append", default=[], metavar="NAME=sip:[USER:PASSWORD@]HOST[:PORT][;k=v]",
                       help="a SIP trunk of the default account (created or changed at start), e.g. carrier=sip:"
                            "acct:pw@gw.example.net;register=600;caller_id=pai;numbers=+15550001000 (repeatable)")
    serve.add_argument("--trunks-file", action="append", default=[], type=Path, metavar="FILE",
                       help="a TOML file of [trunks.NAME] tables (host, port, transport, username, password, "
                            "register, caller_id, allowed_from, number_format, tech_prefix, codecs, numbers)")
    serve.add_argument("--drain-timeout", type=float, default=os.environ.get("CALLROOM_DRAIN_TIMEOUT"),
                       help="on SIGTERM/Ctrl-C or 'callroom drain': how long calls in progress may go on before "
                            "the node hangs them up (default 30 s; a second signal: at once)")
    serve.add_argument("--nats-url", default=os.environ.get("CALLROOM_NATS_URL"),
                       help="nats://host:4222: join the cluster of the nodes on this PostgreSQL database over this "
                            "NATS server (default: a node on its own)")
    serve.add_argument("--relay-host", default=os.environ.get("CALLROOM_RELAY_HOST"),
                       help="the address other nodes send this node's relayed audio to (default: the SIP address)")
    serve.add_argument("--max-calls", type=_count, default=_count(os.environ.get("CALLROOM_MAX_CALLS",
                       DEFAULT_MAX_CALLS)), metavar="N",
                       help=f"refuse new calls while this many are up (0: no limit; default {DEFAULT_MAX_CALLS})")
    serve.add_argument("--max-calls-per-second", type=_rate,
                       default=_rate(os.environ.get("CALLROOM_MAX_CALLS_PER_SECOND", DEFAULT_MAX_CALLS_PER_SECOND)),
                       metavar="RATE", help="admit at most this many new calls a second, in and out together (a "
                       f"second's worth at once; 0: no limit; default {DEFAULT_MAX_CALLS_PER_SECOND:g})")
    serve.add_argument("--max-tick-lateness", type=_rate,
                       default=_rate(os.environ.get("CALLROOM_MAX_TICK_LATENESS", DEFAULT_MAX_TICK_LATENESS_MS)),
                       metavar="MS", help="refuse new calls while the media tick runs this late, smoothed over "
                       f"~200 ms (0: no limit; default {DEFAULT_MAX_TICK_LATENESS_MS:g})")
    serve.add_argument("--max-setup-backlog", type=_count,
                       default=_count(os.environ.get("CALLROOM_MAX_SETUP_BACKLOG", DEFAULT_MAX_SETUP_BACKLOG)),
                       metavar="N", help="refuse new calls while this many incoming calls wait for the control "
                       f"plane to take them (0: no limit; default {DEFAULT_MAX_SETUP_BACKLOG})")
    serve.set_defaults(func=_serve)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (prints it once)")
    create.add_argument("--account", default="default", help="the account the key belongs to (created if new)")
    create.add_argument("--label")
    keys_sub.add_parser("list", help="list keys (prefixes only)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key_id")
    rotate = keys_sub.add_parser("rotate-webhook-key",
                                 help="new webhook signing key; the old one stays valid for a grace period")
    rotate.add_argument("--grace-hours", type=float, default=24.0, help="how long the old key keeps signing")
    keys.set_defaults(func=_keys)

    cluster = sub.add_parser("cluster", help="the nodes sharing this database")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cluster_sub.add_parser("status", help="list the nodes: health, calls, load")
    status.add_argument("--json", action="store_true", help="one JSON array")
    cluster.set_defaults(func=_cluster)

    drain = sub.add_parser("drain", help="ask a running node to drain (no new calls) and stop")
    drain.add_argument("node_id", help="the node's id (see 'callroom cluster status')")
    drain.add_argument("--wait", type=float, default=0.0, metavar="SECS",
                       help="wait up to this long for the node to stop (exit 1 if it has not)")
    drain.set_defaults(func=_drain)

    trunks = sub.add_parser("trunks", help="SIP trunks to the phone network (an account's)")
    trunks.add_argument("--account", default="default", help="the account (default: default)")
    trunks_sub = trunks.add_subparsers(dest="trunks_command", required=True)
    trunk_add = trunks_sub.add_parser("add", help="add a trunk, or change the one of that name")
    trunk_add.add_argument("spec", metavar="NAME=sip:[USER:PASSWORD@]HOST[:PORT][;key=value]...")
    trunks_sub.add_parser("list", help="list the account's trunks and the numbers they bring")
    trunk_remove = trunks_sub.add_parser("remove", help="remove a trunk (its numbers stay, without a trunk)")
    trunk_remove.add_argument("name", help="the trunk's name or id")
    trunks.set_defaults(func=_trunks)

    phone = sub.add_parser("phone", help="virtual phones")
    phone_sub = phone.add_subparsers(dest="phone_command", required=True)
    call = phone_sub.add_parser("call", help="call an application from a virtual phone")
    call.add_argument("connection_id", help="the call control application to call")
    call.add_argument("--from", dest="from_", default="virtual:caller")
    call.add_argument("--to", default="+15550000000")
    call.add_argument("--server", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    call.add_argument("--api-key")
    phone.set_defaults(func=_phone)

    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
