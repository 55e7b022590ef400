"""The lab Service of the Zimbra stand-in, one per mailbox, MTA and proxy host.

``start`` installs the stand-in into the host's private ``/opt/zimbra`` (user ``zimbra`` in
the host's private ``/etc/passwd``, wrappers, configuration, the lab CA, a fresh cache of the
enabled services) and registers the host's server entry in the directory; it starts no
Zimbra service: like a real platform after a reboot, Zimbra is started by the playbooks (or
``zmcontrol start``), and a mailbox only once its DB and index volumes are mounted.

Directory layout it relies on (the lab's slapd has no Zimbra schema): one entry per Zimbra
server, ``cn=<fqdn>,ou=zimbraServers,<suffix>``, object class ``device``, its enabled
services as ``description`` values (Zimbra's ``zimbraServiceEnabled``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

from lab.services import Service

from .standin import config as standin_tables

DOMAIN = "example.test"
SUFFIX = "dc=example,dc=test"
SERVERS_OU = f"ou=zimbraServers,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPT_LIB = "/opt/zimbra/common/lib"
# Short, but long enough that status polls see the transitions.
LAB_TIMINGS = {
    "default": {"start": 0.1, "stop": 0.1},
    "mysqld": {"start": 0.3, "stop": 1.0},
    "mailboxd": {"start": 0.5, "stop": 0.3},
}
VOLUMES = {"db": "/opt/zimbra/db", "index": "/opt/zimbra/index"}
REGISTER_TIMEOUT = 30.0
# The stand-in's fault file on each host (lab.zimbra.standin.proc reads it).
FAULTS_FILE = "/opt/zimbra/conf/x-lab-faults.json"


ROLE_ALIASES = {"mailbox": "mailbox", "mbox": "mailbox", "zimbra-mailbox": "mailbox",
                "mta": "mta", "zimbra-mta": "mta", "proxy": "proxy", "zimbra-proxy": "proxy"}
NAME_ROLES = re.compile(r"-(mbox|mta|proxy)\d+$")


def zimbra_roles(host: Any) -> list[str]:
    """The stand-in roles of a host: from its topology roles, else from its name
    (``dcN-mboxM``, ``dcN-mtaM``, ``dcN-proxyM``)."""
    roles = {ROLE_ALIASES[str(r).lower()] for r in (getattr(host, "roles", None) or [])
             if str(r).lower() in ROLE_ALIASES}
    match = NAME_ROLES.search(host.name)
    if not roles and match:
        roles.add(ROLE_ALIASES[match.group(1)])
    return sorted(roles)


def _topology(lab: Any) -> dict[str, Any]:
    topology = getattr(lab, "topology", None)
    return topology if isinstance(topology, dict) else {}


def domain(lab: Any) -> str:
    return str(_topology(lab).get("domain", DOMAIN))


def fqdn(host: Any) -> str:
    lab = getattr(host, "lab", None)
    return f"{host.name}.{domain(lab) if lab is not None else DOMAIN}"


def mailhost_name(lab: Any) -> str:
    """The mailbox service's name (its A record in the internal view follows the active site;
    the MTA routes by it)."""
    return f"mbox1.{domain(lab)}"


def _hosts(lab: Any) -> list[Any]:
    hosts = lab.hosts.values() if isinstance(lab.hosts, dict) else lab.hosts
    return sorted(hosts, key=lambda h: h.name)


def _find(lab: Any, site: str | None, suffix: str) -> list[Any]:
    return [h for h in _hosts(lab)
            if h.name.endswith(suffix) and (site is None or h.site == site)]


def _ldap_urls(lab: Any, host: Any) -> list[str]:
    masters = [h for h in _hosts(lab) if "-ldap" in h.name]
    masters.sort(key=lambda h: (h.site != host.site, h.name))
    return [f"ldap://{h.address}/" for h in masters]


def _secret(lab: Any, name: str) -> str | None:
    try:
        return str(lab.secret(name))
    except Exception:  # noqa: BLE001 - a lab without that component: leave the option out
        return None


def standin_config(lab: Any, host: Any) -> dict[str, Any]:
    """The stand-in's configuration for `host` in `lab`."""
    roles = zimbra_roles(host)
    topology = _topology(lab)
    cfg: dict[str, Any] = {
        "hostname": fqdn(host),
        "address": host.address,
        "site": host.site,
        "roles": roles,
        "user": "zimbra",
        "timings": topology.get("zimbra", {}).get("timings", LAB_TIMINGS),
        "start_timeout": 600,
        "stop_timeout": 1800,
        "status_timeout": 180,
        "ldap": {
            "urls": _ldap_urls(lab, host),
            "bind_dn": ADMIN_DN,
            "password": _secret(lab, "ldap_admin_password"),
            "base": SERVERS_OU,
            "attribute": "description",
            "starttls": True,
            "timeout": 5,
        },
    }
    # Zimbra's localconfig as the installer leaves it: pointed at the one master the host
    # was installed against (the seeded first master of the initial active site);
    # site-build points it at every master, its own site's first.
    first = _find(lab, topology.get("active_site", host.site), "-ldap1") or _find(lab, None, "-ldap1")
    cfg["localconfig"] = {"zimbra_server_hostname": fqdn(host)}
    if first:
        cfg["localconfig"]["ldap_url"] = f"ldap://{first[0].address}:389"
        cfg["localconfig"]["ldap_master_url"] = f"ldap://{first[0].address}:389"
    if "mailbox" in roles:
        sproxyd = _find(lab, host.site, "-sproxyd")
        cfg["volumes"] = dict(VOLUMES)
        cfg["lmtp"] = {"port": 7025}
        if sproxyd:
            cfg["store"] = {"type": "sproxyd",
                            "url": f"http://{sproxyd[0].address}:81/proxy/chord"}
        else:
            cfg["store"] = {"type": "directory", "path": "/opt/zimbra/store"}
    if "mta" in roles:
        active = topology.get("active_site", host.site)
        primary = _find(lab, active, "-mbox1") or _find(lab, None, "-mbox1")
        smtp: dict[str, Any] = {
            "port": 25,
            "domains": [domain(lab)],
            "mailhost": mailhost_name(lab),
            "static_hosts": {mailhost_name(lab): primary[0].address} if primary else {},
            "lmtp_port": 7025,
            "retry_interval": 2,
            # Postfix's mynetworks: the sites' own hosts may relay (outgoing mail).
            "mynetworks": [spec["network"] for spec in topology.get("sites", {}).values()
                           if spec.get("network")],
        }
        dns_hosts = [h for h in _hosts(lab) if h.name == "dns"]
        tsig = _secret(lab, "tsig_internal")
        if dns_hosts and tsig:
            smtp["dns"] = {"server": dns_hosts[0].address, "port": 53, "key_name": "k-internal",
                           "key_algorithm": "hmac-sha256", "key_secret": tsig}
        cfg["smtp"] = smtp
    return cfg


