"""The two stand-in processes that are real servers, both on aiosmtpd:

``mailboxd``  LMTP on ``<address>:<lmtp.port>`` (7025, as Zimbra's): stores each message for
              each recipient (``mailstore``); answers 451 while the DB/index volumes are not
              mounted and writable or the blob store fails, so the MTA keeps the message.
``master``    Postfix's stand-in: SMTP on ``<address>:<smtp.port>`` (25); accepts mail for
              ``smtp.domains`` from anyone and for other domains from ``mynetworks``
              (outgoing mail), queues it, delivers it (``mta``).

Each writes its pid file once it listens and its configured start time has passed; on SIGTERM
it takes its configured stop time, closes its port and exits.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import threading
import time
from typing import Any

from . import config, ctl, mailstore, mta, proc, zmprov


class MailboxHandler:
    def __init__(self, cfg: dict[str, Any], store: mailstore.MailStore) -> None:
        self.cfg = cfg
        self.store = store

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        problem = ctl.volume_problem(self.cfg)
        if problem:
            return f"451 4.3.0 mailbox store unavailable: {problem}"
        try:
            ids = [self.store.deliver(rcpt, envelope.mail_from, envelope.content)
                   for rcpt in envelope.rcpt_tos]
        except mailstore.StoreError as exc:
            return f"451 4.3.0 {exc}"
        return f"250 2.0.0 delivered as {','.join(map(str, ids))}"


class MtaHandler:
    def __init__(self, cfg: dict[str, Any], queue: mta.Queue) -> None:
        self.cfg = cfg
        self.queue = queue

    def _may_relay(self, peer: Any) -> bool:
        """Postfix's mynetworks: only these clients may send to foreign domains."""
        networks = zmprov.get(self.cfg, "zimbraMtaMyNetworks",
                              self.cfg.get("smtp", {}).get("mynetworks", []))
        try:
            client = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        return any(client in ipaddress.ip_network(n, strict=False)
                   for value in networks for n in value.split())

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not mta.is_local(self.cfg, address) and not self._may_relay(session.peer):
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            queue_id = self.queue.add(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.content)
        except OSError as exc:
            return f"451 4.3.0 queue file write error: {exc}"
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _controller(handler: Any, host: str, port: int, lmtp: bool) -> Any:
    from aiosmtpd.controller import Controller

    if not lmtp:
        return Controller(handler, hostname=host, port=port)
    from aiosmtpd.lmtp import LMTP

    class LMTPController(Controller):
        def factory(self) -> Any:
            return LMTP(self.handler, **self.SMTP_kwargs)

    return LMTPController(handler, hostname=host, port=port)


def run(process: str) -> int:
    cfg = config.load()
    kind = config.DAEMON_KINDS[process]
    host = cfg.get("address", "127.0.0.1")
    stop = threading.Event()
    flush = threading.Event()
    queue = None
    if kind == "lmtp":
        handler: Any = MailboxHandler(cfg, mailstore.from_config(cfg))
        port = int(cfg.get("lmtp", {}).get("port", 7025))
    else:
        queue = mta.Queue(cfg)
        handler = MtaHandler(cfg, queue)
        port = int(cfg.get("smtp", {}).get("port", 25))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: flush.set())
    controller = _controller(handler, host, port, lmtp=(kind == "lmtp"))
    controller.start()
    print(f"{process}: listening on {host}:{port}", flush=True)
    if queue is not None:
        threading.Thread(target=queue.run, name="queue", daemon=True).start()
    if stop.wait(config.timing(cfg, process, "start")):
        controller.stop()
        return 0
    proc.write_pid(cfg, process, os.getpid())
    while not stop.wait(0.2):
        if flush.is_set() and queue is not None:
            flush.clear()
            queue.wake.set()
    time.sleep(config.timing(cfg, process, "stop"))
    if queue is not None:
        queue.stopping.set()
        queue.wake.set()
    controller.stop()
    print(f"{process}: stopped", flush=True)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="daemon")
    parser.add_argument("process", choices=sorted(config.DAEMON_KINDS))
    parser.add_argument("--tag", help="marks the process as the stand-in's (pid file check)")
    args = parser.parse_args(argv)
    return run(args.process)
