"""The lab's hosts and network: Linux namespaces joined by routed veth links.

Layout (one lab, named ``zg`` unless told otherwise):

- ``<name>-ctl``: the controller's network namespace. It routes between the core segment
  (hosts linked straight to it, such as ``dns``) and one uplink per site.
- ``<name>-rt-<site>``: a site's router. Each host of the site has a veth link to it; the
  site's uplink to the controller is one veth pair, which ``cut-site`` takes down so the
  site's hosts still reach each other and nothing else.
- ``<name>-<host>``: a host's network namespace, plus a persistent mount and UTS namespace
  bound under ``<state>/ns/``, with private ``/etc/hosts``, ``resolv.conf``, ``fstab``,
  ``passwd``/``group``/``shadow`` (and ``sudoers``), a tmpfs ``/run`` and a private ``/opt/zimbra``.
  Besides root, each host has the operator account ``zimbra-geo-ops`` (the example
  inventory's SSH user): the lab's key logs it in, and ``sudo`` gives it root without a
  password, as a platform's automation account usually has.

Every address is 127.x.y.z with ``route_localnet=1`` inside the namespaces; linux marks such
addresses host-scoped, so they are added with ``scope global`` and routes carry ``src``.
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from lab.ca import CertificateAuthority

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NAME = "zg"
STATE_ROOT = Path(os.environ.get("ZG_LAB_DIR", "/var/lib/zglab"))
CLONE_NEWNET = 0x40000000
# The non-root SSH account of every lab host (inventories/example names the same one).
OPERATOR_USER = "zimbra-geo-ops"
OPERATOR_UID = 4991
OPERATOR_HOME = Path("/home") / OPERATOR_USER  # bound to the host's own directory

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(Exception):
    """Anything the lab cannot do, with a message for the operator."""


def sh(argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(argv, **kwargs)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or '').strip()}")
    return proc


def enter_netns(ns: str) -> None:
    """Move the calling thread into network namespace ``ns`` (setns(2) is per thread)."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        enter_netns_fd(fd)
    finally:
        os.close(fd)


