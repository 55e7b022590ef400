"""The lab Services of the Scality emulator.

* ``scality_sproxyd`` on each ``dcN-sproxyd`` host: ``python -m lab.scality --role sproxyd`` on
  ``<host address>:81`` (plain HTTP, as sproxyd), holding that site's storage nodes; its peer
  is every other site's sproxyd host.
* ``scality_supervisor`` on ``dc1-supervisor``: ``python -m lab.scality --role supervisor`` on
  ``<host address>:443`` (HTTPS with a lab CA certificate, Basic auth ``supervisor`` / secret
  ``scality_password``), zone = the host's site, reading every site's sproxyd host.

All of them share ``<lab dir>/scality/`` (objects, the fault file, the Supervisor's layout
cache). Faults: ``python -m lab.scality fault --state-dir <lab dir>/scality ...``; a real
``lab fault cut-site`` works on its own (the Supervisor and the peer site stop reaching the
cut site's sproxyd host).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.scality.faults import FaultStore
from lab.services import Service

if TYPE_CHECKING:
    from lab.core import Host, Lab

REPO_ROOT = str(Path(__file__).resolve().parents[2])
SPROXYD_PORT = 81
SUPERVISOR_PORT = 443
ALIAS = "chord"
RING = "DATA"
REPLICATION_CLASS = 3
USERNAME = "supervisor"

# Runs inside a lab host: one HTTP exchange with the lab CA, prints "<status> <body>".
PROBE = r"""
import base64, ssl, sys, urllib.error, urllib.request
url, method, ca, pw_file = sys.argv[1:5]
req = urllib.request.Request(url, method=method)
if pw_file != "-":
    token = base64.b64encode(b"supervisor:" + open(pw_file, "rb").read().strip()).decode()
    req.add_header("Authorization", "Basic " + token)
ctx = ssl.create_default_context(cafile=ca) if url.startswith("https") else None
try:
    with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:
        print(resp.status, resp.read().decode(errors="replace")[:200])
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode(errors="replace")[:200])
"""


def state_dir(lab: Lab) -> Path:
    return Path(str(lab.dir)) / "scality"


def sproxyd_hosts(lab: Lab) -> list[Host]:
    return sorted((h for h in lab.hosts.values() if "scality_sproxyd" in h.services), key=lambda h: h.site)


def _probe(lab: Lab, host: Host, url: str, method: str = "GET", password_file: str = "-") -> tuple[int, str]:
    res = host.run(
        [sys.executable, "-c", PROBE, url, method, str(lab.ca.cert_path), password_file],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    if res.returncode != 0:
        raise RuntimeError(((res.stderr or "").strip().splitlines() or ["probe failed"])[-1])
    status, _sep, body = res.stdout.strip().partition(" ")
    return int(status), body


def _python(lab: Lab) -> list[str]:
    return ["env", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", "lab.scality", "--state-dir", str(state_dir(lab))]


class SproxydService(Service):
    """One site's sproxyd connector and storage nodes."""

    name = "scality_sproxyd"
    port = SPROXYD_PORT

    def start(self, lab: Lab, host: Host) -> None:
        state_dir(lab).mkdir(parents=True, exist_ok=True)
        argv = [
            *_python(lab),
            "--role=sproxyd",
            f"--site-name={host.site}",
            f"--listen={host.address}:{SPROXYD_PORT}",
            f"--alias={ALIAS}",
            f"--ring={RING}",
            "--quiet",
        ]
        for other in sproxyd_hosts(lab):
            if other.name != host.name:
                argv.append(f"--peer={other.site}=http://{other.address}:{SPROXYD_PORT}")
        host.spawn(argv, self.name)
        host.wait_port(SPROXYD_PORT, "sproxyd")

    def check(self, lab: Lab, host: Host) -> tuple[bool, str]:
        if not self.running(lab, host):
            return False, "not running"
        url = f"http://{host.address}:{SPROXYD_PORT}/proxy/{ALIAS}/.conf"
        try:
            status, body = _probe(lab, host, url)
        except (RuntimeError, OSError, ValueError) as exc:
            return False, f"no answer on {url}: {exc}"
        return status == 200, f"{url} answers {status}" + ("" if status == 200 else f": {body.strip()}")

    def heal(self, lab: Lab, host: Host) -> None:
        """Emulated faults cleared (the objects stay), the process started if it was stopped."""
        FaultStore(state_dir(lab)).heal()
        super().heal(lab, host)

    @staticmethod
    def fault(lab: Lab, args: list[str]) -> int:
        """`lab fault scality ACTION ARGS`: the emulator's own fault switchboard."""
        import subprocess

        return subprocess.call([*_python(lab)[:-2], "fault", "--state-dir", str(state_dir(lab)), *args])

    def reset(self, lab: Lab, host: Host) -> None:
        """Faults healed, the site's objects wiped."""
        FaultStore(state_dir(lab)).heal()
        if not self.running(lab, host):
            self.start(lab, host)
        status, body = _probe(lab, host, f"http://{host.address}:{SPROXYD_PORT}/x-lab/reset", "POST")
        if status != 204:
            raise RuntimeError(f"sproxyd reset on {host.name}: {status} {body}")

    def inventory_vars(self, lab: Lab, host: Host) -> dict[str, Any]:
        """The same list from every sproxyd host, so the merge order does not matter."""
        return {
            "zimbra_geo_scality_sproxyd": [
                {"site": h.site, "url": f"http://{h.address}:{SPROXYD_PORT}/proxy/{ALIAS}"} for h in sproxyd_hosts(lab)
            ],
            "zimbra_geo_scality_ring": RING,
            "zimbra_geo_scality_replication_class": REPLICATION_CLASS,
        }


