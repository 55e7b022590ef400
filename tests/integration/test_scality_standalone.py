"""scality_ring_info through ansible-playbook against the Scality emulator on 127.0.0.1.

The emulator runs as in the lab, three processes sharing one state directory: the
Supervisor (HTTPS, a CA made for the test, zone dc1) and one sproxyd per site. Faults are
injected through the emulator's lab-only ``/x-lab/faults`` path or by stopping processes;
results are cross-checked with plain ``requests`` calls and the objects on disk, never with
the module's own client.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.scality.faults import FaultStore

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sup-" + secrets.token_hex(8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_ca_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scality test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


class Emulator:
    """The three processes of one emulated RING and their addresses."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.state = base / "state"
        self.ca, self.cert, self.key = _make_ca_and_cert(base)
        (base / "password").write_text(PASSWORD)
        self.ports = {"dc1": _free_port(), "dc2": _free_port(), "supervisor": _free_port()}
        self.sproxyd = {s: f"http://127.0.0.1:{self.ports[s]}/proxy/chord" for s in ("dc1", "dc2")}
        self.supervisor = f"https://127.0.0.1:{self.ports['supervisor']}"
        self.procs: dict[str, subprocess.Popen] = {}

    def argv(self, name: str) -> list[str]:
        common = [sys.executable, "-m", "lab.scality", "--state-dir", str(self.state), "--quiet"]
        if name == "supervisor":
            return [
                *common,
                "--role=supervisor",
                f"--listen=127.0.0.1:{self.ports['supervisor']}",
                f"--cert={self.cert}",
                f"--key={self.key}",
                f"--password-file={self.base / 'password'}",
                "--zone=dc1",
                f"--site=dc1=http://127.0.0.1:{self.ports['dc1']}",
                f"--site=dc2=http://127.0.0.1:{self.ports['dc2']}",
            ]
        peer = "dc2" if name == "dc1" else "dc1"
        return [
            *common,
            "--role=sproxyd",
            f"--site-name={name}",
            f"--listen=127.0.0.1:{self.ports[name]}",
            f"--peer={peer}=http://127.0.0.1:{self.ports[peer]}",
            "--rebuild-interval=0.2",
        ]

    def start(self, *names: str) -> None:
        names = names or ("dc1", "dc2", "supervisor")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for name in names:
            if name in self.procs and self.procs[name].poll() is None:
                continue
            log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
            self.procs[name] = subprocess.Popen(self.argv(name), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        for name in names:
            base = self.supervisor if name == "supervisor" else f"http://127.0.0.1:{self.ports[name]}"
            url = f"{base}/x-lab/faults"  # answers whatever faults are set
            while True:
                try:
                    if requests.get(url, timeout=1, verify=str(self.ca)).status_code < 500:
                        break
                except requests.RequestException:
                    pass
                assert self.procs[name].poll() is None, (self.base / f"{name}.log").read_text()
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.05)

    def stop(self, *names: str) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def faults(self, patch: dict | None = None) -> dict:
        """Set faults through dc2's lab-only path (every process shares them); None heals all."""
        url = f"http://127.0.0.1:{self.ports['dc2']}/x-lab/faults"
        resp = requests.patch(url, json=patch, timeout=5) if patch is not None else requests.delete(url, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def tasks(self) -> list:
        resp = requests.get(
            f"{self.supervisor}/api/v0.1/rings/DATA/tasks/",
            auth=("supervisor", PASSWORD),
            verify=str(self.ca),
            timeout=5,
        )
        resp.raise_for_status()
        return resp.json()["_items"]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("scality"))
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def ring(emulator):
    """The emulator, healed and with every process running, before and after each test."""
    FaultStore(emulator.state).heal()
    emulator.start()
    yield emulator
    FaultStore(emulator.state).heal()
    emulator.start()


