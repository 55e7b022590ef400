"""Serve one process of the Scality emulator, or change its faults.

    python -m lab.scality --role supervisor --listen 127.0.0.1:8443 --cert C --key K \\
        --state-dir D --password-file F --site dc1=http://127.0.0.1:8081 --site dc2=... [--zone dc1]
    python -m lab.scality --role sproxyd --site-name dc1 --listen 127.0.0.1:8081 \\
        --state-dir D --peer dc2=http://127.0.0.1:8082
    python -m lab.scality fault --state-dir D show | heal | set '{"nodes_down": ["dc1-node1"]}'
    python -m lab.scality fault --state-dir D site-down dc1 | node-down dc1-node1 | disk-out NAME
        | supervisor-unreachable | sproxyd-error dc2 503 | sproxyd-slow dc2 1.5
        | delete-423 dc1 2 | backlog dc1 10
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from werkzeug.serving import make_server

from lab.scality.faults import FaultStore


def _pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, url = v.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=URL, got {v!r}")
        out[name] = url
    return out


def serve(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m lab.scality")
    p.add_argument("--role", choices=["supervisor", "sproxyd"], required=True)
    p.add_argument("--listen", required=True, help="ADDR:PORT")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--ring", default="DATA")
    p.add_argument("--quiet", action="store_true", help="no request log")
    # supervisor
    p.add_argument("--site", action="append", default=[], help="supervisor: ZONE=URL of that site's sproxyd host")
    p.add_argument("--zone", help="supervisor: the site it runs on (down with it)")
    p.add_argument("--username", default="supervisor")
    p.add_argument("--password-file")
    # sproxyd
    p.add_argument("--site-name", help="sproxyd: the site this connector and its storage belong to")
    p.add_argument("--peer", action="append", default=[], help="sproxyd: SITE=URL of another site's sproxyd")
    p.add_argument("--alias", default="chord")
    p.add_argument("--servers", type=int, default=3, help="storage servers (one node each) per site")
    p.add_argument("--disks", type=int, default=2, help="disks per storage server")
    p.add_argument("--copies", type=int, default=2, help="replicas kept on this site (class 3 over 2 sites: 2)")
    p.add_argument("--disk-size", type=int, default=1 << 30)
    p.add_argument("--rebuild-interval", type=float, default=0.5)
    args = p.parse_args(argv)

    host, _sep, port = args.listen.rpartition(":")
    faults = FaultStore(args.state_dir)
    stop = threading.Event()
    ssl_context: Any = None
    if args.cert:
        ssl_context = (args.cert, args.key)

    if args.role == "supervisor":
        from lab.scality.supervisor import SupervisorModel, create_app

        if not args.password_file:
            raise SystemExit("--password-file is required for the supervisor")
        with open(args.password_file) as f:
            password = f.read().strip()
        model = SupervisorModel(args.state_dir, args.ring, _pairs(args.site), args.zone)
        app = create_app(model, faults, args.username, password)
    else:
        from lab.scality.sproxyd import HttpPeer, create_app, start_rebuilder
        from lab.scality.store import SiteStore

        if not args.site_name:
            raise SystemExit("--site-name is required for sproxyd")
        peers = {name: HttpPeer(url) for name, url in _pairs(args.peer).items()}
        store = SiteStore(
            args.state_dir,
            args.site_name,
            faults=faults,
            ring=args.ring,
            servers=args.servers,
            disks_per_server=args.disks,
            copies=args.copies,
            disk_size=args.disk_size,
            peers=peers,  # type: ignore[arg-type]
        )
        app = create_app(store, faults, alias=args.alias)
        start_rebuilder(store, args.rebuild_interval, stop)

    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, int(port), app, threaded=True, ssl_context=ssl_context)

    def _stop(_sig: int, _frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"{args.role} listening on {args.listen}", flush=True)
    server.serve_forever()


SHORTCUTS = {
    "site-down": lambda a: {"sites_down": [a[0]]},
    "node-down": lambda a: {"nodes_down": list(a)},
    "disk-out": lambda a: {"disks_out": list(a)},
    "supervisor-unreachable": lambda a: {"supervisor_unreachable": True},
    "sproxyd-error": lambda a: {"sproxyd": {a[0]: {"status": int(a[1]) if len(a) > 1 else 503}}},
    "sproxyd-slow": lambda a: {"sproxyd": {a[0]: {"delay": float(a[1])}}},
    "delete-423": lambda a: {"sproxyd": {a[0]: {"delete_423": int(a[1]) if len(a) > 1 else 1}}},
    "backlog": lambda a: {"backlog": {a[0]: int(a[1])}},
}


def fault(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m lab.scality fault")
    p.add_argument("--state-dir", required=True)
    p.add_argument("action", choices=["show", "heal", "set", *SHORTCUTS])
    p.add_argument("args", nargs="*")
    args = p.parse_args(argv)
    store = FaultStore(args.state_dir)
    if args.action == "show":
        result = store.read()
    elif args.action == "heal":
        result = store.heal()
    elif args.action == "set":
        result = store.patch(json.loads(args.args[0]))
    else:
        patch = SHORTCUTS[args.action](args.args)
        # Naming one more node, disk or site adds to those already out.
        for key in ("sites_down", "nodes_down", "disks_out"):
            if key in patch:
                patch[key] = store.read()[key] + patch[key]
        result = store.patch(patch)
    print(json.dumps(result, indent=1, sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fault":
        fault(argv[1:])
    else:
        serve(argv[1:] if argv and argv[0] == "serve" else argv)


if __name__ == "__main__":
    main()
