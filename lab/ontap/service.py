"""The lab Service of the ONTAP emulator: one cluster per site, on host ``dcN-ontap``.

Each cluster is ``python -m lab.ontap`` on ``<host address>:443`` (HTTPS, lab CA, Basic auth
``admin`` / secret ``ontap_password``), named after its host (``dc1-ontap``) with one SVM
``svm_<site>``. Volumes: a DB and an index volume per mailbox server name found in the
topology (``dc1-mbox1`` and ``dc2-mbox1`` pair up as ``mbox1_db`` / ``mbox1_index``); on the
primary site (``ontap.primary`` in the topology, default ``dc1``) they are ``rw``, on the
other ``dp`` with one relationship each from the primary, ``snapmirrored`` unless the
topology says ``ontap: {initialized: false}``.

Volume data lives on the shared file system under ``<lab dir>/san/<cluster>/<volume>/``; a
mailbox host bind-mounts it (see lab/README.md, "ONTAP emulator"). Every volume carries its LUN
(``/vol/<volume>/lun0``); each mailbox server has an igroup named after it (its IQN,
``iqn.2026-12.test.example:<host>``) with its own volumes' LUNs mapped, on both sites.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.services import Service

REPO_ROOT = str(Path(__file__).resolve().parents[2])
PORT = 443
PROBE = r"""
import base64, json, ssl, sys, urllib.request
url, ca, pw_file, method = sys.argv[1:5]
body = sys.argv[5].encode() if len(sys.argv) > 5 else None
ctx = ssl.create_default_context(cafile=ca)
req = urllib.request.Request(url, data=body, method=method)
req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:" + open(pw_file, "rb").read().strip()).decode())
if body is not None:
    req.add_header("Content-Type", "application/json")
with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:
    print(resp.read().decode())
"""


def _hosts(lab: Any) -> list[Any]:
    hosts = lab.hosts.values() if isinstance(lab.hosts, dict) else lab.hosts
    return sorted(hosts, key=lambda h: h.name)


def _options(lab: Any) -> dict:
    topology = lab.topology if isinstance(getattr(lab, "topology", None), dict) else {}
    return topology.get("ontap", {}) or {}


def ontap_hosts(lab: Any) -> list[Any]:
    return [h for h in _hosts(lab) if h.name.endswith("-ontap")]


def volume_names(lab: Any) -> list[str]:
    """``mbox1_db``, ``mbox1_index``, ... for every mailbox server name of any site."""
    boxes = sorted({h.name.split("-", 1)[1] for h in _hosts(lab) if "-mbox" in h.name and "-" in h.name})
    return [f"{box}_{kind}" for box in boxes for kind in ("db", "index")]


def svm_of(host: Any) -> str:
    return f"svm_{host.site}"


def initiator(host: Any) -> str:
    """The iSCSI initiator name (IQN) of a lab host, as ``/etc/iscsi/initiatorname.iscsi`` has it."""
    return f"iqn.2026-12.test.example:{host.name}"


def san_config(lab: Any, site: str) -> dict:
    """Each mailbox server of the site has an igroup (named after the host, its IQN) with its own
    volumes' LUNs mapped: on the standby site too, read-only until the break, as a DR setup maps
    the destination LUNs ahead so that a failover only needs the host's rescan."""
    boxes = [h for h in _hosts(lab) if h.site == site and "-mbox" in h.name]
    return {
        "igroups": [{"name": h.name, "protocol": "iscsi", "os_type": "linux", "initiators": [initiator(h)]}
                    for h in boxes],
        "lun_maps": [{"lun": f"/vol/{h.name.split('-', 1)[1]}_{kind}/lun0", "igroup": h.name}
                     for h in boxes for kind in ("db", "index")],
    }


def cluster_config(lab: Any, host: Any) -> dict:
    opts = _options(lab)
    primary = opts.get("primary", "dc1")
    vols = volume_names(lab)
    if host.site == primary:
        return {"volumes": [{"name": v, "type": "rw"} for v in vols], "latencies": opts.get("latencies", {}),
                **san_config(lab, host.site)}
    state = "snapmirrored" if opts.get("initialized", True) else "uninitialized"
    return {
        "volumes": [{"name": v, "type": "dp"} for v in vols],
        "latencies": opts.get("latencies", {}),
        "relationships": [
            {"source": f"svm_{primary}:{v}", "destination": f"{svm_of(host)}:{v}", "state": state} for v in vols
        ],
        **san_config(lab, host.site),
    }


