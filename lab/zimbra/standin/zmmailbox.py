"""``zmmailbox`` (the read side only): list and fetch a mailbox's messages.

    zmmailbox [-z] -m user@example.test search|s [-t message] [TEXT]
    zmmailbox [-z] -m user@example.test getMessage|gm ID

``search`` prints Zimbra's table (``num: N, more: false``, then one numbered row per message:
id, type, sender, subject, date); TEXT matches the subject (Zimbra's query language is not
emulated; ``in:inbox`` and the like match everything). ``getMessage`` prints the message as
stored, read back from the blob store and checked against its SHA-256.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from . import config, mailstore

USAGE = "usage: zmmailbox [-z] -m ACCOUNT search|s [-t message] [TEXT] | getMessage|gm ID"


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
