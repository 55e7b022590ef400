"""Run a pair of emulated clusters (dc1 -> dc2) on 127.0.0.1, for tests and benchmarks.

Each cluster is its own ``python -m lab.ontap`` process, as in the lab; certificates come
from a throw-away CA made here (the lab proper uses its own CA).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_ca_and_cert(directory: Path, ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path, Path]:
    """Return (ca_cert, cert, key) paths; the server certificate covers ``ips``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zimbra_geo test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ontap")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] + [x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Emulator:
    name: str
    svm: str
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class EmulatorPair:
    """dc1 (source, rw volumes) and dc2 (destination, dp volumes), relationships dc1 -> dc2."""

    workdir: Path
    volumes: tuple[str, ...] = ("mbox1_db", "mbox1_index")
    initialized: bool = True
    latencies: dict[str, float] = field(
        default_factory=lambda: {"job_start": 0.02, "transition": 0.1, "transfer_min": 0.1}
    )
    password: str = "lab-secret"
    username: str = "admin"

    def __post_init__(self) -> None:
        self.ca, self.cert, self.key = make_ca_and_cert(self.workdir / "tls")
        self.san = self.workdir / "san"
        self.dc1 = Emulator("dc1-ontap", "svm_dc1", free_port())
        self.dc2 = Emulator("dc2-ontap", "svm_dc2", free_port())
        (self.workdir / "password").write_text(self.password)

    def config(self, emu: Emulator) -> dict[str, Any]:
        if emu is self.dc1:
            return {"volumes": [{"name": v, "type": "rw"} for v in self.volumes], "latencies": self.latencies}
        state = "snapmirrored" if self.initialized else "uninitialized"
        return {
            "volumes": [{"name": v, "type": "dp"} for v in self.volumes],
            "latencies": self.latencies,
            "relationships": [
                {"source": f"svm_dc1:{v}", "destination": f"svm_dc2:{v}", "state": state} for v in self.volumes
            ],
        }

    def start(self) -> EmulatorPair:
        for emu, other in ((self.dc1, self.dc2), (self.dc2, self.dc1)):
            state_dir = self.workdir / emu.name
            state_dir.mkdir(parents=True, exist_ok=True)
            cfg = state_dir / "config.json"
            cfg.write_text(json.dumps(self.config(emu)))
            log = open(state_dir / "emulator.log", "ab")  # noqa: SIM115 - handed to the child
            emu.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lab.ontap",
                    "--listen",
                    f"127.0.0.1:{emu.port}",
                    "--cert",
                    str(self.cert),
                    "--key",
                    str(self.key),
                    "--state-dir",
                    str(state_dir),
                    "--cluster-name",
                    emu.name,
                    "--svm",
                    emu.svm,
                    "--password-file",
                    str(self.workdir / "password"),
                    "--config",
                    str(cfg),
                    "--san-dir",
                    str(self.san),
                    "--peer",
                    f"{other.svm}={other.url}",
                    "--ca",
                    str(self.ca),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )
            log.close()
        for emu in (self.dc1, self.dc2):
            self._wait_ready(emu)
        return self

    def _wait_ready(self, emu: Emulator, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if emu.proc and emu.proc.poll() is not None:
                raise RuntimeError(f"{emu.name} exited with {emu.proc.returncode}")
            try:
                self.admin(emu, "GET", "health")
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"{emu.name} did not answer within {timeout} s")

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override the CA given here
        s.auth = (self.username, self.password)
        s.verify = str(self.ca)
        return s

    def admin(self, emu: Emulator, method: str, path: str, **kw: Any) -> Any:
        resp = self.session().request(method, f"{emu.url}/x-lab/{path}", timeout=5, **kw)
        resp.raise_for_status()
        return resp.json()

    def api(self, emu: Emulator, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session().request(method, f"{emu.url}/api/{path}", timeout=10, **kw)

    def stop(self) -> None:
        for emu in (self.dc1, self.dc2):
            if emu.proc and emu.proc.poll() is None:
                emu.proc.terminate()
                try:
                    emu.proc.wait(10)
                except subprocess.TimeoutExpired:
                    emu.proc.kill()
                    emu.proc.wait()
        # Lift read-only marks so that the test's temporary directory can be removed.
        subprocess.run(["chattr", "-R", "-f", "-i", str(self.san)], capture_output=True, check=False)

    def __enter__(self) -> EmulatorPair:  # noqa: PYI034 - start() returns self
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- in-process clusters (unit tests)
class LocalPeer:
    """The peer channel between two in-process clusters: a direct call instead of HTTP."""

    def __init__(self, get: Callable[[], Any]) -> None:
        self.get = get

    def snapshot(self, volume: str, label: str) -> dict:
        return self.get().make_snapshot(volume, label)

    def adopt(self, record: dict) -> None:
        self.get().adopt(record)

    def relationships_from(self, svm: str) -> list[dict]:
        return self.get().records_from(svm)


TEST_AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}


def api(client: Any, method: str, path: str, **kw: Any) -> Any:
    """A request to ``/api/<path>`` through a Flask test client, as admin / pw."""
    return client.open(f"/api/{path}", method=method, headers=TEST_AUTH, **kw)


def until(fn: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``fn`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")
