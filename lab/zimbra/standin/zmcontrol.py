"""``zmcontrol``: Zimbra's ``bin/zmcontrol`` (start, stop, restart, status, -v, -h, -H).

Behaviour kept from Zimbra's script: only user ``zimbra`` may run it; the enabled services
come from the LDAP master (``cn=<hostname>`` under the servers base), else from
``log/.zmcontrol.cache`` if under a day old, else "Unable to determine enabled services";
``status`` prints ``Host <name>`` and one ``"\\t%-20s %10s"`` line per enabled service in
alphabetical order (webapps with a `` webapp`` suffix), the control script's output under a
stopped service on lines starting with two tabs, exits 1 if a service outside
stats/snmp/logger/spell is stopped, and gives up with ``Timeout after 180 seconds``;
``start`` walks the enabled services in start order, ``stop`` every installed service in
reverse stop order; ``-H`` with another host always exits 0.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import signal
import subprocess
import sys
import time
from typing import Any

from . import config

CACHE_NAME = ".zmcontrol.cache"
CACHE_MAX_AGE = 86400.0
DESC = {
    "restart": "Restart services",
    "shutdown": "Stop services",
    "start": "Start services",
    "startup": "Start services",
    "status": "Display service status",
    "stop": "Stop services",
}


class NoServices(Exception):
    """The enabled services are unknown (no LDAP master answered, no fresh cache)."""


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _cache_path(cfg: dict[str, Any]) -> str:
    return os.path.join(config.log_dir(cfg), CACHE_NAME)


def _from_ldap(cfg: dict[str, Any]) -> set[str] | None:
    """The server entry's enabled services from the first master that answers, or None."""
    import ldap3  # the stand-in imports its LDAP client only when it needs it
    from ldap3.core.exceptions import LDAPException

    ldap = cfg["ldap"]
    tls = None
    if ldap.get("starttls") or any(u.startswith("ldaps:") for u in ldap["urls"]):
        import ssl

        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ldap.get("ca_file"))
    attribute = ldap.get("attribute", "zimbraServiceEnabled")
    for url in ldap["urls"]:
        try:
            # ldap3 takes scheme://host[:port]; Zimbra's ldap_master_url values end with "/".
            server = ldap3.Server(url.rstrip("/"), tls=tls, get_info=ldap3.NONE,
                                  connect_timeout=int(ldap.get("timeout", 30)))
            conn = ldap3.Connection(server, ldap.get("bind_dn"), ldap.get("password"),
                                    receive_timeout=int(ldap.get("timeout", 30)))
            conn.open()
        except (LDAPException, OSError):
            continue
        try:
            if ldap.get("starttls") and not url.startswith("ldaps:"):
                conn.start_tls()
            if not conn.bind():
                _warn("Bind: Unable to determine enabled services from ldap.")
                return None
            ok = conn.search(ldap["base"], f"(cn={cfg['hostname']})", attributes=[attribute])
            if not ok and conn.result.get("result") not in (0, None):
                _warn("Search error: Unable to determine enabled services from ldap.")
                return None
            if len(conn.entries) != 1:
                _warn("Size error: Unable to determine enabled services from ldap.")
                return None
            values = conn.entries[0].entry_attributes_as_dict.get(attribute, [])
            return {str(v) for v in values}
        except LDAPException as exc:
            _warn(f"Unable to determine enabled services from ldap: {exc}")
            return None
        finally:
            conn.unbind()
    _warn("Connect: Unable to determine enabled services from ldap.")
    return None


def enabled_services(cfg: dict[str, Any]) -> set[str]:
    services = {"zmconfigd"}
    if not cfg.get("ldap"):
        return services | set(cfg.get("enabled_services", []))
    found = _from_ldap(cfg)
    cache = _cache_path(cfg)
    if found is not None:
        services |= found
        tmp = cache + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{s}\n" for s in sorted(services)))
        os.replace(tmp, cache)
        return services
    try:
        fresh = time.time() - os.stat(cache).st_mtime <= CACHE_MAX_AGE
    except OSError:
        fresh = False
    if not fresh:
        print("Unable to determine enabled services. Cache is out of date or doesn't exist.")
        raise NoServices
    with open(cache, encoding="utf-8") as handle:
        services |= {line.strip() for line in handle if line.strip()}
    _warn("Enabled services read from cache. Service list may be inaccurate.")
    return services


def _label(service: str) -> str:
    return f"{service} webapp" if service in config.WEBAPPS else service


def _ctl(cfg: dict[str, Any], service: str) -> str:
    return os.path.join(cfg["zimbra_home"], "bin", config.SERVICE_CTL.get(service, service))


