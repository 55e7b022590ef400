"""Run one stand-in server on its own, without a lab (tests, experiments):

    python -m lab.zimbra --role mailbox --listen 127.0.0.1:7025 --state-dir D \\
        [--store-url http://127.0.0.1:8081/proxy/chord]
    python -m lab.zimbra --role mta --listen 127.0.0.1:2525 --state-dir D \\
        --mailbox 127.0.0.1:7025 [--domain example.test]

It installs the stand-in under ``D/opt-zimbra`` for the current user (no mount check: the
"volumes" are ``D/db`` and ``D/index``), then runs the LMTP mailbox or the SMTP MTA in the
foreground until SIGTERM. Without ``--store-url`` blobs go to ``D/blobs``. ``--cert`` and
``--key`` are accepted for the lab's common command line; SMTP and LMTP here are plain, as
between Zimbra's own MTA and mailbox.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys

from . import install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.zimbra")
    parser.add_argument("--role", choices=["mailbox", "mta"], required=True)
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--store-url", help="sproxyd base URL .../proxy/<alias>")
    parser.add_argument("--mailbox", help="mta: ADDR:PORT of the mailbox's LMTP")
    parser.add_argument("--domain", action="append", default=[])
    parser.add_argument("--hostname", default="standin.example.test")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    state = os.path.abspath(args.state_dir)
    home = os.path.join(state, "opt-zimbra")
    user = pwd.getpwuid(os.geteuid()).pw_name
    cfg: dict = {"hostname": args.hostname, "address": address, "roles": [args.role],
                 "user": user, "enabled_services": [], "require_mounts": False}
    if args.role == "mailbox":
        for sub in ("db", "index"):
            os.makedirs(os.path.join(state, sub), exist_ok=True)
        cfg["volumes"] = {"db": os.path.join(state, "db"), "index": os.path.join(state, "index")}
        cfg["lmtp"] = {"port": int(port)}
        cfg["store"] = ({"type": "sproxyd", "url": args.store_url} if args.store_url
                        else {"type": "directory", "path": os.path.join(state, "blobs")})
    else:
        if not args.mailbox:
            parser.error("--mailbox is required with --role mta")
        lmtp_host, _, lmtp_port = args.mailbox.rpartition(":")
        cfg["smtp"] = {"port": int(port), "domains": args.domain or ["example.test"],
                       "mailhost": "mailbox", "static_hosts": {"mailbox": lmtp_host},
                       "lmtp_port": int(lmtp_port), "retry_interval": 1}
    install.install(home, cfg, python=sys.executable, owner=user)
    os.environ["ZIMBRA_HOME"] = home
    from .standin import daemon

    return daemon.run("mailboxd" if args.role == "mailbox" else "master")


if __name__ == "__main__":
    sys.exit(main())
