"""Benchmark: replication checks of ldap_replication_info on four masters of 100,000 entries.

Starts four slapd 2.5 on 127.0.0.1 (one port each, StartTLS with a throw-away CA), loads the
same directory into all four with ``slapadd`` (same entryUUID/entryCSN everywhere, contextCSN
written, so they start converged as a 4-way multi-provider set), then times:

* the contextCSN check (connect, bind, read on the four concurrently, lag table, verdict);
* the canary (a marker written on each master in turn, until the three others see it);
* the full audit as ldap_replication_info runs it - engine ``ldapsearch`` (entryUUID and
  entryCSN only, the four in parallel, compared in dicts) and engine ``ldap3`` (paged searches
  through the pure-Python client);
* the baseline: dump each master with ``ldapsearch`` (all attributes plus entryUUID/entryCSN),
  in parallel, then sort the entries of each dump and compare the dumps.

Prints a table and the ratios; asserts nothing. Every slapd it starts is stopped at the end.

    python bench/ldap_audit.py [--entries 100000] [--repeat 3] [--skip-ldap3]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.mailops.zimbra_geo.plugins.module_utils import _ldap  # noqa: E402
from ansible_collections.mailops.zimbra_geo.plugins.modules import ldap_replication_info  # noqa: E402

SUFFIX = "dc=example,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
NAMES = ["dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"]


def make_ca(base: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = base / "ca.pem", base / "server.pem", base / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {dir}/slapd.pid
olcServerID: {sid}
olcTLSCACertificateFile: {ca}
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: syncprov

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: cn=config
olcRootPW: {pw}

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {dir}/db
olcSuffix: {suffix}
olcRootDN: {admin}
olcRootPW: {pw}
olcDbIndex: objectClass eq
olcDbIndex: entryUUID,entryCSN eq
olcDbMaxSize: 4294967296
{syncrepl}olcMultiProvider: TRUE

dn: olcOverlay={{0}}syncprov,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {{0}}syncprov
olcSpCheckpoint: 100 10
olcSpSessionLog: 10000
"""


ACCOUNT = (
    # Roughly the size of a directory account (~1.5 KB, ~35 values); Zimbra's own accounts,
    # with their zimbra* attributes, are larger still.
    "displayName: User {i} of the benchmark\nmail: user{i:06d}@example.test\nmail: u{i}@example.test\n"
    "mail: user.{i}@mail.example.test\ntitle: Engineer\nou: Operations\ndepartmentNumber: {d}\n"
    "employeeNumber: {i}\nemployeeType: staff\nl: Springfield\nst: Somestate\nstreet: {i} Main Street\n"
    "postalCode: {p:05d}\npostalAddress: {i} Main Street$Springfield$Somestate {p:05d}\n"
    "mobile: +1 555 {i:07d}\nhomePhone: +1 556 {i:07d}\nroomNumber: {d}-{i}\ninitials: U{d}\n"
    "preferredLanguage: en\nlabeledURI: https://www.example.test/~user{i:06d} home page\n"
    "userPassword: {{SSHA}}b3BlbmxkYXAtYmVuY2htYXJrLXBhc3N3b3JkLWhhc2gtdmFsdWU=\n"
    + "".join(f"description: preference {k} of the account: " + "x" * 60 + "\n" for k in range(8))
)


def directory_ldif(count: int, size: str = "account") -> str:
    """The same entries for every master: fixed entryUUID and entryCSN (server ID 1)."""
    base = time.time() - 3600
    lines = []

    def csn(i: int) -> str:
        stamp = datetime.datetime.fromtimestamp(base + i / 1000.0, datetime.UTC)
        return stamp.strftime("%Y%m%d%H%M%S.%fZ") + "#000000#001#000000"

    def entry(i: int, dn: str, body: str) -> None:
        lines.append(f"dn: {dn}\n{body}entryUUID: {uuid.UUID(int=i + 1)}\nentryCSN: {csn(i)}\n"
                     "creatorsName: cn=admin,dc=example,dc=test\ncreateTimestamp: 20260101000000Z\n\n")

    entry(0, SUFFIX, "objectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n")
    entry(1, f"ou=people,{SUFFIX}", "objectClass: organizationalUnit\nou: people\n")
    for i in range(count - 2):
        entry(i + 2, f"uid=user{i:06d},ou=people,{SUFFIX}",
              f"objectClass: inetOrgPerson\nuid: user{i:06d}\ncn: User {i}\nsn: Number {i}\n"
              f"givenName: User\nmail: user{i:06d}@example.test\ntelephoneNumber: +1 555 {i:07d}\n"
              f"description: benchmark entry {i} of the zimbra_geo audit\n"
              + (ACCOUNT.format(i=i, d=i % 97, p=i % 99999) if size == "account" else ""))
    return "".join(lines)