def _own_script(path: str) -> bool:
    """Whether `path` is a wrapper the stand-in's installer wrote."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    return config.WRAPPER_MARK.encode() in head.splitlines()[1:2]


def _control(cfg: dict[str, Any], service: str, action: str,
             merge_stderr: bool = False) -> tuple[int, str]:
    """Run `service`'s control script with `action`: its exit code and output.

    Zimbra runs each script as a process of its own. The stand-in's own scripts (the
    wrappers it installed) run here, in this process: the same code, output and exit code,
    without a Python start-up per service (a mailbox's status asks seven of them), so that
    40 emulated servers sharing a machine's cores cost what the automation under test does,
    not many times more. A script that is not one of the stand-in's runs as a process."""
    ctl = _ctl(cfg, service)
    if not os.access(ctl, os.X_OK):
        return 127, f"sh: 1: {ctl}: not found\n"
    script = os.path.basename(ctl)
    argv = [action] + (["norewrite"] if action == "start" else [])
    if (script in config.UNIT_CTL or script in config.GROUP_CTL) and _own_script(ctl):
        from . import ctl as scripts

        out = io.StringIO()
        err = out if merge_stderr else io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = scripts.main(script, argv)
        return rc, out.getvalue()
    result = subprocess.run([ctl, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            text=True, check=False)
    return result.returncode, result.stdout


def do_status(cfg: dict[str, Any]) -> int:
    services = enabled_services(cfg)
    timeout = int(cfg.get("status_timeout", 180))

    def on_alarm(_signum: int, _frame: object) -> None:
        print(f"Timeout after {timeout} seconds", flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    status = 0
    print(f"Host {cfg['hostname']}", flush=True)
    for service in sorted(services):
        rc, out = _control(cfg, service, "status")
        if rc and service not in config.STATUS_EXEMPT:
            status = 1
        print(f"\t{_label(service):<20} {'Stopped' if rc else 'Running':>10}")
        if rc:
            for line in out.splitlines():
                print(f"\t\t{line}")
        sys.stdout.flush()
    signal.alarm(0)
    return status


def _run_ctl(cfg: dict[str, Any], service: str, verb: str, action: str) -> int:
    print(f"\t{verb} {_label(service)}...", end="", flush=True)
    ctl = _ctl(cfg, service)
    if not os.access(ctl, os.X_OK):
        print(f"skipped.\n\t\t{ctl} missing or not executable.")
        return 0
    rc, out = _control(cfg, service, action, merge_stderr=True)
    if rc:
        print("Failed.")
        print(f"{out}\n")
        return 1
    print("Done.")
    return 0


def do_start(cfg: dict[str, Any]) -> int:
    print(f"Host {cfg['hostname']}", flush=True)
    services = enabled_services(cfg)
    rc = 0
    for service in sorted(services, key=lambda s: (config.START_ORDER.get(s, 999), s)):
        if service == "ldap":
            continue
        rc |= _run_ctl(cfg, service, "Starting", "start")
    return rc


def do_stop(cfg: dict[str, Any]) -> int:
    print(f"Host {cfg['hostname']}", flush=True)
    rc = 0
    installed = config.installed_services(cfg)
    for service in sorted(installed, key=lambda s: (-config.STOP_ORDER.get(s, 0), s)):
        rc |= _run_ctl(cfg, service, "Stopping", "stop")
    return rc


def do_restart(cfg: dict[str, Any]) -> int:
    do_stop(cfg)
    return do_start(cfg)


COMMANDS = {
    "restart": do_restart,
    "shutdown": do_stop,
    "start": do_start,
    "startup": do_start,
    "status": do_status,
    "stop": do_stop,
}


def version(cfg: dict[str, Any]) -> None:
    print(f"Release {cfg.get('version', '10.0.9_GA_4718.UBUNTU22_64 UBUNTU22_64')} "
          "FOSS edition.")


def usage(cfg: dict[str, Any]) -> int:
    version(cfg)
    print(f"{sys.argv[0]} [-v -h -H <host>] command [args]\n")
    print("\t-v:\tdisplay version")
    print("\t-h:\tprint usage statement")
    print("\t-H:\tHost name (localhost)\n")
    print("\tCommand in:")
    for name in sorted(COMMANDS):
        print(f"\t\t{name:<20}{DESC[name]:>30}")
    print()
    return 1


def main(argv: list[str]) -> int:
    cfg = config.load()
    if pwd.getpwuid(os.geteuid()).pw_name != cfg["user"]:
        sys.stderr.write(f"Run as the {cfg['user']} user!\n")
        return 255
    opts: dict[str, str] = {}
    args = list(argv)
    while args and args[0].startswith("-") and len(args[0]) > 1:
        flag = args.pop(0)
        if flag == "-H" and args:
            opts["H"] = args.pop(0)
        elif flag in ("-v", "-h"):
            opts[flag[1]] = "1"
        else:
            return usage(cfg)
    if "h" in opts:
        return usage(cfg)
    if "v" in opts:
        version(cfg)
        return 0
    command = args[0] if args else ""
    if command not in COMMANDS:
        return usage(cfg)
    if opts.get("H", cfg["hostname"]) != cfg["hostname"]:
        # Zimbra hands the command to the remote host and exits 0 whatever happened there.
        print(f"Host {opts['H']} complete")
        return 0
    try:
        return COMMANDS[command](cfg)
    except NoServices:
        return 1