def enter_netns_fd(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise LabError(f"setns: {os.strerror(ctypes.get_errno())}")


def in_netns(ns: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread that lives in network namespace ``ns``; return its result."""
    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            enter_netns(ns)
            result["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def tcp_answers(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclasses.dataclass
class Host:
    lab: "Lab"
    name: str
    site: str  # "core" for hosts linked straight to the controller
    address: str
    roles: list[str]
    services: list[str]
    public_address: str | None = None

    @property
    def netns(self) -> str:
        return f"{self.lab.name}-{self.name}"

    @property
    def dir(self) -> Path:
        return self.lab.dir / "hosts" / self.name

    @property
    def mnt_ns(self) -> Path:
        return self.lab.dir / "ns" / f"{self.name}.mnt"

    @property
    def uts_ns(self) -> Path:
        return self.lab.dir / "ns" / f"{self.name}.uts"

    @property
    def gateway(self) -> str:
        return self.lab.controller_address if self.site == "core" else self.lab.site_router(self.site)

    def nsenter(self) -> list[str]:
        return [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            f"--mount={self.mnt_ns}",
            f"--uts={self.uts_ns}",
            "--",
        ]

    def run(self, argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside this host's namespaces."""
        return sh(self.nsenter() + argv, check=check, **kwargs)

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> int:
        """Start a daemon (in the foreground sense) inside the host; its pid goes to a file."""
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            self.nsenter() + argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd="/",
        )
        log.close()
        (self.dir / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        # A zombie of ours counts as gone.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        return None if state == "Z" else pid

    def kill(self, name: str, timeout: float = 10.0) -> None:
        pid = self.pid(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            if self.pid(name) is None:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        (self.dir / f"{name}.pid").unlink(missing_ok=True)

    def answers(self, port: int, timeout: float = 1.0) -> bool:
        """Does this host answer on TCP ``port``, seen from the controller?"""
        return in_netns(self.lab.ctl_ns, lambda: tcp_answers(self.address, port, timeout))

    def wait_port(self, port: int, what: str, timeout: float = 20.0) -> None:
        def poll() -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if tcp_answers(self.address, port, 0.5):
                    return True
                time.sleep(0.05)
            return False

        if not in_netns(self.lab.ctl_ns, poll):
            raise LabError(f"{what} on {self.name} ({self.address}:{port}) did not answer within {timeout:.0f} s")


class Lab:
    def __init__(self, name: str = DEFAULT_NAME, topology_path: Path | None = None,
                 topology: dict[str, Any] | None = None) -> None:
        """The lab `name`. Its topology: `topology` if given (what `lab up` builds), else the
        one a running lab was built from (saved at `up`: profile, size), else the file's."""
        from lab import profiles

        if not name.replace("-", "").isalnum() or len(name) > 8:
            raise LabError("a lab name is at most 8 letters, digits or dashes")
        self.name = name
        self.dir = STATE_ROOT / name
        saved = self.dir / "topology.yml"
        if topology_path is None and topology is None and saved.is_file():
            topology_path = saved
        self.topology_path = topology_path or Path(__file__).with_name("topology.yml")
        if topology is None:
            topology = profiles.resolve(yaml.safe_load(self.topology_path.read_text()))
        self.topology: dict[str, Any] = topology
        self.ca = CertificateAuthority(self.dir / "ca")
        self.hosts: dict[str, Host] = {}
        self._secrets: dict[str, str] | None = None
        self._secrets_lock = threading.Lock()
        self._plan_hosts()

    # ----------------------------------------------------------------- topology
    @property
    def ctl_ns(self) -> str:
        return f"{self.name}-ctl"

    @property
    def controller_address(self) -> str:
        return self.topology["controller"]["address"]

    @property
    def sites(self) -> list[str]:
        return list(self.topology["sites"])

    def site_router(self, site: str) -> str:
        return self.topology["sites"][site]["router"]

    def router_ns(self, site: str) -> str:
        return f"{self.name}-rt-{site}"

    def _plan_hosts(self) -> None:
        for hname, spec in self.topology["core"]["hosts"].items():
            self.hosts[hname] = Host(self, hname, "core", spec["address"], spec["roles"], spec["services"])
        for site, sspec in self.topology["sites"].items():
            net = ipaddress.ip_network(sspec["network"])
            pub = ipaddress.ip_network(sspec["public_network"])
            plan = dict(self.topology["site_hosts"])
            plan.update(self.topology.get("single_site_hosts", {}).get(site, {}))
            for suffix, spec in plan.items():
                if "{n}" in suffix:
                    # 1-9 from `octet`, 10 and up from `more_from` (clear of the other hosts).
                    names = [
                        (suffix.replace("{n}", str(i)),
                         spec["octet"] + i if i < 10 else spec.get("more_from", spec["octet"]) + i)
                        for i in range(1, int(sspec.get("mailbox_servers", 1)) + 1)
                    ]
                else:
                    names = [(suffix, spec["octet"])]
                for short, octet in names:
                    hname = f"{site}-{short}"
                    self.hosts[hname] = Host(
                        self,
                        hname,
                        site,
                        str(net.network_address + octet),
                        list(spec["roles"]),
                        list(spec["services"]),
                        public_address=str(pub.network_address + octet),
                    )

    def hosts_with(self, role: str, site: str | None = None) -> list[Host]:
        return [h for h in self.hosts.values() if role in h.roles and (site is None or h.site == site)]

    def ssh_hosts(self) -> list[Host]:
        return [h for h in self.hosts.values() if "sshd" in h.services]

    # ------------------------------------------------------------------ secrets
    def secret(self, name: str) -> str:
        """A secret of this lab, made the first time it is asked for and kept in secrets.json."""
        with self._secrets_lock:
            path = self.dir / "secrets.json"
            if self._secrets is None:
                self._secrets = json.loads(path.read_text()) if path.exists() else {}
            if name not in self._secrets:
                # TSIG secrets are base64 key material; the rest are passwords.
                self._secrets[name] = (
                    base64.b64encode(secrets.token_bytes(32)).decode()
                    if name.startswith("tsig_")
                    else secrets.token_urlsafe(18)
                )
                self.dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self._secrets, indent=2))
                tmp.chmod(0o600)
                tmp.replace(path)  # readers never see a half-written file
            return self._secrets[name]

    def secrets(self) -> dict[str, str]:
        self.secret("ssh")  # make sure the file exists
        return dict(self._secrets or {})

    # ------------------------------------------------------------------- checks
    def exists(self) -> bool:
        return bool(self.namespaces()) or self.dir.exists()

    def namespaces(self) -> list[str]:
        out = sh(["ip", "netns", "list"], check=False).stdout
        prefix = f"{self.name}-"
        return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(prefix)]

    def ctl_run(self, argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        return sh(["ip", "netns", "exec", self.ctl_ns] + argv, check=check, **kwargs)

    # --------------------------------------------------------------- up / down
    def create_network(self) -> None:
        for ns in [self.ctl_ns] + [self.router_ns(s) for s in self.sites] + [h.netns for h in self.hosts.values()]:
            self._new_netns(ns)
        sh(["ip", "-n", self.ctl_ns, "addr", "add", f"{self.controller_address}/32", "dev", "lo", "scope", "global"])
        for site in self.sites:
            rt = self.router_ns(site)
            gw = self.site_router(site)
            sh(["ip", "-n", rt, "addr", "add", f"{gw}/32", "dev", "lo", "scope", "global"])
            uplink = f"up-{site}"
            sh(["ip", "-n", self.ctl_ns, "link", "add", uplink, "type", "veth", "peer", "name", "uplink", "netns", rt])
            sh(["ip", "-n", rt, "link", "set", "uplink", "up"])
            self.set_site_link(site, True)
        for host in self.hosts.values():
            if host.site == "core":
                link_ns, link = self.ctl_ns, f"h-{host.name}"[:15]
            else:
                link_ns, link = self.router_ns(host.site), f"h{host.address.rsplit('.', 1)[1]}"
            sh(["ip", "-n", link_ns, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
            sh(["ip", "-n", link_ns, "link", "set", link, "up"])
            sh(["ip", "-n", link_ns, "route", "add", f"{host.address}/32", "dev", link])
            sh(["ip", "-n", host.netns, "addr", "add", f"{host.address}/32", "dev", "eth0", "scope", "global"])
            sh(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
            sh(["ip", "-n", host.netns, "route", "add", "default", "via", host.gateway, "dev", "eth0", "onlink",
                "src", host.address])

    def _new_netns(self, ns: str) -> None:
        sh(["ip", "netns", "add", ns])
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw",
            "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.default.route_localnet=1",
            "net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        # 127.0.0.0/8 on lo would make every lab address local: keep only 127.0.0.1.
        sh(["ip", "-n", ns, "addr", "del", "127.0.0.1/8", "dev", "lo"])
        sh(["ip", "-n", ns, "addr", "add", "127.0.0.1/32", "dev", "lo"])

    def create_host_filesystems(self) -> None:
        nsdir = self.dir / "ns"
        nsdir.mkdir(parents=True, exist_ok=True)
        # Namespace files can only be bound on a private mount.
        if sh(["findmnt", "-n", str(nsdir)], check=False).returncode != 0:
            sh(["mount", "--bind", str(nsdir), str(nsdir)])
            sh(["mount", "--make-private", str(nsdir)])
        Path("/opt/zimbra").mkdir(parents=True, exist_ok=True)
        OPERATOR_HOME.mkdir(parents=True, exist_ok=True)  # a mount point; each host binds its own
        hosts_file = self.etc_hosts()
        for host in self.hosts.values():
            etc = host.dir / "etc"
            etc.mkdir(parents=True, exist_ok=True)
            (host.dir / "opt-zimbra").mkdir(exist_ok=True)
            (etc / "hosts").write_text(hosts_file)
            (etc / "resolv.conf").write_text("# lab host: names come from /etc/hosts\noptions timeout:1 attempts:1\n")
            (etc / "fstab").write_text("# lab host's private fstab\n")
            for f in ("passwd", "group", "shadow"):
                shutil.copy2(f"/etc/{f}", etc / f)
            self._private_root_home(host, etc / "passwd")
            private = ["hosts", "resolv.conf", "fstab", "passwd", "group", "shadow"]
            if self._operator_account(host, etc):
                private.append("sudoers")
            host.mnt_ns.touch()
            host.uts_ns.touch()
            binds = " && ".join(f"mount --bind {etc / f} /etc/{f}" for f in private)
            script = (
                f"umount -l {nsdir} && "
                "mount -t sysfs sysfs /sys && "
                f"{binds} && "
                "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/sshd /run/slapd /run/lock && "
                f"mount --bind {host.dir / 'opt-zimbra'} /opt/zimbra && "
                f"mount --bind {host.dir / 'ops-home'} {OPERATOR_HOME} && "
                f"hostname {host.name}"
            )
            sh(["nsenter", f"--net=/run/netns/{host.netns}", "unshare", f"--mount={host.mnt_ns}",
                f"--uts={host.uts_ns}", "--propagation", "private", "sh", "-c", script])

    def _operator_account(self, host: Host, etc: Path) -> bool:
        """The non-root operator account: user, group and home in the host's private files,
        and a private ``/etc/sudoers`` (the machine's, plus the account with NOPASSWD) that
        logs to the host's directory. False where the machine has no sudo."""
        from lab.zimbra.install import add_user

        home = host.dir / "ops-home"
        (home / ".ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        for name in (".bashrc", ".profile"):
            skel = Path("/etc/skel") / name
            (home / name).write_text(skel.read_text() if skel.is_file() else "")
        # The lab's key, in the account's own authorized_keys (sshd reads it as the account).
        keys = self.dir / "ssh" / "authorized_keys"
        (home / ".ssh" / "authorized_keys").write_text(keys.read_text() if keys.is_file() else "")
        # "*": no password to log in with, but not locked, so the key logs it in.
        add_user(str(etc), OPERATOR_USER, OPERATOR_UID, OPERATOR_UID, str(OPERATOR_HOME),
                 gecos="zimbra_geo automation", password="*")
        for path in (home, *home.rglob("*")):
            os.chown(path, OPERATOR_UID, OPERATOR_UID)
        machine = Path("/etc/sudoers")
        if not machine.is_file() or not shutil.which("sudo"):
            return False
        sudoers = etc / "sudoers"
        sudoers.write_text(
            machine.read_text()
            + f"\n# lab host {host.name}: the operator account becomes root; every command is logged here.\n"
            + f"Defaults logfile={host.dir / 'sudo.log'}\n"
            + f"{OPERATOR_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
        )
        sudoers.chmod(0o440)
        return True

    @staticmethod
    def _private_root_home(host: Host, passwd: Path) -> None:
        """Root's home on the host: its own directory with Debian's default dotfiles, as on a
        freshly installed server, not the home of whoever runs the lab (whose shell start-up,
        a version manager's for instance, would then run in every SSH session of the lab)."""
        home = host.dir / "root-home"
        home.mkdir(mode=0o700, exist_ok=True)
        for name in (".bashrc", ".profile"):
            skel = Path("/etc/skel") / name
            (home / name).write_text(skel.read_text() if skel.is_file() else "")
        lines = passwd.read_text().splitlines()
        for i, line in enumerate(lines):
            fields = line.split(":")
            if fields[0] == "root" and len(fields) == 7:
                fields[5] = str(home)
                lines[i] = ":".join(fields)
        passwd.write_text("\n".join(lines) + "\n")

    def etc_hosts(self) -> str:
        domain = self.topology["domain"]
        lines = ["127.0.0.1 localhost"]
        for h in self.hosts.values():
            lines.append(f"{h.address} {h.name}.{domain} {h.name}")
        lines.append(f"{self.controller_address} controller.{domain} controller")
        return "\n".join(lines) + "\n"

    def teardown(self) -> list[str]:
        """Kill every process of this lab, unmount, delete its namespaces and state.

        Works on whatever is left, whether the lab came fully up or not. Returns notes.
        """
        notes: list[str] = []
        namespaces = self.namespaces()
        for _ in range(3):
            pids: set[int] = set()
            for ns in namespaces:
                out = sh(["ip", "netns", "pids", ns], check=False).stdout
                pids.update(int(p) for p in out.split())
            pids |= self._pids_in_mount_namespaces()
            pids.discard(os.getpid())
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        nsdir = self.dir / "ns"
        if nsdir.exists():
            for f in nsdir.iterdir():
                sh(["umount", str(f)], check=False)
            while sh(["findmnt", "-n", str(nsdir)], check=False).returncode == 0:
                if sh(["umount", str(nsdir)], check=False).returncode != 0:
                    notes.append(f"could not unmount {nsdir}")
                    break
        for ns in namespaces:
            proc = sh(["ip", "netns", "delete", ns], check=False)
            if proc.returncode != 0:
                notes.append(f"could not delete namespace {ns}: {proc.stderr.strip()}")
        if self.dir.exists():
            # Volumes may carry the immutable flag (read-only SnapMirror destinations).
            sh(["chattr", "-R", "-i", str(self.dir)], check=False)
            shutil.rmtree(self.dir, ignore_errors=True)
        return notes

    def _pids_in_mount_namespaces(self) -> set[int]:
        """Processes that entered a host's mount namespace but not its network one."""
        nsdir = self.dir / "ns"
        if not nsdir.exists():
            return set()
        inodes = set()
        for f in nsdir.glob("*.mnt"):
            try:
                inodes.add(os.stat(f).st_ino)
            except OSError:
                pass
        found: set[int] = set()
        if not inodes:
            return found
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.stat(entry / "ns" / "mnt").st_ino in inodes:
                        found.add(int(entry.name))
                except OSError:
                    continue
        return found

    # ------------------------------------------------------------- faults
    def set_site_link(self, site: str, up: bool) -> None:
        if site not in self.sites:
            raise LabError(f"unknown site {site!r}; the lab has {', '.join(self.sites)}")
        uplink, rt, gw = f"up-{site}", self.router_ns(site), self.site_router(site)
        sh(["ip", "-n", self.ctl_ns, "link", "set", uplink, "up" if up else "down"])
        if up:
            # Taking a link down drops the routes through it: put them back.
            net = self.topology["sites"][site]["network"]
            sh(["ip", "-n", self.ctl_ns, "route", "replace", net, "via", gw, "dev", uplink, "onlink"])
            sh(["ip", "-n", rt, "route", "replace", "default", "via", self.controller_address, "dev", "uplink",
                "onlink", "src", gw])

    def set_host_link(self, host: Host, up: bool) -> None:
        sh(["ip", "-n", host.netns, "link", "set", "eth0", "up" if up else "down"])
        if up:
            # Bringing the link up again drops the default route with it: restore it.
            sh(["ip", "-n", host.netns, "route", "replace", "default", "via", host.gateway, "dev", "eth0",
                "onlink", "src", host.address])

    def site_link_up(self, site: str) -> bool:
        out = sh(["ip", "-n", self.ctl_ns, "-o", "link", "show", f"up-{site}"], check=False).stdout
        return ",UP" in out or "<UP" in out

    def host_link_up(self, host: Host) -> bool:
        out = sh(["ip", "-n", host.netns, "-o", "link", "show", "eth0"], check=False).stdout
        return ",UP" in out or "<UP" in out
