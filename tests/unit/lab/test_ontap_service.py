"""The ONTAP lab Service with stand-in Lab/Host objects on 127.0.0.1 (no namespaces)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.ontap import service as svc
from lab.ontap.testing import free_port, make_ca_and_cert


class FakeHost:
    def __init__(self, name: str, site: str, root: Path) -> None:
        self.name, self.site, self.address = name, site, "127.0.0.1"
        self.roles: list[str] = []
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        check = kw.pop("check", False)
        return subprocess.run(argv, check=check, **kw)

    def spawn(self, argv: list[str], name: str) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


class FakeCA:
    def __init__(self, root: Path) -> None:
        self.cert_path, self._cert, self._key = make_ca_and_cert(root / "ca")

    def issue(self, name: str, ips: list[str], dns_names: list[str]) -> tuple[Path, Path]:
        return self._cert, self._key


class FakeLab:
    def __init__(self, root: Path) -> None:
        self.dir = root
        self.topology = {"ontap": {"latencies": {"job_start": 0.01, "transition": 0.05, "transfer_min": 0.05}}}
        self.ca = FakeCA(root)
        self.hosts = {
            h.name: h
            for h in (
                FakeHost("dc1-ontap", "dc1", root),
                FakeHost("dc2-ontap", "dc2", root),
                FakeHost("dc1-mbox1", "dc1", root),
                FakeHost("dc2-mbox1", "dc2", root),
            )
        }

    def secret(self, name: str) -> str:
        return "pw-" + name


@pytest.fixture
def lab(tmp_path: Path):
    lab = FakeLab(tmp_path)
    yield lab
    for host in lab.hosts.values():
        for name in list(host.procs):
            host.kill(name)


def test_config_and_inventory(lab: FakeLab) -> None:
    dc2 = lab.hosts["dc2-ontap"]
    cfg = svc.cluster_config(lab, dc2)
    assert [v["name"] for v in cfg["volumes"]] == ["mbox1_db", "mbox1_index"]
    assert {v["type"] for v in cfg["volumes"]} == {"dp"}
    assert cfg["relationships"][0] == {
        "source": "svm_dc1:mbox1_db",
        "destination": "svm_dc2:mbox1_db",
        "state": "snapmirrored",
    }
    assert "relationships" not in svc.cluster_config(lab, lab.hosts["dc1-ontap"])
    # Each site's mailbox server has its igroup, its own LUNs mapped (the standby's too).
    for site in ("dc1", "dc2"):
        san = svc.cluster_config(lab, lab.hosts[f"{site}-ontap"])
        assert san["igroups"] == [{"name": f"{site}-mbox1", "protocol": "iscsi", "os_type": "linux",
                                   "initiators": [f"iqn.2026-12.test.example:{site}-mbox1"]}]
        assert san["lun_maps"] == [{"lun": "/vol/mbox1_db/lun0", "igroup": f"{site}-mbox1"},
                                   {"lun": "/vol/mbox1_index/lun0", "igroup": f"{site}-mbox1"}]
    inv = svc.OntapService().inventory_vars(lab, dc2)
    assert inv["zimbra_geo_ontap_clusters"]["dc2"]["svm"] == "svm_dc2"
    assert inv["zimbra_geo_ontap_clusters"]["dc1"]["data_dir"] == str(lab.dir / "san" / "dc1-ontap")
    assert inv["zimbra_geo_ontap_volumes"] == {"mbox1": {"db": "mbox1_db", "index": "mbox1_index"}}
    assert inv == svc.OntapService().inventory_vars(lab, lab.hosts["dc1-ontap"])


def test_start_check_reset_stop(lab: FakeLab, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both clusters share 127.0.0.1 here, so each gets its own port.
    ports = {"dc1-ontap": free_port(), "dc2-ontap": free_port()}
    service = svc.OntapService()
    started = []
    try:
        for name in ("dc1-ontap", "dc2-ontap"):
            monkeypatch.setattr(svc, "PORT", ports[name])
            host = lab.hosts[name]
            # The peer URL of the other cluster must carry its own port too.
            monkeypatch.setattr(svc, "ontap_hosts", lambda _lab: [])
            service.start(lab, host)
            started.append(host)
            ok, detail = service.check(lab, host)
            assert ok and name in detail
        s = requests.Session()
        s.trust_env = False
        s.auth = ("admin", "pw-ontap_password")
        s.verify = str(lab.ca.cert_path)
        url = f"https://127.0.0.1:{ports['dc2-ontap']}"
        rels = s.get(f"{url}/api/snapmirror/relationships", params={"fields": "state"}).json()["records"]
        assert [r["state"] for r in rels] == ["snapmirrored", "snapmirrored"]
        # The standby's LUNs are mapped to its mailbox server ahead, read-only until the break.
        maps = s.get(f"{url}/api/protocols/san/lun-maps", params={"fields": "lun.name,igroup.name"}).json()
        assert sorted((m["lun"]["name"], m["igroup"]["name"]) for m in maps["records"]) == [
            ("/vol/mbox1_db/lun0", "dc2-mbox1"), ("/vol/mbox1_index/lun0", "dc2-mbox1")]
        luns = s.get(f"{url}/api/storage/luns", params={"fields": "status.read_only"}).json()["records"]
        assert [lun["status"]["read_only"] for lun in luns] == [True, True]
        s.post(f"{url}/x-lab/faults", json={"type": "unhealthy"}).raise_for_status()
        monkeypatch.setattr(svc, "PORT", ports["dc2-ontap"])
        service.reset(lab, lab.hosts["dc2-ontap"])
        assert s.get(f"{url}/x-lab/faults").json() == {"faults": []}
        assert json.loads((lab.hosts["dc2-ontap"].dir / "ontap-config.json").read_text())["volumes"]
    finally:
        for host in started:
            monkeypatch.setattr(svc, "PORT", ports[host.name])
            service.stop(lab, host)
    monkeypatch.setattr(svc, "PORT", ports["dc2-ontap"])
    assert service.check(lab, lab.hosts["dc2-ontap"])[0] is False
