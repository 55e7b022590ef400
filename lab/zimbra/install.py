"""Install the Zimbra stand-in into a host's ``/opt/zimbra`` (or any directory, for tests).

    python -m lab.zimbra.install --home /opt/zimbra --config CONFIG.json [--etc /etc]
                                 [--python /usr/bin/python3] [--ca CA.pem] [--fresh-cache]

Run inside the host (its private ``/etc`` and ``/opt/zimbra``): adds user and group
``zimbra`` to that ``/etc`` (``--etc``; skipped with ``--no-user``), copies the stand-in's
code to ``common/lib/zmstandin``, writes one wrapper per tool in ``bin/`` (and
``common/sbin/postqueue``), the configuration ``conf/standin.json`` (mode 0600: it holds the
LDAP password, like localconfig), Zimbra's ``conf/localconfig.xml`` (the ``localconfig`` keys of
the configuration, as a fresh install leaves them), the CA to ``conf/ca/ca.pem``, and gives everything to
``zimbra``. ``--fresh-cache`` writes the enabled-services cache as a host that ran recently
has it. Re-running it is harmless: it rewrites the same files.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import pwd
import shutil
import sys
from typing import Any

from .standin import config as standin_config
from .standin import localconfig

STANDIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin")
ZIMBRA_UID = 4990
ZIMBRA_GID = 4990


def add_zimbra_user(etc: str, home: str = "/opt/zimbra", uid: int = ZIMBRA_UID,
                    gid: int = ZIMBRA_GID) -> bool:
    """Add user and group ``zimbra`` to the passwd/group/shadow files under `etc`.
    Returns False if the user was already there. Refuses a uid or gid taken by another."""
    return add_user(etc, "zimbra", uid, gid, home, gecos="Zimbra")


def add_user(etc: str, name: str, uid: int, gid: int, home: str, gecos: str = "",
             password: str = "!") -> bool:
    """Add user and group `name` to the passwd/group/shadow files under `etc`, with the shadow
    password field `password` (``!``: locked; ``*``: no password, key logins still allowed).
    Returns False if the user was already there. Refuses a uid or gid taken by another."""
    added = False
    for file, line, key in (
        ("group", f"{name}:x:{gid}:", gid),
        ("passwd", f"{name}:x:{uid}:{gid}:{gecos}:{home}:/bin/bash", uid),
        ("shadow", f"{name}:{password}:19000:0:99999:7:::", None),
    ):
        path = os.path.join(etc, file)
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            if file == "shadow":
                continue
            lines = []
        if any(entry.split(":", 1)[0] == name for entry in lines):
            continue
        if key is not None and any(entry.split(":")[2:3] == [str(key)] for entry in lines):
            raise SystemExit(f"{path}: id {key} already belongs to another entry")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        added = True
    return added


def _wrapper(home: str, python: str, tool: str) -> str:
    return (
        "#!/bin/sh\n"
        f"{standin_config.WRAPPER_MARK}\n"
        f"ZIMBRA_HOME={home} PYTHONPATH={home}/common/lib\n"
        "export ZIMBRA_HOME PYTHONPATH\n"
        f'exec {python} -m zmstandin {tool} "$@"\n'
    )


def install(home: str, cfg: dict[str, Any], python: str = "/usr/bin/python3",
            ca: str | None = None, fresh_cache: bool = False, owner: str = "zimbra") -> None:
    cfg = dict(cfg, zimbra_home=home)
    for sub in ("bin", "conf", "conf/ca", "log", "common/lib", "common/sbin",
                "data/postfix/spool", "db", "index"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    lib = os.path.join(home, "common", "lib", "zmstandin")
    shutil.rmtree(lib, ignore_errors=True)
    shutil.copytree(STANDIN_DIR, lib, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compileall.compile_dir(lib, quiet=1)
    for tool in standin_config.installed_scripts(cfg):
        where = ("common", "sbin") if tool == "postqueue" else ("bin",)
        target = os.path.join(home, *where, tool)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(_wrapper(home, python, tool))
        os.chmod(target, 0o755)
    if ca:
        shutil.copyfile(ca, os.path.join(home, "conf", "ca", "ca.pem"))
        if cfg.get("ldap"):
            cfg["ldap"] = dict(cfg["ldap"], ca_file=os.path.join(home, "conf", "ca", "ca.pem"))
    if cfg.get("localconfig") is not None:
        # Zimbra's localconfig as a fresh install leaves it (a reinstall resets it).
        with open(localconfig.path(home), "w", encoding="utf-8") as handle:
            handle.write(localconfig.render({k: str(v) for k, v in cfg["localconfig"].items()}))
        os.chmod(localconfig.path(home), 0o640)
    conf = standin_config.config_path(home)
    with open(conf + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(cfg, handle, indent=2, sort_keys=True)
    os.chmod(conf + ".tmp", 0o600)
    os.replace(conf + ".tmp", conf)
    if fresh_cache:
        services = {"zmconfigd"}
        for role in cfg.get("roles", []):
            services |= set(standin_config.ROLE_SERVICES.get(role, []))
        with open(os.path.join(home, "log", ".zmcontrol.cache"), "w", encoding="utf-8") as fh:
            fh.write("".join(f"{s}\n" for s in sorted(services)))
    entry = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.lchown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.zimbra.install")
    parser.add_argument("--home", default="/opt/zimbra")
    parser.add_argument("--config", required=True, help="the stand-in's configuration (JSON)")
    parser.add_argument("--etc", default="/etc")
    parser.add_argument("--no-user", action="store_true", help="do not add user zimbra")
    parser.add_argument("--owner", default="zimbra", help="who owns the installed files")
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--ca")
    parser.add_argument("--fresh-cache", action="store_true")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        cfg = json.load(handle)
    if not args.no_user:
        add_zimbra_user(args.etc, home=args.home)
    install(args.home, cfg, python=args.python, ca=args.ca, fresh_cache=args.fresh_cache,
            owner=args.owner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