def play(emu: Emulator, tmp_path: Path, check: bool = False, **params) -> dict:
    """Run the module once through ansible-playbook; return its registered result."""
    args = {
        "supervisor_url": emu.supervisor,
        "supervisor_username": "supervisor",
        "supervisor_password": PASSWORD,
        "ca_path": str(emu.ca),
        "sites": ["dc1", "dc2"],
        "supervisor_site": "dc1",
        "sproxyd": [{"site": s, "url": u} for s, u in emu.sproxyd.items()],
        "timeout": 3,
        "retries": 1,
        "canary_timeout": 10,
    }
    args.update(params)
    out = tmp_path / "result.json"
    playbook = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"mailops.zimbra_geo.scality_ring_info": args, "register": "r", "ignore_errors": True},
                {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)}, "check_mode": False},
            ],
        }
    ]
    pb = tmp_path / "play.yml"
    pb.write_text(yaml.safe_dump(playbook))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
        ANSIBLE_NOCOLOR="1",
    )
    cmd = ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    proc = subprocess.run(
        [*cmd, *(["--check"] if check else []), str(pb)], check=False, env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert PASSWORD not in proc.stdout
    return json.loads(out.read_text())


def catalog(emu: Emulator, site: str) -> list[str]:
    return sorted(p.stem for p in (emu.state / "sites" / site / "catalog").glob("*.json"))


def put_objects(emu: Emulator, site: str, count: int) -> list[str]:
    keys = []
    for _i in range(count):
        key = secrets.token_hex(20).upper()
        assert requests.put(f"{emu.sproxyd[site]}/{key}", data=os.urandom(256), timeout=5).status_code == 200
        keys.append(key)
    return keys


def poll(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


# -- healthy ----------------------------------------------------------------------------------
def test_healthy_ring_planned_with_a_cross_site_canary(ring, tmp_path) -> None:
    before = catalog(ring, "dc1"), catalog(ring, "dc2")
    r = play(ring, tmp_path, canary_site="dc2", canary_cross_site=True)
    assert r["verdict"]["ok"], r["verdict"]["reasons"]
    assert r["changed"] is False
    assert r["supervisor"]["reachable"] and r["ring"]["healthy"] and r["backlog"] == 0
    for site in ("dc1", "dc2"):
        assert r["sites"][site]["servers"]["healthy"] == 3
        assert r["sites"][site]["nodes"]["healthy"] == 3
        assert r["sites"][site]["disks"]["healthy"] == 6
    assert [s["step"] for s in r["canary"]["steps"]][:3] == ["put dc2", "get dc2", "get dc1"]
    assert r["canary"]["passed"]
    # Out of band: the canary left nothing behind on either site.
    assert (catalog(ring, "dc1"), catalog(ring, "dc2")) == before


def test_check_mode_writes_no_object(ring, tmp_path) -> None:
    stats = {s: requests.get(f"{u}/.stats", timeout=5).json() for s, u in ring.sproxyd.items()}
    r = play(ring, tmp_path, check=True)
    assert r["canary"]["performed"] is False and r["canary"]["skipped_reason"] == "check mode"
    for site, url in ring.sproxyd.items():
        assert requests.get(f"{url}/.stats", timeout=5).json().get("put", 0) == stats[site].get("put", 0)
    assert r["verdict"]["ok"]


# -- faults ------------------------------------------------------------------------------------
def test_node_down_fails_planned_and_its_backlog_drains_when_it_returns(ring, tmp_path) -> None:
    ring.faults({"nodes_down": ["dc1-node2"]})
    put_objects(ring, "dc2", 6)
    r = play(ring, tmp_path, canary=False)
    v = r["verdict"]
    assert not v["ok"]
    assert "dc1: 1 of 3 nodes not healthy: dc1-node2" in v["reasons"]
    assert r["sites"]["dc1"]["nodes"]["unreachable"] == ["dc1-node2"]
    assert r["backlog"] and r["backlog"] > 0, "six objects cannot all avoid one node of three"
    ring.faults()
    poll(lambda: ring.tasks() == [])
    assert play(ring, tmp_path, canary=False)["verdict"]["ok"]


def test_disk_out_of_service_is_named(ring, tmp_path) -> None:
    ring.faults({"disks_out": ["dc2-store3-disk1"]})
    r = play(ring, tmp_path, canary=False)
    assert not r["verdict"]["ok"]
    assert any("dc2: 1 of 6 disks not healthy: dc2-store3:disk1" == x for x in r["verdict"]["reasons"])


def test_injected_backlog_fails_planned(ring, tmp_path) -> None:
    ring.faults({"backlog": {"dc2": 7}})
    r = play(ring, tmp_path, canary=False)
    assert r["backlog"] == 7
    assert "rebuild backlog of 7 (at most 0 allowed)" in r["verdict"]["reasons"]


def test_site_down_disaster_names_the_lost_site_and_falls_back_to_sproxyd(ring, tmp_path) -> None:
    ring.faults({"sites_down": ["dc1"]})
    r = play(ring, tmp_path, mode="disaster", lost_site="dc1", retries=0)
    v = r["verdict"]
    assert v["ok"], v["reasons"]
    assert v["lost_site"] == "dc1" and v["surviving_sites"] == ["dc2"]
    assert v["sproxyd_only"] and not v["split_suspected"]
    assert any(n.startswith("dc1 is uniformly unreachable") for n in v["notes"])
    assert r["canary"]["site"] == "dc2" and r["canary"]["passed"]
    # The same observations in planned mode are a clear refusal.
    p = play(ring, tmp_path, retries=0, canary=False)
    assert not p["verdict"]["ok"]
    assert any(x.startswith("Supervisor unreachable") for x in p["verdict"]["reasons"])


def test_site_lost_for_real_processes_gone(ring, tmp_path) -> None:
    ring.stop("supervisor", "dc1")
    r = play(ring, tmp_path, mode="disaster", lost_site="dc1", retries=0, canary_cross_site=True)
    v = r["verdict"]
    assert v["ok"], v["reasons"]
    assert v["sproxyd_only"]
    assert "cannot connect" in r["supervisor"]["error"]
    assert r["canary"]["read_sites"] == ["dc2"]  # the lost site is never read through


def test_lost_site_partly_answering_is_a_possible_split(ring, tmp_path) -> None:
    # dc2's storage nodes are gone but its connector still answers: not a clean loss.
    ring.faults({"nodes_down": ["dc2-node1", "dc2-node2", "dc2-node3"]})
    r = play(ring, tmp_path, mode="disaster", lost_site="dc2")
    v = r["verdict"]
    assert not v["ok"] and v["split_suspected"]
    assert any("dc2 is only partly unreachable" in x and "possible split" in x for x in v["reasons"])


def test_supervisor_lost_on_the_surviving_site_fails_disaster(ring, tmp_path) -> None:
    ring.faults({"supervisor_unreachable": True, "sites_down": ["dc2"]})
    r = play(ring, tmp_path, mode="disaster", lost_site="dc2", retries=0, canary=False)
    assert not r["verdict"]["ok"]
    assert any(x.startswith("Supervisor unreachable") for x in r["verdict"]["reasons"])


def test_sproxyd_5xx_is_reported_with_its_status(ring, tmp_path) -> None:
    ring.faults({"sproxyd": {"dc2": {"status": 503}}})
    r = play(ring, tmp_path, canary_site="dc1")
    dc2 = next(e for e in r["sproxyd"] if e["site"] == "dc2")
    assert dc2["alive"] is False and dc2["status_code"] == 503
    assert any(x.startswith("dc2: sproxyd") and "HTTP 503" in x for x in r["verdict"]["reasons"])
    # dc2's storage is fine: the Supervisor still sees it whole.
    assert r["sites"]["dc2"]["nodes"]["healthy"] == 3
    assert r["canary"]["passed"]


def test_slow_sproxyd_shows_in_latency_and_times_out(ring, tmp_path) -> None:
    ring.faults({"sproxyd": {"dc1": {"delay": 0.4}}})
    r = play(ring, tmp_path, canary=False)
    dc1 = next(e for e in r["sproxyd"] if e["site"] == "dc1")
    assert dc1["alive"] and dc1["latency_ms"] >= 400
    r = play(ring, tmp_path, canary=False, timeout=0.2, retries=0)
    dc1 = next(e for e in r["sproxyd"] if e["site"] == "dc1")
    assert not dc1["alive"] and "no answer within" in dc1["error"]


def test_canary_delete_answered_423_is_retried(ring, tmp_path) -> None:
    ring.faults({"sproxyd": {"dc2": {"delete_423": 2}}})
    r = play(ring, tmp_path, canary_site="dc2", canary_cross_site=True)
    c = r["canary"]
    assert c["passed"], c["error"]
    assert c["delete_423_retries"] == 2
    for url in ring.sproxyd.values():
        assert requests.get(f"{url}/{c['key']}", timeout=5).status_code == 404
    assert (
        requests.get(f"{ring.supervisor}/x-lab/faults", verify=str(ring.ca), timeout=5).json()["sproxyd"]["dc2"][
            "delete_423"
        ]
        == 0
    )  # every injected 423 was consumed


def test_canary_delete_locked_for_good_fails_clearly(ring, tmp_path) -> None:
    ring.faults({"sproxyd": {"dc1": {"delete_423": -1}}})
    r = play(ring, tmp_path, canary_timeout=1, fail_on_unhealthy=True)
    assert r["failed"]
    assert "423 Locked" in r["msg"] and "canary through dc1 failed" in r["msg"]
