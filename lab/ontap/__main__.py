"""Serve one emulated ONTAP cluster over HTTPS.

    python -m lab.ontap --listen 127.0.0.1:8443 --cert C --key K --state-dir D \\
        --cluster-name dc2-ontap --svm svm_dc2 --password-file F \\
        [--config cluster.json] [--san-dir S] [--peer svm_dc1=https://127.0.0.1:8444] [--ca CA]

``--config`` (JSON) gives the initial volumes and relationships and optional latencies:
``{"volumes": [{"name": "mbox1_db", "type": "dp"}], "relationships": [{"source":
"svm_dc1:mbox1_db", "destination": "svm_dc2:mbox1_db", "state": "snapmirrored"}],
"latencies": {"transition": 0.2}}``, plus optional SAN objects (``lab/ontap/san.py``):
``"igroups": [{"name", "protocol", "os_type", "initiators": [...]}]``, ``"lun_maps": [{"lun":
"/vol/mbox1_db/lun0", "igroup": NAME}]`` and a volume's ``"lun": {"name", "os_type", "size"}``.
State persists in ``<state-dir>/state.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from lab.ontap.app import HttpPeer, create_app
from lab.ontap.state import Cluster


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lab.ontap", description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--listen", required=True, help="ADDR:PORT")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--cluster-name", required=True)
    p.add_argument("--svm", required=True)
    p.add_argument("--username", default="admin")
    p.add_argument("--password-file", type=Path, help="file holding the admin password (else $ONTAP_PASSWORD)")
    p.add_argument("--config", type=Path)
    p.add_argument("--san-dir", type=Path, help="shared volume data root (default <state-dir>/san)")
    p.add_argument("--peer", action="append", default=[], help="SVM=URL of a peered cluster (repeatable)")
    p.add_argument("--ca", help="CA file to verify peers (default: the system store)")
    p.add_argument("--no-read-only-marks", action="store_true", help="do not chattr +i dp volumes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.password_file:
        password = args.password_file.read_text().strip()
    else:
        password = os.environ.get("ONTAP_PASSWORD", "")
    if not password:
        print("a password is required (--password-file or $ONTAP_PASSWORD)", file=sys.stderr)
        return 2
    config = json.loads(args.config.read_text()) if args.config else {}
    peers = {}
    for spec in args.peer:
        svm, _sep, url = spec.partition("=")
        peers[svm] = HttpPeer(url, args.username, password, args.ca or True)
    cluster = Cluster(
        args.cluster_name,
        args.svm,
        args.san_dir or args.state_dir / "san",
        args.state_dir,
        config=config,
        peers=peers,
        read_only_marks=not args.no_read_only_marks,
    )
    cluster.peers.setdefault(args.svm, _SelfPeer(cluster))
    host, _sep, port = args.listen.rpartition(":")
    server = make_server(
        host,
        int(port),
        create_app(cluster, args.username, password),
        threaded=True,
        ssl_context=(args.cert, args.key),
        request_handler=KeepAliveHandler,
    )

    def stop(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        cluster.close()
    return 0


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1, so clients keep their TLS connections (ONTAP does; HTTP/1.0 would mean a
    new handshake for every call of a client that polls many relationships)."""

    protocol_version = "HTTP/1.1"


class _SelfPeer:
    """Relationships inside one cluster (source and destination on the same SVM)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def snapshot(self, volume: str, label: str) -> dict:
        return self.cluster.make_snapshot(volume, label)

    def adopt(self, record: dict) -> None:
        self.cluster.adopt(record)

    def relationships_from(self, svm: str) -> list[dict]:
        return []


if __name__ == "__main__":
    sys.exit(main())
