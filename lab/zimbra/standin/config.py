"""The stand-in's configuration file and the tables that describe Zimbra's services.

The configuration is one JSON file, ``$ZIMBRA_HOME/conf/standin.json`` (the stand-in's
``localconfig``). Keys (all optional unless said otherwise):

``hostname`` (required)
    ``zimbra_server_hostname``: the name printed by ``zmcontrol`` and looked up in LDAP.
``address``
    The host's own address; the daemons listen on it.
``roles``
    Any of ``mailbox``, ``mta``, ``proxy``: which control scripts are installed.
``user``
    The only user allowed to run the tools (``zimbra``).
``version``
    What ``zmcontrol -v`` prints after ``Release``.
``ldap``
    Where the enabled services are read: ``urls`` (list, tried in order, like
    ``ldap_master_url``), ``bind_dn``, ``password``, ``base`` (the entries of the Zimbra
    servers), ``attribute`` (the attribute listing a server's enabled services; the lab's
    directory has no Zimbra schema, so it is ``description`` there), ``starttls`` (bool),
    ``ca_file``, ``timeout`` (seconds per master). Without ``ldap``, ``enabled_services`` (a
    list) is the answer, as if read from a directory that always answers.
``timings``
    Per process: ``{"mysqld": {"start": 2.0, "stop": 5.0}, "default": {...}}`` in seconds:
    how long the process takes to come up and to shut down.
``start_timeout``, ``stop_timeout``, ``status_timeout``
    How long a control script waits for a process (the last one is zmcontrol's 180 s alarm).
``volumes``
    ``{"db": "/opt/zimbra/db", "index": "/opt/zimbra/index"}``: the mailbox refuses to start
    unless each is a mount point (``require_mounts``, default true) and writable.
``store``
    Where message blobs go: ``{"type": "sproxyd", "url": "http://host:81/proxy/<alias>",
    "timeout": 10}`` or ``{"type": "directory", "path": "..."}``.
``lmtp``
    The mailbox's delivery port: ``{"port": 7025}``.
``localconfig``
    Keys written to Zimbra's ``conf/localconfig.xml`` at install (``zmlocalconfig`` edits
    them later; ``ldap_url`` and ``sproxyd_url`` there override ``ldap.urls`` and ``store``).
``smtp``
    The MTA: ``port`` (25), ``domains`` (accepted recipient domains), ``mailhost`` (the name
    of the mailbox service every account lives on), ``static_hosts`` (name -> address, the
    fallback resolution), ``dns`` (``server``, ``port``, ``key_name``, ``key_algorithm``,
    ``key_secret``: a TSIG-signed A query resolves ``mailhost`` in that view), ``lmtp_port``,
    ``retry_interval`` (seconds between delivery attempts of the queue), ``mynetworks``
    (CIDRs that may relay to foreign domains unless ``zimbraMtaMyNetworks`` is set).
``server_attrs``
    Server attributes as the install leaves them (``zmprov gs``); ``zmprov ms`` overrides them.
"""

from __future__ import annotations

import json
import os
from typing import Any

ZIMBRA_HOME_DEFAULT = "/opt/zimbra"

# The second line of every tool wrapper the installer writes (lab.zimbra.install): how zmcontrol
# tells the stand-in's own control scripts from any other script in their place.
WRAPPER_MARK = "# Zimbra stand-in of the zimbra_geo lab."

# zmcontrol's service names, the control script of each, and its start and stop ranks
# (Zimbra's own %startorder / %stoporder).
SERVICE_CTL = {
    "amavis": "zmamavisdctl",
    "antispam": "zmantispamctl",
    "antivirus": "zmantivirusctl",
    "mailbox": "zmstorectl",
    "memcached": "zmmemcachedctl",
    "mta": "zmmtactl",
    "opendkim": "zmopendkimctl",
    "proxy": "zmproxyctl",
    "service": "zmstorectl",
    "stats": "zmstatctl",
    "zimbra": "zmstorectl",
    "zimbraAdmin": "zmstorectl",
    "zimlet": "zmstorectl",
    "zmconfigd": "zmconfigdctl",
}
START_ORDER = {
    "zmconfigd": 10, "mailbox": 50, "memcached": 60, "proxy": 70, "amavis": 75,
    "antispam": 80, "antivirus": 90, "opendkim": 100, "mta": 150, "stats": 160,
    "service": 170, "zimbra": 180, "zimbraAdmin": 190, "zimlet": 200,
}
STOP_ORDER = {
    "mailbox": 40, "memcached": 50, "proxy": 60, "antispam": 70, "antivirus": 80,
    "amavis": 85, "opendkim": 90, "mta": 140, "stats": 150, "service": 160, "zimbra": 170,
    "zimbraAdmin": 180, "zimlet": 190, "zmconfigd": 210,
}
WEBAPPS = ("service", "zimbra", "zimbraAdmin", "zimlet")
# Services whose being stopped does not make `zmcontrol status` exit 1 (Zimbra's default
# zmcontrol_service_status_list leaves these out).
STATUS_EXEMPT = ("stats", "snmp", "logger", "spell")

