"""The MTA's queue and its routing, apart from the SMTP layer.

A message accepted over SMTP is written to the queue (``data/postfix/spool/deferred``) before
the 250 answer, then delivered over LMTP to the mailbox service's host. That host is found
by resolving the configured mailbox host name: by a TSIG-signed query in the configured DNS
view when there is one (so repointing the name at the other site reroutes mail, as a
failover does), from ``static_hosts`` when there is no DNS or the view has no address for
the name; a DNS server that does not answer defers delivery.
Recipients in other domains (accepted only from ``zimbraMtaMyNetworks`` clients: outgoing
mail submitted by the mailbox servers) go over SMTP to the relayhost, ``zimbraMtaRelayHost``
(see ``zmprov``), read at each attempt as zmconfigd would apply a change; with no relayhost
they stay queued (the lab has no Internet to look MX records up in).
A delivery that fails leaves the message queued; the queue is retried every
``retry_interval`` seconds and at once on ``postqueue -f`` (SIGUSR1 to the daemon).
"""

from __future__ import annotations

import json
import os
import smtplib
import sys
import threading
import time
import uuid
from typing import Any

from . import zmprov


class RouteError(Exception):
    """The mailbox host cannot be resolved now (a temporary failure)."""


def spool_dir(cfg: dict[str, Any]) -> str:
    return os.path.join(cfg["zimbra_home"], "data", "postfix", "spool", "deferred")


def resolve_mailhost(cfg: dict[str, Any]) -> str:
    smtp = cfg.get("smtp", {})
    name = smtp.get("mailhost", "")
    static = smtp.get("static_hosts", {})
    dns_cfg = smtp.get("dns")
    if dns_cfg:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype
        import dns.tsigkeyring

        keyring = dns.tsigkeyring.from_text({dns_cfg["key_name"]: dns_cfg["key_secret"]})
        query = dns.message.make_query(name, dns.rdatatype.A)
        query.use_tsig(keyring, keyname=dns_cfg["key_name"],
                       algorithm=dns_cfg.get("key_algorithm", "hmac-sha256"))
        try:
            reply = dns.query.udp(query, dns_cfg["server"], port=int(dns_cfg.get("port", 53)),
                                  timeout=float(dns_cfg.get("timeout", 3)))
        except (dns.exception.DNSException, OSError) as exc:
            raise RouteError(f"DNS lookup of {name} failed: {exc}") from exc
        if reply.rcode() == dns.rcode.NOERROR:
            for rrset in reply.answer:
                if rrset.rdtype == dns.rdatatype.A:
                    return str(next(iter(rrset)))
        if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            # An answer that is no answer (REFUSED, NOTAUTH...): said in the log, then the
            # static map decides, as when the name is not in the view at all.
            print(f"DNS lookup of {name}: {dns.rcode.to_text(reply.rcode())}", flush=True)
    if name in static:
        return str(static[name])
    raise RouteError(f"no address for mailbox host {name!r}")


def is_local(cfg: dict[str, Any], recipient: str) -> bool:
    domains = {d.lower() for d in cfg.get("smtp", {}).get("domains", [])}
    return not domains or recipient.rpartition("@")[2].lower() in domains


def relayhost(cfg: dict[str, Any]) -> tuple[str, int]:
    """``zimbraMtaRelayHost`` as (host, port): ``host``, ``host:port`` or ``[host]:port``."""
    values = zmprov.get(cfg, "zimbraMtaRelayHost")
    if not values or not values[0].strip():
        raise RouteError("no relayhost (zimbraMtaRelayHost) for a foreign domain")
    value = values[0].strip()
    host, _, port = value.rpartition(":") if value.rfind(":") > value.rfind("]") else (value, "", "25")
    return host.strip("[]"), int(port or 25)


def _temporary(client: smtplib.SMTP, sender: str, recipients: list[str], data: bytes) -> list[str]:
    """Send; the recipients refused with a temporary (4xx) code, to retry. 5xx refusals are
    final in a real MTA (a bounce); the stand-in drops them."""
    try:
        refused = client.sendmail(sender, recipients, data)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
    return [r for r, (code, _msg) in refused.items() if 400 <= code < 500]