class Masters:
    def __init__(self, base: Path, entries: int, size: str = "account") -> None:
        self.base = base
        self.entries = entries
        self.size = size
        self.pw = uuid.uuid4().hex
        self.ca, self.cert, self.key = make_ca(base)
        self.ports = {n: free_port() for n in NAMES}
        self.pids: dict[str, int] = {}

    def uri(self, name: str) -> str:
        return f"ldap://127.0.0.1:{self.ports[name]}/"

    def setup(self) -> float:
        started = time.monotonic()
        data = self.base / "directory.ldif"
        data.write_text(directory_ldif(self.entries, self.size))

        def load(item: tuple[int, str]) -> None:
            sid, name = item
            d = self.base / name
            (d / "slapd.d").mkdir(parents=True)
            (d / "db").mkdir()
            syncrepl = "".join(
                f"olcSyncrepl: {{{i}}}rid={peer_sid:03d} provider={self.uri(peer)} bindmethod=simple "
                f'binddn="{ADMIN_DN}" credentials={self.pw} searchbase="{SUFFIX}" '
                f'type=refreshAndPersist retry="1 60 10 +" starttls=critical tls_cacert={self.ca} '
                "tls_reqcert=demand\n"
                for i, (peer_sid, peer) in enumerate((s, n) for s, n in enumerate(NAMES, 1) if n != name))
            (d / "config.ldif").write_text(CONFIG.format(
                dir=d, sid=sid, ca=self.ca, cert=self.cert, key=self.key, pw=self.pw, suffix=SUFFIX,
                admin=ADMIN_DN, syncrepl=syncrepl))
            subprocess.run(["slapadd", "-n0", "-F", str(d / "slapd.d"), "-l", str(d / "config.ldif")],
                           check=True, capture_output=True)
            # -w writes contextCSN from the entries: the four start converged, no full refresh
            subprocess.run(["slapadd", "-q", "-w", "-b", SUFFIX, "-F", str(d / "slapd.d"), "-l", str(data)],
                           check=True, capture_output=True)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(load, enumerate(NAMES, 1)))
        for name in NAMES:
            d = self.base / name
            subprocess.run(["/usr/sbin/slapd", "-F", str(d / "slapd.d"), "-h", self.uri(name)], check=True)
            self.pids[name] = int((d / "slapd.pid").read_text())
        for name in NAMES:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.ports[name]), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        return time.monotonic() - started

    def stop(self) -> None:
        for pid in self.pids.values():
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        for pid in self.pids.values():
            deadline = time.monotonic() + 30
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                try:
                    if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                        break
                except (OSError, IndexError):
                    break
                time.sleep(0.05)


