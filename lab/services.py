"""Lab services: what runs on a host, how it starts, stops, answers and resets.

A service is listed by name under a host's ``services:`` in topology.yml and registered
here as ``"name": "module:Class"`` (imported lazily, so each component keeps its own module).
"""

from __future__ import annotations

import importlib
import subprocess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.core import Host, Lab

REGISTRY: dict[str, str] = {
    "sshd": "lab.services:Sshd",
    "slapd": "lab.ldap:Slapd",
    "named": "lab.dns:Named",
    "zimbra": "lab.zimbra.service:ZimbraService",
    "scality_sproxyd": "lab.scality.service:SproxydService",
    "scality_supervisor": "lab.scality.service:SupervisorService",
    "ontap": "lab.ontap.service:OntapService",
    "smtp_sink": "lab.smtp_sink:SmtpSink",
}


class Service:
    name = "service"
    port: int | None = None

    def prepare(self, lab: "Lab", host: "Host") -> None:
        """Write configuration and data; runs once per `lab up` before start."""

    def start(self, lab: "Lab", host: "Host") -> None:
        raise NotImplementedError

    def stop(self, lab: "Lab", host: "Host") -> None:
        host.kill(self.name)

    def running(self, lab: "Lab", host: "Host") -> bool:
        return host.pid(self.name) is not None

    def check(self, lab: "Lab", host: "Host") -> tuple[bool, str]:
        if not self.running(lab, host):
            return False, "not running"
        if self.port is not None and not host.answers(self.port):
            return False, f"no answer on {host.address}:{self.port}"
        return True, f"answers on {host.address}:{self.port}" if self.port else "running"

    def heal(self, lab: "Lab", host: "Host") -> None:
        """Clear this service's faults (default: start it if it was stopped)."""
        if not self.running(lab, host):
            self.start(lab, host)

    def reset(self, lab: "Lab", host: "Host") -> None:
        """Back to the initial state (default: restart if it was stopped)."""
        if not self.running(lab, host):
            self.start(lab, host)

    def inventory_vars(self, lab: "Lab", host: "Host") -> dict[str, Any]:
        return {}


def get(name: str) -> Service:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown lab service {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


class Sshd(Service):
    """OpenSSH, so Ansible reaches the host over real SSH."""

    name = "sshd"
    port = 22

    def prepare(self, lab: "Lab", host: "Host") -> None:
        key = host.dir / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(key)], check=True
            )
        (host.dir / "sshd_config").write_text(
            f"""# lab host {host.name}
ListenAddress {host.address}:22
HostKey {key}
PidFile none
AuthorizedKeysFile {lab.dir / 'ssh' / 'authorized_keys'} .ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""
        )

    def start(self, lab: "Lab", host: "Host") -> None:
        host.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", str(host.dir / "sshd_config")], self.name)
        host.wait_port(22, "sshd")

    @staticmethod
    def host_key(host: "Host") -> str:
        """The host's public key as ``type base64`` (for known_hosts)."""
        return " ".join((host.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
