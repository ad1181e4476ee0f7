"""``callroom``: run a node, manage API keys, place test calls from a virtual phone."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from callroom import preflight
from callroom.config import COMMON, DEFAULT_PORT, OPTIONS, SERVE, add_arguments, resolve
from callroom.errors import ConfigError, StartupError, StoreError
from callroom.model.trunks import TrunkSettings
from callroom.store.reach import reach_database

if TYPE_CHECKING:
    from callroom.store.engine import Store


def _database_url(args: argparse.Namespace, *, create: bool = True) -> str:
    """The database the options name: ``--database-url`` (flag, environment or configuration file), else the
    SQLite file in the data directory. Unless ``create``, a SQLite file that is not there is not made: the
    command was run in the wrong place, or was not told where the node's data is."""
    url: str | None = args.database_url
    if url:
        return url
    path = args.data_dir / "callroom.db"
    if not create and not path.exists():
        where = ("its default, ./.callroom, in " + str(Path.cwd()) if "data-dir" not in args.explicit
                 else str(args.data_dir.resolve()))
        raise ConfigError(f"no callroom database in the data dir ({where}); nothing was created: run this where the "
                          "node runs, or say where its data is (--data-dir, --database-url, --config or "
                          "CALLROOM_DATA_DIR / CALLROOM_DATABASE_URL)")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def _serve(args: argparse.Namespace) -> int:
    resolve(args, (*COMMON, *SERVE))
    preflight.check_tools()
    sock = preflight.listen_http(args.host, args.port)
    try:
        if args.sip_port >= 0:
            preflight.check_sip_port(args.sip_host, args.sip_port)
        database_url = _database_url(args)
        reach_database(database_url)
        from callroom import startup

        with contextlib.suppress(KeyboardInterrupt):  # SIGINT, raised again once the node has stopped
            startup.serve(args, database_url, sock)
    finally:
        sock.close()
    return 0


def _store(args: argparse.Namespace, *, may_create: bool) -> Store:
    """The node's database for a management command, said on stderr. One that callroom has not set up is
    refused, unless ``may_create`` and the command was told where it is (not left to the default data dir)."""
    from callroom.store.engine import Store

    resolve(args, COMMON)
    create = may_create and bool(args.explicit & {"data-dir", "database-url"})
    store = Store(_database_url(args, create=create))
    print(f"database: {store.safe_url}", file=sys.stderr)
    store.check_reachable()
    if not create and not store.has_schema():
        store.dispose()
        raise ConfigError(f"{store.safe_url} has no callroom tables (is it the node's database?); nothing was "
                          "changed ('callroom keys create' sets up a new one)")
    store.migrate()
    return store


def _keys(args: argparse.Namespace) -> int:
    import time

    from callroom.identity import create_api_key

    # A new database may be set up by creating its first key, but only where the command was told to look.
    store = _store(args, may_create=args.keys_command == "create")
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

    store = _store(args, may_create=False)
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
    """``callroom drain NODE_ID``: ask a running node (through the database it uses) to drain and stop."""
    import time

    from callroom.store import nodes

    store = _store(args, may_create=False)
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

    from callroom.store.trunk_config import put_trunks

    store = _store(args, may_create=args.trunks_command == "add")
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
                  f"  register={'yes' if t.register else 'no'}  caller_id={t.caller_id_header}  srtp={t.srtp}"
                  f"  numbers={','.join(brought) or '-'}  updated={time.strftime('%F %T', time.gmtime(t.updated_at))}")
        return 0
    finally:
        store.dispose()