def san_dir(lab: Any) -> Path:
    return Path(str(lab.dir)) / "san"


class OntapService(Service):
    name = "ontap"
    port = PORT

    def _paths(self, host: Any) -> dict[str, Path]:
        d = Path(str(host.dir))
        return {"state": d / "ontap", "config": d / "ontap-config.json", "password": d / "ontap-password"}

    def start(self, lab: Any, host: Any) -> None:
        paths = self._paths(host)
        paths["state"].mkdir(parents=True, exist_ok=True)
        fd = os.open(paths["password"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(lab.secret("ontap_password")))
        paths["config"].write_text(json.dumps(cluster_config(lab, host), indent=1))
        cert, key = lab.ca.issue(host.name, [host.address], [host.name, f"{host.name}.example.test"])
        argv = [
            "env",
            f"PYTHONPATH={REPO_ROOT}",
            sys.executable,
            "-m",
            "lab.ontap",
            "--listen",
            f"{host.address}:{PORT}",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--state-dir",
            str(paths["state"]),
            "--cluster-name",
            host.name,
            "--svm",
            svm_of(host),
            "--password-file",
            str(paths["password"]),
            "--config",
            str(paths["config"]),
            "--san-dir",
            str(san_dir(lab)),
            "--ca",
            str(lab.ca.cert_path),
        ]
        for other in ontap_hosts(lab):
            if other.name != host.name:
                argv += ["--peer", f"{svm_of(other)}=https://{other.address}:{PORT}"]
        host.spawn(argv, self.name)
        deadline = time.monotonic() + 15
        while True:
            ok, detail = self.check(lab, host)
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ONTAP emulator on {host.name} did not answer: {detail}")
            time.sleep(0.1)

    def _admin(self, lab: Any, host: Any, method: str, path: str, body: dict | None = None) -> str:
        argv = [
            sys.executable,
            "-c",
            PROBE,
            f"https://{host.address}:{PORT}/x-lab/{path}",
            str(lab.ca.cert_path),
            str(self._paths(host)["password"]),
            method,
        ]
        if body is not None:
            argv.append(json.dumps(body))
        res = host.run(argv, check=False, capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError((res.stderr or "").strip().splitlines()[-1:] or "probe failed")
        return res.stdout

    def check(self, lab: Any, host: Any) -> tuple[bool, str]:
        try:
            out = json.loads(self._admin(lab, host, "GET", "health"))
        except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
            return False, f"no answer on https://{host.address}:{PORT}: {exc}"
        return True, f"cluster {out.get('cluster')} (SVM {out.get('svm')}) on https://{host.address}:{PORT}"

    def stop(self, lab: Any, host: Any) -> None:
        host.kill(self.name)
        # dp volumes are immutable (chattr +i): lift that so the lab directory can be removed.
        subprocess.run(["chattr", "-R", "-f", "-i", str(san_dir(lab) / host.name)], capture_output=True, check=False)

    def reset(self, lab: Any, host: Any) -> None:
        """Faults healed, latencies and relationships as configured, volume data wiped."""
        self._admin(lab, host, "POST", "reset")

    def inventory_vars(self, lab: Any, host: Any) -> dict:
        """The same global view from every ONTAP host (so merging order does not matter)."""
        clusters = {
            h.site: {
                "hostname": h.address,
                "port": PORT,
                "cluster": h.name,
                "svm": svm_of(h),
                "data_dir": str(san_dir(lab) / h.name),
            }
            for h in ontap_hosts(lab)
        }
        vols = volume_names(lab)
        return {
            "zimbra_geo_ontap_username": "admin",
            "zimbra_geo_ontap_password": str(lab.secret("ontap_password")),
            "zimbra_geo_ontap_clusters": clusters,
            "zimbra_geo_ontap_primary_site": _options(lab).get("primary", "dc1"),
            "zimbra_geo_ontap_volumes": {
                v.rsplit("_", 1)[0]: {"db": f"{v.rsplit('_', 1)[0]}_db", "index": f"{v.rsplit('_', 1)[0]}_index"}
                for v in vols
            },
        }