class Queue:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.dir = spool_dir(cfg)
        os.makedirs(self.dir, exist_ok=True)
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def add(self, sender: str, recipients: list[str], data: bytes) -> str:
        queue_id = uuid.uuid4().hex[:12].upper()
        base = os.path.join(self.dir, queue_id)
        with open(base + ".eml.tmp", "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(base + ".eml.tmp", base + ".eml")
        meta = {"sender": sender, "recipients": recipients, "arrival": time.time(),
                "attempts": 0, "last_error": ""}
        self._write_meta(queue_id, meta)
        self.wake.set()
        return queue_id

    def _write_meta(self, queue_id: str, meta: dict[str, Any]) -> None:
        path = os.path.join(self.dir, queue_id + ".json")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(meta, handle)
        os.replace(path + ".tmp", path)

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.dir, name), encoding="utf-8") as handle:
                        found.append((name[:-5], json.load(handle)))
                except (OSError, ValueError):
                    continue
        return found

    def deliver_all(self) -> None:
        for queue_id, meta in self.entries():
            base = os.path.join(self.dir, queue_id)
            try:
                with open(base + ".eml", "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            try:
                remaining = self._deliver(meta["sender"], meta["recipients"], data)
                error = "" if not remaining else "recipients refused"
            except (RouteError, OSError, smtplib.SMTPException) as exc:
                remaining, error = meta["recipients"], str(exc)
            if not remaining:
                os.unlink(base + ".json")
                os.unlink(base + ".eml")
                print(f"{queue_id}: delivered to {', '.join(meta['recipients'])}", flush=True)
                continue
            meta.update(recipients=remaining, attempts=meta["attempts"] + 1, last_error=error)
            self._write_meta(queue_id, meta)
            print(f"{queue_id}: deferred: {error}", flush=True)

    def _deliver(self, sender: str, recipients: list[str], data: bytes) -> list[str]:
        local = [r for r in recipients if is_local(self.cfg, r)]
        remote = [r for r in recipients if r not in local]
        remaining: list[str] = []
        errors: list[Exception] = []
        for rcpts, send in ((local, self._send_lmtp), (remote, self._send_relay)):
            if not rcpts:
                continue
            try:
                remaining += send(sender, rcpts, data)
            except (RouteError, OSError, smtplib.SMTPException) as exc:
                remaining += rcpts
                errors.append(exc)
        if errors and len(remaining) == len(recipients):
            raise errors[0]
        return remaining

    def _send_lmtp(self, sender: str, recipients: list[str], data: bytes) -> list[str]:
        address = resolve_mailhost(self.cfg)
        port = int(self.cfg.get("smtp", {}).get("lmtp_port", 7025))
        with smtplib.LMTP(address, port, timeout=30) as client:
            return _temporary(client, sender, recipients, data)

    def _send_relay(self, sender: str, recipients: list[str], data: bytes) -> list[str]:
        host, port = relayhost(self.cfg)
        # Leave from the MTA's own address (Postfix's smtp_bind_address): the relay sees
        # which site's MTA the mail came from.
        source = (self.cfg["address"], 0) if self.cfg.get("address") else None
        with smtplib.SMTP(host, port, timeout=30, source_address=source,
                          local_hostname=str(self.cfg.get("hostname") or "localhost")) as client:
            return _temporary(client, sender, recipients, data)

    def run(self) -> None:
        interval = float(self.cfg.get("smtp", {}).get("retry_interval", 5))
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self.deliver_all()
            except Exception as exc:  # noqa: BLE001 - the loop must survive and report
                print(f"queue run failed: {exc}", flush=True)
            self.wake.wait(interval)


# Postfix's postqueue when the mail system is not running: the message on stderr, exit status
# EX_UNAVAILABLE (sysexits.h), for the listing and the flush alike.
EX_UNAVAILABLE = 69
DOWN_MESSAGES = {
    "-p": "postqueue: fatal: Queue report unavailable - mail system is down",
    "-f": "postqueue: fatal: Cannot flush mail queue - mail system is down",
}


def postqueue(cfg: dict[str, Any], argv: list[str]) -> int:
    """``postqueue -p`` (list the queue, Postfix's layout) and ``postqueue -f`` (flush), as
    Postfix answers them: with the MTA stopped, both fail on stderr with status 69."""
    from . import proc

    if argv[:1] not in (["-p"], ["-f"]):
        print("usage: postqueue -f | -p", file=sys.stderr)
        return 64
    pid = proc.running_pid(cfg, "master")
    if pid is None:
        print(DOWN_MESSAGES[argv[0]], file=sys.stderr)
        return EX_UNAVAILABLE
    if argv[0] == "-f":
        import signal

        os.kill(pid, signal.SIGUSR1)
        return 0
    queue = Queue(cfg)
    entries = queue.entries()
    if not entries:
        print("Mail queue is empty")
        return 0
    print("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------")
    total = 0
    for queue_id, meta in entries:
        try:
            size = os.path.getsize(os.path.join(queue.dir, queue_id + ".eml"))
        except OSError:
            size = 0
        total += size
        arrival = time.strftime("%a %b %d %H:%M:%S", time.localtime(meta["arrival"]))
        print(f"{queue_id:<11} {size:>8} {arrival}  {meta['sender']}")
        if meta.get("last_error"):
            print(f"{'':<42}({meta['last_error']})")
        for rcpt in meta["recipients"]:
            print(f"{'':<42}{rcpt}")
        print()
    print(f"-- {max(1, total // 1024)} Kbytes in {len(entries)} Requests.")
    return 0
