"""Zimbra's localconfig (``$ZIMBRA_HOME/conf/localconfig.xml``) and its ``zmlocalconfig`` tool.

The file has Zimbra's layout, one ``<key name="..."><value>...</value></key>`` per key under
``<localconfig>``. The tool follows ``zmlocalconfig``'s documented options:

    zmlocalconfig [-s] [-m plain|nokey|shell|export|xml] [-n|-d] [KEY...]   print keys
    zmlocalconfig -e KEY=VALUE...     set keys (``-f`` accepted)
    zmlocalconfig -u KEY...           remove keys (error if one is not set)
    zmlocalconfig -p                  the path of the file

Values of keys whose name contains ``password`` print as ``*`` unless ``-s`` is given. A key
asked for that is not set prints a warning on stderr and nothing on stdout (the stand-in has
no compiled-in defaults, so ``-d`` prints nothing and ``-n`` prints what is set).

What the stand-in honours (read by ``config.load`` on every tool start, so a change takes
effect at the next start of the service, as on Zimbra):

``ldap_url``         space-separated LDAP URLs, in order: where zmcontrol reads the enabled
                     services (``ldap_master_url`` when ``ldap_url`` is not set)
``sproxyd_url``      the message blob store: an sproxyd driver URL ``http://host:81/proxy/<alias>``
                     (the external store of ``zimbra_class_store``; the key name is the
                     stand-in's choice: no public source names the store plugin's keys)
"""

from __future__ import annotations

import getopt
import os
import sys
import xml.etree.ElementTree as ET
from typing import Any

FILE_NAME = "localconfig.xml"
FORMATS = ("plain", "nokey", "shell", "export", "xml")


class LocalConfigError(Exception):
    """The file cannot be read or written."""


def path(home: str) -> str:
    return os.path.join(home, "conf", FILE_NAME)


def read(home: str) -> dict[str, str]:
    """Every key set in the file; an absent file is an empty localconfig."""
    try:
        tree = ET.parse(path(home))
    except FileNotFoundError:
        return {}
    except (OSError, ET.ParseError) as exc:
        raise LocalConfigError(f"failed when reading config file: {exc}") from exc
    values = {}
    for key in tree.getroot().iter("key"):
        name = key.get("name")
        value = key.find("value")
        if name:
            values[name] = (value.text or "") if value is not None else ""
    return values


def render(values: dict[str, str]) -> str:
    root = ET.Element("localconfig")
    for name in sorted(values):
        key = ET.SubElement(root, "key", name=name)
        ET.SubElement(key, "value").text = values[name]
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(home: str, values: dict[str, str]) -> None:
    """Replace the file atomically, keeping its owner and mode (root may edit it for zimbra)."""
    target = path(home)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    tmp = target + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(render(values))
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    except OSError as exc:
        raise LocalConfigError(f"save to {target} failed: {exc}") from exc


def apply(cfg: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The stand-in's configuration with what localconfig says on top."""
    urls = (values.get("ldap_url") or values.get("ldap_master_url") or "").split()
    if urls and cfg.get("ldap"):
        cfg["ldap"] = dict(cfg["ldap"], urls=urls)
    store_url = values.get("sproxyd_url", "").strip()
    if store_url:
        cfg["store"] = dict(cfg.get("store") or {}, type="sproxyd", url=store_url)
        cfg["store"].pop("path", None)
    return cfg


def _format(name: str, value: str, fmt: str, show: bool) -> str:
    if not show and "password" in name:
        value = "*"
    if fmt == "nokey":
        return value
    if fmt == "shell":
        return f"{name}='{value}';"
    if fmt == "export":
        return f"export {name}='{value}';"
    if fmt == "xml":
        return f'<key name="{name}">\n  <value>{value}</value>\n</key>'
    return f"{name} = {value}"


def _error(message: str) -> int:
    sys.stderr.write(f"Error: {message}\n")
    return 1


USAGE = """usage: zmlocalconfig [options] [args]
where [options] are:
 -c,--config <arg>   File in which configuration is stored.
 -d,--default        Show default values for keys listed in [args].
 -e,--edit           Edit configuration file, changing keys and values specified. [args] is in key=value form.
 -f,--force          Allow editing of keys whose change is known to be potentially dangerous.
 -h,--help           Show this usage information.
 -m,--format <arg>   Show values in one of these formats: plain (default), xml, shell, export, nokey.
 -n,--changed        Show values for only those keys listed in [args] that have been changed from their defaults.
 -p,--path           Show which configuration file will be used.
 -q,--quiet          Suppress logging.
 -s,--show           Force display of password strings.
 -u,--unset          Remove a configuration key.
 -x,--expand         Expand values.
"""


def main(home: str, argv: list[str]) -> int:
    try:
        opts, args = getopt.gnu_getopt(argv, "c:dfehm:npqsux", [
            "config=", "default", "edit", "force", "help", "format=", "changed", "path",
            "quiet", "show", "unset", "expand"])
    except getopt.GetoptError as exc:
        return _error(f"Failed to parse command line: {exc}")
    long_names = {"config": "c", "default": "d", "edit": "e", "force": "f", "help": "h",
                  "format": "m", "changed": "n", "path": "p", "quiet": "q", "show": "s",
                  "unset": "u", "expand": "x"}
    flags = {long_names[name[2:]] if name.startswith("--") else name[1:]: value
             for name, value in opts}
    if "h" in flags:
        sys.stdout.write(USAGE)
        return 0
    home = os.path.dirname(os.path.dirname(flags["c"])) if flags.get("c") else home
    try:
        values = read(home)
        if "e" in flags:
            if not args:
                return _error("insufficient arguments")
            for arg in args:
                key, sep, value = arg.partition("=")
                if not sep or not key:
                    return _error(f"argument '{arg}' not in key=value form")
                values[key] = value
            write(home, values)
            return 0
        if "u" in flags:
            if not args:
                return _error("insufficient arguments")
            for key in args:
                if key not in values:
                    return _error(f"key {key} is not set")
                del values[key]
            write(home, values)
            return 0
    except LocalConfigError as exc:
        return _error(str(exc))
    if "p" in flags:
        print(path(home))
        return 0
    fmt = flags.get("m") or "plain"
    if fmt not in FORMATS:
        return _error(f"failed to create writer {fmt}")
    if "d" in flags:
        return 0
    for key in args or sorted(values):
        if key not in values:
            sys.stderr.write(f"Warning: null valued key '{key}'\n")
            continue
        print(_format(key, values[key], fmt, show="s" in flags))
    return 0
