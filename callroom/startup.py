"""``callroom serve``: start a node so that whatever stops it from serving is said in one line, before it
says that it listens.

In order: the tools it runs (espeak-ng) and its HTTP socket (``preflight.py``, before the heavier modules
are even imported; the socket is handed to uvicorn, so a taken port is known before anything starts), its
database (reached within a few seconds, migrated), the node itself (its media process binds the SIP socket
and reports at once when it cannot; a cluster's node joins its bus). Only then are the "listening" lines
printed and requests served. Each failure is a ``StartupError``, ``StoreError`` or ``ConfigError`` that
``cli.py`` prints as one line before exiting 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

from callroom import logs
from callroom.admission import Limits
from callroom.api.server import DrainingServer, uvicorn_config
from callroom.drain import DrainReport
from callroom.errors import ConfigError
from callroom.identity import ensure_first_key
from callroom.model.messages import SipConfig
from callroom.model.numbers import NumberPlan
from callroom.model.trunks import TrunkSettings
from callroom.model.virtual_phone import VirtualSpec
from callroom.node import Node
from callroom.node_config import NodeConfig


def node_config(args: argparse.Namespace, database_url: str) -> NodeConfig:
    sip = None
    if args.sip_port >= 0:
        low, _, high = args.rtp_ports.partition("-")
        credentials = tuple((user, password) for user, _, password in (c.partition(":") for c in args.sip_credential))
        sip = SipConfig(host=args.sip_host, port=args.sip_port, advertise=args.sip_advertise,
                        rtp_ports=(int(low), int(high)), allow=tuple(n.strip() for n in args.sip_allow.split(",")),
                        credentials=credentials, rtp_timeout=args.rtp_timeout, trace=args.sip_trace,
                        tcp_port=args.sip_tcp_port, tls_port=args.sip_tls_port, tls_cert=args.sip_tls_cert,
                        tls_key=args.sip_tls_key, tls_ca=args.sip_tls_ca)
        if sip.tls_port is not None and not (sip.tls_cert and sip.tls_key):
            raise ConfigError("--sip-tls-port needs --sip-tls-cert and --sip-tls-key")
    try:
        trunks = TrunkSettings.gather(args.trunk, args.trunks_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"trunks: {exc}") from None
    rate, _, burst = args.rate_limit.partition(":")
    rate_limit = (float(rate), float(burst or 2 * float(rate))) if float(rate) > 0 else None
    limits = Limits(max_calls=args.max_calls, max_calls_per_second=args.max_calls_per_second,
                    max_tick_lateness_ms=args.max_tick_lateness, max_setup_backlog=args.max_setup_backlog)
    return NodeConfig(database_url=database_url, data_dir=args.data_dir, node_id=args.node_id, sip=sip,
                      rate_limit=rate_limit, freeze_startup_objects=True, ring_timeout_secs=args.ring_timeout,
                      api_url=f"http://{args.host}:{args.port}/v2", allow_url_networks=tuple(args.allow_url_network),
                      nats_url=args.nats_url, relay_host=args.relay_host, admission=limits,
                      drain_grace_secs=args.drain_timeout, numbers=number_plan(args, sip is not None),
                      access_log=args.access_log, trunks=trunks, file_cache_bytes=args.file_cache_mb << 20)


def number_plan(args: argparse.Namespace, sip: bool) -> NumberPlan:
    """The node's number plan (``--number``, ``--number-plan``); one it cannot follow is a ``ConfigError``: a
    virtual phone it cannot ring, or a ``sip:`` far end with SIP off."""
    try:
        plan = NumberPlan.parse(args.number, args.number_plan)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"number plan: {exc}") from None
    for number, endpoint in plan.entries.items():
        if endpoint.startswith("virtual:"):
            try:
                VirtualSpec.parse(endpoint)
            except ValueError as exc:
                raise ConfigError(f"number plan: {number}: {exc}") from None
        elif not sip:
            raise ConfigError(f"number plan: {number} rings {endpoint}, and SIP is off (--sip-port -1)")
    return plan


def serve(args: argparse.Namespace, database_url: str, sock: socket.socket) -> None:
    """Run a node on the API's listening socket ``sock`` (``preflight.listen_http``) until it is stopped (SIGINT
    or SIGTERM)."""
    logs.configure(args.log_level, args.log_format)
    try:
        node = Node(node_config(args, database_url))
        config = uvicorn_config(
            node.asgi, args.host, args.port, log_level="warning", lifespan="on",
            access_log=False,  # (the node's own, callroom.access, names the account: callroom/logs.py)
        )
        server = DrainingServer(config, drain=node.drain.start, hurry=node.drain.hurry)

        def drained(report: DrainReport) -> None:
            logging.getLogger("callroom").warning(report.line(node.node_id))
            server.stop()

        node.drain.on_drained = drained
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run(node, args, server, sock))
    finally:
        sock.close()


def _loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    if sys.platform == "win32":
        return None
    import uvloop

    return uvloop.Loop


async def _run(node: Node, args: argparse.Namespace, server: DrainingServer, sock: socket.socket) -> None:
    # Started here, not by the server's lifespan (for which start() is then done), so that a failure is
    # known before anything says the node listens; the lifespan's end stops the node as the server stops.
    await node.start()
    print_banner(node, args)
    await server.serve(sockets=[sock])


def print_banner(node: Node, args: argparse.Namespace) -> None:
    first_key = ensure_first_key(node.store)
    key_file = args.data_dir / "initial-api-key"
    if first_key:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(first_key + "\n")
        key_file.chmod(0o600)
    base = f"http://{args.host}:{args.port}/v2"
    lines = [f"callroom node {node.node_id} listening on {base}", f"  database:           {node.store.safe_url}"]
    if args.config:
        lines.append(f"  configuration:      {args.config}")
    if args.nats_url:
        lines.append(f"  cluster bus:        {args.nats_url}")
    if first_key:
        lines.append(f"  API key (new):      {first_key}")
    elif key_file.exists():
        lines.append(f"  API key:            {key_file.read_text().strip()}  (from {key_file})")
    else:
        lines.append("  API key:            create one with 'callroom keys create'")
    lines.append(f"  webhook public key: {node.signer.public_key_b64}")
    sip = node.config.sip
    if sip is not None:
        lines.append(f"  SIP:                udp {sip.host}:{node.media.sip_port} (calls to sip:<connection_id>@host; "
                     f"allowed from {args.sip_allow})")
    for trunk in node.trunks.control.trunks.trunks.values():
        lines.append(f"  trunk:              {trunk.name} {trunk.transport} {trunk.host}:{trunk.port}"
                     f"{' (registers)' if trunk.register else ''}"
                     f"{f' (srtp {trunk.srtp})' if trunk.srtp != 'off' else ''}")
    lines.append(f"  webhook/media URLs: {node.url_policy.describe()}")
    if len(node.config.numbers):
        lines.append(f"  number plan:        {len(node.config.numbers)} numbers ring local far ends")
    lines.append(f"  new calls:          refused (SIP 503, API 503 / 90115) past {node.config.admission.describe()}")
    lines.append(f"  OpenAPI:            {base}/openapi.json (docs: {base}/docs)")
    print("\n".join(lines), flush=True)