def server_entries_ldif(lab: Any) -> str:
    """The directory entries of every Zimbra host (for the seed of the first master)."""
    blocks = [f"dn: {SERVERS_OU}\nobjectClass: organizationalUnit\nou: zimbraServers\n"]
    for host in _hosts(lab):
        roles = zimbra_roles(host)
        if not roles or "-ldap" in host.name:
            continue
        services = sorted({s for r in roles for s in standin_tables.ROLE_SERVICES[r]})
        lines = [f"dn: cn={fqdn(host)},{SERVERS_OU}", "objectClass: device",
                 f"cn: {fqdn(host)}"] + [f"description: {s}" for s in services]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _run(host: Any, argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("check", False)
    return host.run(argv, **kw)


class ZimbraService(Service):
    name = "zimbra"

    @staticmethod
    def directory_entries(lab: Any) -> str:
        """Seeded on the first master with the example directory (see lab.ldap)."""
        return server_entries_ldif(lab)

    def prepare(self, lab: Any, host: Any) -> None:
        """Install the stand-in (user zimbra, /opt/zimbra) with this lab's configuration."""
        cfg = standin_config(lab, host)
        os.makedirs(host.dir, exist_ok=True)
        path = os.path.join(str(host.dir), "zimbra-standin.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(cfg, handle)
        env = dict(os.environ, PYTHONPATH=REPO_ROOT)
        result = _run(host, [sys.executable, "-m", "lab.zimbra.install", "--config", path,
                             "--ca", str(lab.ca.cert_path), "--fresh-cache"], env=env)
        if result.returncode:
            raise RuntimeError(f"zimbra install on {host.name} failed: {result.stderr}")

    def start(self, lab: Any, host: Any) -> None:
        """Make the host ready for Zimbra; start no Zimbra service (the playbooks do)."""
        if not self.running(lab, host):
            self.prepare(lab, host)
        if "mta" in zimbra_roles(host):
            # Postfix's master binds 25 as root; the stand-in runs as zimbra.
            _run(host, ["sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=25"], check=True)
        self._register(lab, host)

    def running(self, lab: Any, host: Any) -> bool:
        """Installed (Zimbra's own services may well be stopped: see check)."""
        return _run(host, ["test", "-x", "/opt/zimbra/bin/zmcontrol"]).returncode == 0

    def _register(self, lab: Any, host: Any) -> None:
        """Best effort: add the host's server entry on the seeded master (dc1-ldap1)."""
        first = [h for h in _hosts(lab) if h.name.endswith("-ldap1") and h.site == "dc1"]
        password = _secret(lab, "ldap_admin_password")
        if not first or not password:
            return
        entries = [b for b in server_entries_ldif(lab).split("\n\n")
                   if b.startswith(f"dn: {SERVERS_OU}") or f"cn={fqdn(host)}," in b]
        with tempfile.NamedTemporaryFile("w", dir=str(host.dir), delete=False) as handle:
            handle.write(password)
            pw_file = handle.name
        # slapd starts (and is seeded) alongside this service: retry until the entries are in
        # (0) or already there (68), for a while; after that the install-time cache serves.
        deadline = time.monotonic() + REGISTER_TIMEOUT
        try:
            while time.monotonic() < deadline:
                try:
                    result = _run(first[0], ["ldapadd", "-c", "-x", "-ZZ", "-H",
                                             f"ldap://{first[0].address}/", "-D", ADMIN_DN,
                                             "-y", pw_file],
                                  input="\n\n".join(entries), timeout=10,
                                  env=dict(os.environ, LDAPTLS_CACERT=str(lab.ca.cert_path)))
                except (OSError, subprocess.SubprocessError):
                    result = None
                if result is not None and result.returncode in (0, 68):
                    return
                time.sleep(0.2)
        finally:
            os.unlink(pw_file)

    def stop(self, lab: Any, host: Any) -> None:
        _run(host, ["/usr/bin/python3", "-m", "zmstandin", "kill-all"],
             env=dict(os.environ, PYTHONPATH=OPT_LIB, ZIMBRA_HOME="/opt/zimbra"))

    def heal(self, lab: Any, host: Any) -> None:
        """Injected start failures cleared (the services stay as they are)."""
        _run(host, ["rm", "-f", FAULTS_FILE])
        super().heal(lab, host)

    @staticmethod
    def fault(lab: Any, args: list[str]) -> int:
        """`lab fault zimbra start-fail HOST [PROCESS [MESSAGE]]`: PROCESS (default mailboxd)
        dies as it starts on HOST, so `zmcontrol start` reports it Failed and exits 1 and
        `zmcontrol status` shows it Stopped, until `lab fault zimbra heal [HOST]`."""
        hosts = {h.name: h for h in _hosts(lab) if zimbra_roles(h)}
        action, rest = (args[0], args[1:]) if args else ("", [])
        if action == "start-fail" and rest and rest[0] in hosts:
            process = rest[1] if len(rest) > 1 else "mailboxd"
            message = rest[2] if len(rest) > 2 else (
                f"{process}: java.net.BindException: Address already in use (injected by the lab)")
            body = json.dumps({"start_failure": {process: message}})
            _run(hosts[rest[0]], ["sh", "-c", f'cat > {FAULTS_FILE}'], input=body, check=True)
            print(f"{process} fails to start on {rest[0]}")
            return 0
        if action == "heal" and all(name in hosts for name in rest):
            for name in rest or sorted(hosts):
                _run(hosts[name], ["rm", "-f", FAULTS_FILE])
            print("zimbra start failures cleared")
            return 0
        print("usage: lab fault zimbra start-fail HOST [PROCESS [MESSAGE]] | heal [HOST...]; "
              f"hosts: {', '.join(sorted(hosts))}", file=sys.stderr)
        return 2

    def check(self, lab: Any, host: Any) -> tuple[bool, str]:
        try:
            result = _run(host, ["su", "-", "zimbra", "-c", "/opt/zimbra/bin/zmcontrol status"],
                          timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, str(exc)
        lines = result.stdout.splitlines()
        if not lines or not lines[0].startswith("Host "):
            return False, (result.stdout + result.stderr).strip()
        states = [line.split()[-1] for line in lines[1:] if line.startswith("\t")
                  and not line.startswith("\t\t")]
        return True, f"zmcontrol answers: {states.count('Running')}/{len(states)} running"

    def reset(self, lab: Any, host: Any) -> None:
        """Every stand-in process killed, queue and logs emptied, reinstalled (fresh cache)."""
        self.stop(lab, host)
        _run(host, ["rm", "-rf", "/opt/zimbra/data/postfix/spool/deferred",
                    "/opt/zimbra/log"])
        self.prepare(lab, host)
        self.start(lab, host)

    def inventory_vars(self, lab: Any, host: Any) -> dict[str, Any]:
        roles = zimbra_roles(host)
        result: dict[str, Any] = {
            "zimbra_geo_zimbra_hostname": fqdn(host),
            "zimbra_geo_zimbra_roles": roles,
        }
        if "mailbox" in roles:
            result["zimbra_geo_zimbra_volumes"] = dict(VOLUMES)
        if getattr(host, "public_address", None):
            # The address the outside world uses (the external DNS view names it).
            result["zimbra_geo_public_address"] = host.public_address
        return result
