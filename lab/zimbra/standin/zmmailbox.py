"""``zmmailbox``: list and fetch a mailbox's messages, and send one.

    zmmailbox [-z] -m user@example.test search|s [-t message] [TEXT]
    zmmailbox [-z] -m user@example.test getMessage|gm ID
    zmmailbox [-z] -m user@example.test sendMessage|sm [FILE]      (the stand-in's own)

``search`` prints Zimbra's table (``num: N, more: false``, then one numbered row per message:
id, type, sender, subject, date); TEXT matches the subject (Zimbra's query language is not
emulated; ``in:inbox`` and the like match everything). ``getMessage`` prints the message as
stored, read back from the blob store and checked against its SHA-256.

``sendMessage`` is not a real zmmailbox command: it stands for what the web client's send
(SOAP ``SendMsgRequest``) makes mailboxd do: submit the RFC 822 message (FILE or standard
input) over SMTP to the first answering host of the server's ``zimbraSmtpHostname`` (port
``zimbraSmtpPort``; see ``zmprov``), envelope sender the account, recipients from
To/Cc/Bcc. It prints the MTA's answer (``250 2.0.0 Ok: queued as ...``). mailboxd must be
running.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import smtplib
import sys
import time
from typing import Any

from . import config, mailstore, proc, zmprov

USAGE = ("usage: zmmailbox [-z] -m ACCOUNT search|s [-t message] [TEXT] | getMessage|gm ID"
         " | sendMessage|sm [FILE]")


def _search(store: mailstore.MailStore, account: str, words: list[str]) -> int:
    text = " ".join(w for w in words if ":" not in w)
    rows = store.search(account, text)
    print(f"num: {len(rows)}, more: false\n")
    print(f"     {'Id':>4}  Type   {'From':<20}  {'Subject':<50}  Date")
    print(f"     {'----':>4}  ----   {'-' * 20}  {'-' * 50}  {'-' * 14}")
    for number, row in enumerate(rows, 1):
        when = time.strftime("%m/%d/%y %H:%M", time.localtime(row["received"]))
        print(f"{number:>3}. {row['id']:>4}  mess   {row['sender'][:20]:<20}  "
              f"{row['subject'][:50]:<50}  {when}")
    return 0


def _send(cfg: dict[str, Any], account: str, rest: list[str]) -> int:
    if proc.running_pid(cfg, "mailboxd") is None:
        print("ERROR: service.FAILURE (mailboxd is not running)", file=sys.stderr)
        return 2
    if rest:
        with open(rest[0], "rb") as handle:
            data = handle.read()
    else:
        data = sys.stdin.buffer.read()
    message = email.message_from_bytes(data, policy=email.policy.default)
    recipients = [addr for _name, addr in email.utils.getaddresses(
        [str(v) for field in ("To", "Cc", "Bcc") for v in message.get_all(field, [])]) if addr]
    if not recipients:
        print("ERROR: mail.SEND_ABORTED_ADDRESS_FAILURE (no recipients)", file=sys.stderr)
        return 2
    del message["Bcc"]
    errors = []
    port = int(zmprov.get(cfg, "zimbraSmtpPort", ["25"])[0])
    for host in zmprov.get(cfg, "zimbraSmtpHostname", ["localhost"]):
        try:
            with smtplib.SMTP(host, port, timeout=30,
                              local_hostname=str(cfg.get("hostname") or "localhost")) as client:
                client.ehlo()
                code, answer = client.docmd("MAIL", f"FROM:<{account}>")
                if code != 250:
                    raise smtplib.SMTPSenderRefused(code, answer, account)
                for rcpt in recipients:
                    code, answer = client.rcpt(rcpt)
                    if code not in (250, 251):
                        raise smtplib.SMTPRecipientsRefused({rcpt: (code, answer)})
                code, answer = client.data(message.as_bytes())
                if code != 250:
                    raise smtplib.SMTPDataError(code, answer)
                print(f"{code} {answer.decode(errors='replace')} (via {host})")
                return 0
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(f"{host}: {exc}")
    print(f"ERROR: mail.SEND_FAILURE ({'; '.join(errors) or 'no zimbraSmtpHostname'})",
          file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    cfg: dict[str, Any] = config.load()
    args = [a for a in argv if a != "-z"]
    account = ""
    if len(args) >= 2 and args[0] in ("-m", "--mailbox"):
        account = args[1]
        args = args[2:]
    if not account or not args:
        print(USAGE, file=sys.stderr)
        return 1
    command, rest = args[0], args[1:]
    if "-t" in rest:
        index = rest.index("-t")
        rest = rest[:index] + rest[index + 2:]
    if command in ("sendMessage", "sm"):
        return _send(cfg, account, rest)
    try:
        store = mailstore.from_config(cfg)
        if command in ("search", "s"):
            return _search(store, account, rest)
        if command in ("getMessage", "gm") and len(rest) == 1 and rest[0].isdigit():
            _row, data = store.get(account, int(rest[0]))
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            return 0
    except mailstore.StoreError as exc:
        print(f"ERROR: mail.NO_SUCH_MSG ({exc})" if "no such" in str(exc)
              else f"ERROR: service.FAILURE ({exc})", file=sys.stderr)
        return 2
    print(USAGE, file=sys.stderr)
    return 1