class Module:
    """What ldap_replication_info.run() needs of AnsibleModule."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.check_mode = False
        self._diff = False


def module_params(m: Masters, **extra) -> dict:
    params = {"masters": [{"name": n, "uri": m.uri(n), "server_id": i} for i, n in enumerate(NAMES, 1)],
              "suffix": SUFFIX, "bind_method": "simple", "bind_dn": ADMIN_DN, "bind_pw": m.pw,
              "start_tls": True, "validate_certs": True, "ca_path": str(m.ca), "connect_timeout": 5.0,
              "timeout": 120.0, "max_lag": 5.0, "canary": False, "canary_base": None, "canary_timeout": 30.0,
              "audit": False, "audit_engine": "auto", "audit_page_size": 1000, "audit_max_differences": 20}
    params.update(extra)
    return params


def baseline(m: Masters, workdir: Path) -> tuple[int, int]:
    """Dump the four with ldapsearch (all attributes + entryUUID/entryCSN), sort, compare."""
    env = dict(os.environ, LDAPTLS_CACERT=str(m.ca), LDAPCONF=os.devnull)
    pw = workdir / "pw"
    pw.write_text(m.pw)
    pw.chmod(0o600)
    procs = {}
    for name in NAMES:
        out = open(workdir / f"{name}.ldif", "wb")
        procs[name] = (subprocess.Popen(
            ["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-ZZ", "-H", m.uri(name), "-D", ADMIN_DN,
             "-y", str(pw), "-b", SUFFIX, "-E", "pr=1000/noprompt", "(objectClass=*)", "*",
             "entryUUID", "entryCSN"], stdout=out, env=env), out)
    for proc, out in procs.values():
        assert proc.wait() == 0
        out.close()
    dumps = {}
    for name in NAMES:
        blocks = (workdir / f"{name}.ldif").read_text().split("\n\n")
        # page boundaries leave blank lines and comments between entries: keep the entries only
        entries = ("\n".join(x for x in b.split("\n") if x and not x.startswith("#")) for b in blocks)
        dumps[name] = sorted(e for e in entries if e)
    first = dumps[NAMES[0]]
    differing = sum(len(set(first).symmetric_difference(dumps[n])) for n in NAMES[1:])
    return len(first), differing


def cpu_seconds() -> float:
    """CPU of this process and its finished children (ldapsearch), not of the slapd."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(func, repeat: int):
    """Median and best wall time, median client CPU, and the last result."""
    times, cpus, result = [], [], None
    for _round in range(repeat):
        cpu, started = cpu_seconds(), time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(times), min(times), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--entry-size", choices=["account", "small"], default="account",
                        help="account: ~1.5 KB, ~35 values per entry; small: ~0.3 KB, 8 values")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-ldap3", action="store_true", help="skip the (slow) ldap3 audit engine")
    args = parser.parse_args()
    for program in ("slapadd", "ldapsearch"):
        if not shutil.which(program):
            sys.exit(f"{program} is needed (Debian packages slapd and ldap-utils)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="zg-bench-ldap-") as tmp:
        workdir = Path(tmp)
        masters = Masters(workdir, args.entries, args.entry_size)
        try:
            setup = masters.setup()
            print(f"4 masters x {args.entries} entries ({args.entry_size}) loaded and started in {setup:.1f} s")
            params = module_params(masters)

            def audit(engine: str):
                return _ldap.audit_masters(params["masters"], _ldap.connection_params(params), SUFFIX, engine,
                                           1000, 20, shutil.which("ldapsearch"))

            t, lo, cpu, r = timed(lambda: ldap_replication_info.run(Module(params)), args.repeat)
            rows.append(("contextCSN check (4 masters, concurrent)", t, lo, cpu,
                         "healthy" if r["healthy"] else f"problems: {r['problems']}"))
            t_audit, lo, cpu, r = timed(lambda: audit("ldapsearch"), args.repeat)
            rows.append(("audit, engine ldapsearch (entryUUID+entryCSN)", t_audit, lo, cpu,
                         f"{sum(r['entries'].values())} entries, {r['differences_total']} differences"))
            if not args.skip_ldap3:
                t, lo, cpu, r = timed(lambda: audit("ldap3"), 1)
                rows.append(("audit, engine ldap3 (paged, pure Python)", t, lo, cpu,
                             f"{sum(r['entries'].values())} entries, {r['differences_total']} differences"))
            t_base, lo, cpu, (per, differing) = timed(lambda: baseline(masters, workdir), args.repeat)
            rows.append(("baseline: ldapsearch dump all attrs, sort, compare", t_base, lo, cpu,
                         f"{per} entries per dump, {differing} differing"))
            # The canary writes, so it comes last. One untimed run first: right after start the
            # consumers may still be connecting (retry schedule), which is not propagation.
            ldap_replication_info.run(Module(module_params(masters, canary=True)))
            t, lo, cpu, r = timed(lambda: ldap_replication_info.run(Module(module_params(masters, canary=True))),
                                  args.repeat)
            canary = r["canary"]
            rows.append(("canary, 4 writers x 3 readers (module run)", t, lo, cpu,
                         f"slowest propagation {canary['max_ms']} ms, cleaned up {canary['cleaned_up']}, "
                         f"swept {len(canary['swept'])}"))
        finally:
            masters.stop()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'median s':>9}  {'best s':>8}  {'client cpu s':>12}  result")
    for name, med, best, cpu, note in rows:
        print(f"{name.ljust(width)}  {med:9.3f}  {best:8.3f}  {cpu:12.3f}  {note}")
    print(f"\nbaseline / audit (ldapsearch engine), median wall time: {t_base / t_audit:.2f}x"
          f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
