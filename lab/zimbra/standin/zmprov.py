"""``zmprov`` (a subset): read and modify this host's own server attributes.

    zmprov [-l] getServer|gs SERVER [ATTR ...]
    zmprov [-l] modifyServer|ms SERVER ATTR VALUE [ATTR VALUE ...]   (+ATTR / -ATTR add/remove a value)

Output as Zimbra's: ``# name <server>`` then one ``attr: value`` line per value. Real
``zmprov`` keeps server attributes in LDAP; the lab's directory has no Zimbra schema, so the
stand-in keeps them per host in ``conf/server-attrs.json`` and answers for its own server
only (``account.NO_SUCH_SERVER`` for another, exit 2, as zmprov does for an unknown server).
The attributes the stand-in honours:

``zimbraSmtpHostname``
    Where the mailbox submits outgoing mail (SMTP, first that answers; default ``localhost``).
``zimbraSmtpPort``
    Their port (default 25).
``zimbraMtaRelayHost``
    The MTA's relayhost for domains it does not deliver itself (Postfix's ``relayhost``:
    ``host``, ``host:port``, ``[host]:port``). Empty: such mail stays queued, deferred.
``zimbraMtaMyNetworks``
    The clients allowed to relay through the MTA (Postfix's ``mynetworks``, space-separated
    CIDRs); others get ``554 5.7.1 Relay access denied`` for a foreign domain.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from . import config

MULTI_VALUED = {"zimbraSmtpHostname", "zimbraMtaMyNetworks"}
USAGE = ("usage: zmprov [-l] getServer|gs SERVER [ATTR ...] | "
         "modifyServer|ms SERVER ATTR VALUE [ATTR VALUE ...]")


def attrs_path(cfg: dict[str, Any]) -> str:
    return os.path.join(cfg["zimbra_home"], "conf", "server-attrs.json")


def read(cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Server attributes: the configuration's ``server_attrs`` defaults, then what zmprov set."""
    attrs: dict[str, list[str]] = {k: list(v) for k, v in cfg.get("server_attrs", {}).items()}
    try:
        with open(attrs_path(cfg), encoding="utf-8") as handle:
            attrs.update(json.load(handle))
    except (OSError, ValueError):
        pass
    return attrs


def get(cfg: dict[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    return read(cfg).get(name) or list(default or [])


def _write(cfg: dict[str, Any], attrs: dict[str, list[str]]) -> None:
    path = attrs_path(cfg)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(attrs, handle, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _server_ok(cfg: dict[str, Any], server: str) -> bool:
    if server.lower() == str(cfg.get("hostname", "")).lower():
        return True
    print(f"ERROR: account.NO_SUCH_SERVER (no such server: {server})", file=sys.stderr)
    return False


def main(argv: list[str]) -> int:
    cfg = config.load()
    args = [a for a in argv if a != "-l"]
    if len(args) < 2:
        print(USAGE, file=sys.stderr)
        return 1
    command, server, rest = args[0], args[1], args[2:]
    if command in ("getServer", "gs"):
        if not _server_ok(cfg, server):
            return 2
        attrs = read(cfg)
        print(f"# name {cfg['hostname']}")
        for name in (rest or sorted(attrs)):
            for value in attrs.get(name, []):
                print(f"{name}: {value}")
        print()
        return 0
    if command in ("modifyServer", "ms"):
        if not rest or len(rest) % 2:
            print(USAGE, file=sys.stderr)
            return 1
        if not _server_ok(cfg, server):
            return 2
        attrs = read(cfg)
        replaced: set[str] = set()
        for name, value in zip(rest[::2], rest[1::2], strict=True):
            op, attr = (name[0], name[1:]) if name[:1] in "+-" else ("=", name)
            values = attrs.get(attr, [])
            if op == "+":
                values = values + [value] if value not in values else values
            elif op == "-":
                values = [v for v in values if v != value]
            else:
                # Several `ATTR VALUE` pairs of one attribute set all those values (zmprov's rule).
                values = (values if attr in replaced else []) + ([value] if value else [])
                replaced.add(attr)
            if values:
                attrs[attr] = values if attr in MULTI_VALUED else values[-1:]
            else:
                attrs.pop(attr, None)
        _write(cfg, attrs)
        return 0
    print(USAGE, file=sys.stderr)
    return 1