def _phone(args: argparse.Namespace) -> int:
    resolve(args, (*COMMON, OPTIONS["host"], OPTIONS["port"]))
    key = args.api_key or os.environ.get("CALLROOM_API_KEY")
    key_file = args.data_dir / "initial-api-key"
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    if not key:
        print("no API key: pass --api-key or set CALLROOM_API_KEY", file=sys.stderr)
        return 2
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else "::1" if args.host == "::" else args.host
    server = (args.server or f"http://{f'[{host}]' if ':' in host else host}:{args.port}").rstrip("/")
    body = {"connection_id": args.connection_id, "from": args.from_, "to": args.to}
    try:
        resp = httpx.post(f"{server}/virtual/calls", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    except httpx.HTTPError as exc:
        print(f"callroom phone: cannot reach the node at {server}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(resp.text)
    return 0 if resp.is_success else 1


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--config``, ``--data-dir`` and ``--database-url``: before the command's name or after it."""
    parser.add_argument("--config", metavar="FILE", default=None if top else argparse.SUPPRESS,
                        help="a TOML file of options (env CALLROOM_CONFIG); flags and CALLROOM_* variables override it")
    add_arguments(parser, COMMON, suppress=not top)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callroom", description=__doc__)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a node")
    _common(serve)
    add_arguments(serve, SERVE)
    serve.set_defaults(func=_serve)

    keys = sub.add_parser("keys", help="manage API keys")
    _common(keys)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (prints it once)")
    create.add_argument("--account", default="default", help="the account the key belongs to (created if new)")
    create.add_argument("--label")
    listing = keys_sub.add_parser("list", help="list keys (prefixes only)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key_id")
    rotate = keys_sub.add_parser("rotate-webhook-key",
                                 help="new webhook signing key; the old one stays valid for a grace period")
    rotate.add_argument("--grace-hours", type=float, default=24.0, help="how long the old key keeps signing")
    for leaf in (create, listing, revoke, rotate):
        _common(leaf)
    keys.set_defaults(func=_keys)

    cluster = sub.add_parser("cluster", help="the nodes sharing this database")
    _common(cluster)
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cluster_sub.add_parser("status", help="list the nodes: health, calls, load")
    status.add_argument("--json", action="store_true", help="one JSON array")
    _common(status)
    cluster.set_defaults(func=_cluster)

    trunks = sub.add_parser("trunks", help="SIP trunks to the phone network (an account's)")
    trunks.add_argument("--account", default="default", help="the account (default: default)")
    _common(trunks)
    trunks_sub = trunks.add_subparsers(dest="trunks_command", required=True)
    trunk_add = trunks_sub.add_parser("add", help="add a trunk, or change the one of that name")
    trunk_add.add_argument("spec", metavar="NAME=sip:[USER:PASSWORD@]HOST[:PORT][;key=value]...")
    trunk_list = trunks_sub.add_parser("list", help="list the account's trunks and the numbers they bring")
    trunk_remove = trunks_sub.add_parser("remove", help="remove a trunk (its numbers stay, without a trunk)")
    trunk_remove.add_argument("name", help="the trunk's name or id")
    for leaf in (trunk_add, trunk_list, trunk_remove):
        _common(leaf)
    trunks.set_defaults(func=_trunks)

    drain = sub.add_parser("drain", help="ask a running node to drain (no new calls) and stop")
    drain.add_argument("node_id", help="the node's id (see 'callroom cluster status')")
    drain.add_argument("--wait", type=float, default=0.0, metavar="SECS",
                       help="wait up to this long for the node to stop (exit 1 if it has not)")
    _common(drain)
    drain.set_defaults(func=_drain)

    phone = sub.add_parser("phone", help="virtual phones")
    _common(phone)
    phone_sub = phone.add_subparsers(dest="phone_command", required=True)
    call = phone_sub.add_parser("call", help="call an application from a virtual phone")
    call.add_argument("connection_id", help="the call control application to call")
    call.add_argument("--from", dest="from_", default="virtual:caller")
    call.add_argument("--to", default="+15550000000")
    call.add_argument("--server", help="the node's URL (default: http://HOST:PORT of its configuration, "
                                       f"else http://127.0.0.1:{DEFAULT_PORT})")
    call.add_argument("--api-key", help="default: CALLROOM_API_KEY, else the data dir's initial-api-key")
    _common(call)
    phone.set_defaults(func=_phone)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (ConfigError, StartupError, StoreError) as exc:
        print(f"callroom {args.command}: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    raise SystemExit(main())