# What each role enables in the directory (zimbraServiceEnabled); zmconfigd is always added.
ROLE_SERVICES = {
    "mailbox": ["mailbox", "service", "stats", "zimbra", "zimbraAdmin", "zimlet"],
    "mta": ["amavis", "antispam", "antivirus", "mta", "opendkim", "stats"],
    "proxy": ["memcached", "proxy", "stats"],
}

# Control scripts that own one process: script -> (process name, label in its messages).
UNIT_CTL = {
    "mysql.server": ("mysqld", "mysql"),
    "zmmailboxdctl": ("mailboxd", "mailboxd"),
    "postfix": ("master", "postfix"),
    "zmamavisdctl": ("amavisd", "amavisd"),
    "zmsaslauthdctl": ("saslauthd", "saslauthd"),
    "zmantispamctl": ("spamd", "antispam"),
    "zmantivirusctl": ("clamd", "antivirus"),
    "zmopendkimctl": ("opendkim", "opendkim"),
    "zmproxyctl": ("nginx", "proxy"),
    "zmmemcachedctl": ("memcached", "memcached"),
    "zmstatctl": ("zmstat", "zmstat"),
    "zmconfigdctl": ("zmconfigd", "zmconfigd"),
}
# Control scripts that drive others, in start order; the status line of a stopped member is
# "<member> is not running<suffix>" (zmstorectl ends it with a period, zmmtactl does not).
GROUP_CTL = {
    "zmstorectl": (["mysql.server", "zmmailboxdctl"], "."),
    "zmmtactl": (["zmamavisdctl", "zmsaslauthdctl", "postfix"], ""),
}
# Processes that are real servers (Python daemons); the others are idle placeholders.
DAEMON_KINDS = {"mailboxd": "lmtp", "master": "smtp"}

ROLE_SCRIPTS = {
    "mailbox": ["zmstorectl", "mysql.server", "zmmailboxdctl", "zmmailbox"],
    "mta": ["zmmtactl", "postfix", "postqueue", "zmamavisdctl", "zmsaslauthdctl",
            "zmantispamctl", "zmantivirusctl", "zmopendkimctl"],
    "proxy": ["zmproxyctl", "zmmemcachedctl"],
}
COMMON_SCRIPTS = ["zmcontrol", "zmlocalconfig", "zmprov", "zmstatctl", "zmconfigdctl"]


def zimbra_home() -> str:
    return os.environ.get("ZIMBRA_HOME", ZIMBRA_HOME_DEFAULT)


def config_path(home: str | None = None) -> str:
    return os.path.join(home or zimbra_home(), "conf", "standin.json")


def load(home: str | None = None) -> dict[str, Any]:
    """The configuration, with the keys of Zimbra's localconfig that the stand-in honours on
    top (``ldap_url``, ``sproxyd_url``: see ``localconfig``)."""
    from . import localconfig

    with open(config_path(home), encoding="utf-8") as handle:
        cfg: dict[str, Any] = json.load(handle)
    cfg.setdefault("zimbra_home", home or zimbra_home())
    cfg.setdefault("user", "zimbra")
    cfg.setdefault("roles", [])
    try:
        values = localconfig.read(cfg["zimbra_home"])
    except localconfig.LocalConfigError:
        values = {}
    return localconfig.apply(cfg, values)


def timing(cfg: dict[str, Any], process: str, phase: str) -> float:
    timings = cfg.get("timings", {})
    value = timings.get(process, {}).get(phase)
    if value is None:
        value = timings.get("default", {}).get(phase, 0.0)
    return float(value)


def log_dir(cfg: dict[str, Any]) -> str:
    return os.path.join(cfg["zimbra_home"], "log")


def installed_scripts(cfg: dict[str, Any]) -> list[str]:
    scripts = list(COMMON_SCRIPTS)
    for role in cfg["roles"]:
        scripts += ROLE_SCRIPTS.get(role, [])
    return scripts


def installed_services(cfg: dict[str, Any]) -> list[str]:
    """zmcontrol services whose control script is installed on this host."""
    scripts = set(installed_scripts(cfg))
    return [name for name, ctl in SERVICE_CTL.items() if ctl in scripts]