class SupervisorService(Service):
    """The Supervisor REST API."""

    name = "scality_supervisor"
    port = SUPERVISOR_PORT

    def _password_file(self, host: Host) -> Path:
        return Path(str(host.dir)) / "scality-password"

    def start(self, lab: Lab, host: Host) -> None:
        state_dir(lab).mkdir(parents=True, exist_ok=True)
        Path(str(host.dir)).mkdir(parents=True, exist_ok=True)
        fd = os.open(self._password_file(host), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(lab.secret("scality_password"))
        cert, key = lab.ca.issue(host.name, [host.address], [host.name, f"{host.name}.{lab.topology['domain']}"])
        argv = [
            *_python(lab),
            "--role=supervisor",
            f"--listen={host.address}:{SUPERVISOR_PORT}",
            f"--cert={cert}",
            f"--key={key}",
            f"--password-file={self._password_file(host)}",
            f"--username={USERNAME}",
            f"--zone={host.site}",
            f"--ring={RING}",
            "--quiet",
        ]
        argv += [f"--site={h.site}=http://{h.address}:{SPROXYD_PORT}" for h in sproxyd_hosts(lab)]
        host.spawn(argv, self.name)
        host.wait_port(SUPERVISOR_PORT, "Supervisor")

    def check(self, lab: Lab, host: Host) -> tuple[bool, str]:
        if not self.running(lab, host):
            return False, "not running"
        url = f"https://{host.address}:{SUPERVISOR_PORT}/api/v0.1/status/"
        try:
            status, body = _probe(lab, host, url, password_file=str(self._password_file(host)))
        except (RuntimeError, OSError, ValueError) as exc:
            return False, f"no answer on {url}: {exc}"
        if status != 200:
            return False, f"{url} answers {status}: {body.strip()}"
        try:
            supv2 = json.loads(body).get("supv2_status")
        except ValueError:
            supv2 = "?"
        return supv2 == "Running", f"{url}: supv2_status {supv2}"

    def reset(self, lab: Lab, host: Host) -> None:
        FaultStore(state_dir(lab)).heal()
        if not self.running(lab, host):
            self.start(lab, host)

    def inventory_vars(self, lab: Lab, host: Host) -> dict[str, Any]:
        return {
            "zimbra_geo_scality_supervisor_url": f"https://{host.address}:{SUPERVISOR_PORT}",
            "zimbra_geo_scality_supervisor_username": USERNAME,
            "zimbra_geo_scality_supervisor_password": lab.secret("scality_password"),
            "zimbra_geo_scality_supervisor_site": host.site,
        }
