"""The Internet, as far as outgoing mail is concerned: an SMTP relay outside both sites.

Each site's MTAs relay mail for foreign domains to it (``zimbraMtaRelayHost``, set by
site-build from the inventory's ``zimbra_geo_outbound_relay``). It accepts everything and
keeps each message with the address of the client that handed it over, so a test can tell
which site's MTA the mail left from:

    <host dir>/outbound/<n>.eml    the message as received
    <host dir>/outbound/<n>.json   {"peer": "127.10.2.31", "helo": ..., "mail_from": ...,
                                    "rcpt_tos": [...], "received": <epoch>}

    python -m lab.smtp_sink --listen 127.10.0.25:25 --dir DIR
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.services import Service

if TYPE_CHECKING:
    from lab.core import Host, Lab

PORT = 25


class SinkHandler:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        start = max((int(p.stem) for p in self.dir.glob("*.json") if p.stem.isdigit()), default=0)
        self.counter = itertools.count(start + 1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            number = next(self.counter)
        meta = {"peer": session.peer[0], "helo": session.host_name, "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos), "received": time.time()}
        (self.dir / f"{number}.eml").write_bytes(envelope.original_content or envelope.content)
        tmp = self.dir / f"{number}.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.dir / f"{number}.json")
        return f"250 2.0.0 Ok: queued as OUT{number}"


def received(directory: Path) -> list[dict[str, Any]]:
    """Every message the relay kept, oldest first, with its text under ``data``."""
    found = []
    for meta in sorted(directory.glob("*.json"), key=lambda p: int(p.stem)):
        item = json.loads(meta.read_text())
        item["data"] = meta.with_suffix(".eml").read_bytes().decode(errors="replace")
        found.append(item)
    return found


class SmtpSink(Service):
    name = "smtp_sink"
    port = PORT

    @staticmethod
    def outbox(host: "Host") -> Path:
        return host.dir / "outbound"

    def start(self, lab: "Lab", host: "Host") -> None:
        import sys

        host.spawn([sys.executable, "-m", "lab.smtp_sink", "--listen", f"{host.address}:{PORT}",
                    "--dir", str(self.outbox(host))], self.name,
                   env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
        host.wait_port(PORT, "smtp_sink")

    def reset(self, lab: "Lab", host: "Host") -> None:
        """Forget what was relayed."""
        for path in self.outbox(host).glob("*"):
            path.unlink()
        super().reset(lab, host)

    @staticmethod
    def relay(host: "Host") -> str:
        """The relay as a relayhost value (Postfix's ``[host]:port``: no MX lookup)."""
        return f"[{host.address}]:{PORT}"


def main(argv: list[str] | None = None) -> int:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(prog="python -m lab.smtp_sink")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT")
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    controller = Controller(SinkHandler(args.dir), hostname=address, port=int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print(f"smtp_sink: listening on {args.listen}", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
