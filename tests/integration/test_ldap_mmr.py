"""ldap_mmr and ldap_replication_info against four real slapd, from bare servers to a 4-way set.

The masters are the lab's (``dc1-ldap1`` .. ``dc2-ldap2``) when the session ``lab`` fixture
exists (unless ``ZG_LDAP_OWN_SLAPD`` is set); otherwise this module starts four bare slapd of
its own on 127.0.0.1 (one port each, TLS with a throw-away CA, ``cn=config`` and the database
laid out as in the lab, only the first one seeded) and skips the site-cut test. The modules run
through ``ansible-playbook`` on the controller with ``delegate_to: localhost``, reading the lab's
inventory variables. Results are checked out of
band with ``ldapsearch`` (OpenLDAP's own client), never with the module under test.

The tests of one module build on each other (bare -> refusals -> build -> converge -> faults):
run them in file order, as pytest does.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"]
SUFFIX = "dc=example,dc=test"

pytestmark = pytest.mark.skipif(
    shutil.which("ldapsearch") is None or not os.path.exists("/usr/sbin/slapd"),
    reason="slapd and ldap-utils are not installed",
)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a true value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- four slapd of our own, when there is no lab --------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_ca(base: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and one server certificate for 127.0.0.1 (cryptography, no openssl program)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = base / f"{name}.pem", base / f"{name}-server.pem", base / f"{name}-server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


CONFIG_LDIF = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {dir}/slapd.pid
olcTLSCACertificateFile: {ca}
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

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

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: cn=config
olcRootPW: {config_pw}
olcAccess: {{0}}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * break

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {dir}/db
olcSuffix: {suffix}
olcRootDN: cn=admin,{suffix}
olcRootPW: {admin_pw}
olcDbIndex: objectClass eq
olcDbIndex: entryUUID,entryCSN eq
olcDbMaxSize: 1073741824
"""


def seed_ldif(count: int) -> str:
    people = "".join(
        f"dn: uid=user{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: user{i}\ncn: User {i}\nsn: {i}\n\n"
        for i in range(count))
    return (f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n"
            f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n" + people)


class OwnSlapd:
    """Four bare slapd on 127.0.0.1, each with its cn=config, database and ldapi socket."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.secrets = {"ldap_admin_password": uuid.uuid4().hex, "ldap_config_password": uuid.uuid4().hex}
        self.ca, self.cert, self.key = _make_ca(base, "lab-ca")
        self.ports = {name: _free_port() for name in NAMES}
        self.dirs = {name: base / name for name in NAMES}

    def uri(self, name: str) -> str:
        return f"ldap://127.0.0.1:{self.ports[name]}/"

    def setup(self) -> None:
        for i, name in enumerate(NAMES):
            d = self.dirs[name]
            (d / "slapd.d").mkdir(parents=True)
            (d / "db").mkdir()
            ldif = d / "config.ldif"
            ldif.write_text(CONFIG_LDIF.format(
                dir=d, ca=self.ca, cert=self.cert, key=self.key, suffix=SUFFIX,
                config_pw=self.secrets["ldap_config_password"], admin_pw=self.secrets["ldap_admin_password"]))
            subprocess.run(["slapadd", "-n0", "-F", str(d / "slapd.d"), "-l", str(ldif)], check=True,
                           capture_output=True)
            if i == 0:
                (d / "seed.ldif").write_text(seed_ldif(20))
                subprocess.run(["slapadd", "-b", SUFFIX, "-F", str(d / "slapd.d"), "-l", str(d / "seed.ldif")],
                               check=True, capture_output=True)
            self.start(name)

    def start(self, name: str) -> None:
        d = self.dirs[name]
        subprocess.run(["/usr/sbin/slapd", "-F", str(d / "slapd.d"), "-h",
                        f"{self.uri(name)} ldapi://{str(d / 'ldapi').replace('/', '%2F')}"], check=True)
        wait_for(lambda: _answers(self.uri(name)), 10, f"{name} to answer")

    def stop(self, name: str) -> None:
        pid_file = self.dirs[name] / "slapd.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, 15)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, f"{name} to stop")

    def stop_all(self) -> None:
        for name in NAMES:
            if (self.dirs[name] / "slapd.pid").exists():
                self.stop(name)

    def offline_run(self, name: str, argv: list) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    def slapd_dir(self, name: str) -> Path:
        return self.dirs[name] / "slapd.d"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _answers(uri: str) -> bool:
    host, port = uri.split("//")[1].rstrip("/").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return True
    except OSError:
        return False


# --- the environment the tests see ---------------------------------------------------------


class LdapEnv:
    """Masters, credentials and faults, the same whether the lab or our own slapd runs them."""

    def __init__(self, workdir: Path, lab=None, own: OwnSlapd | None = None) -> None:
        self.workdir = workdir
        self.lab = lab
        self.own = own
        if lab is not None:
            inventory = json.loads(subprocess.run(
                [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(lab.inventory), "--list"],
                capture_output=True, text=True, check=True).stdout)
            hostvars = inventory["_meta"]["hostvars"]
            self.hostvars = {n: hostvars[n] for n in NAMES}
            some = self.hostvars[NAMES[0]]
            self.inventory = str(lab.inventory)
        else:
            some = {"zimbra_geo_ldap_suffix": SUFFIX, "zimbra_geo_ldap_admin_dn": f"cn=admin,{SUFFIX}",
                    "zimbra_geo_ldap_admin_password": own.secrets["ldap_admin_password"],
                    "zimbra_geo_ldap_config_password": own.secrets["ldap_config_password"],
                    "zimbra_geo_ca_path": str(own.ca)}
            self.hostvars = {n: dict(some, zimbra_geo_ldap_server_id=i + 1, zimbra_geo_ldap_uri=own.uri(n))
                             for i, n in enumerate(NAMES)}
            inv = {"all": {"children": {"ldap": {"hosts": {
                n: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **v}
                for n, v in self.hostvars.items()}}}}}
            path = workdir / "inventory.yml"
            path.write_text(yaml.safe_dump(inv))
            path.chmod(0o600)
            self.inventory = str(path)
        self.suffix = some["zimbra_geo_ldap_suffix"]
        self.admin_dn = some["zimbra_geo_ldap_admin_dn"]
        self.admin_pw = some["zimbra_geo_ldap_admin_password"]
        self.config_pw = some["zimbra_geo_ldap_config_password"]
        self.ca = some["zimbra_geo_ca_path"]
        self.uris = {n: self.hostvars[n]["zimbra_geo_ldap_uri"] for n in NAMES}
        self.masters = [{"server_id": self.hostvars[n]["zimbra_geo_ldap_server_id"], "uri": self.uris[n]}
                        for n in NAMES]
        self.named_masters = [dict(m, name=n) for n, m in zip(NAMES, self.masters, strict=True)]

    # -- out-of-band reads and writes (OpenLDAP's own tools) ---------------------------------
    def ldap(self, tool: str, name: str, args: list, config: bool = False, stdin: str | None = None,
             check: bool = True, via: str | None = None) -> subprocess.CompletedProcess:
        """An OpenLDAP tool against master ``name``, from the controller or from host ``via``."""
        dn, pw = ("cn=config", self.config_pw) if config else (self.admin_dn, self.admin_pw)
        pw_file = self.workdir / f"pw-{uuid.uuid4().hex}"
        pw_file.write_text(pw)
        pw_file.chmod(0o600)
        env = dict(os.environ, LDAPTLS_CACERT=self.ca, LDAPTLS_REQCERT="demand", LDAPCONF=os.devnull)
        argv = [tool, "-x", "-ZZ", "-H", self.uris[name], "-D", dn, "-y", str(pw_file), "-o", "nettimeout=3", *args]
        try:
            if via is not None:
                proc = self.lab.host_run(via, argv, check=False, input=stdin, env=env, timeout=30)
            else:
                proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=30,
                                      check=False)
        finally:
            pw_file.unlink()
        if check:
            assert proc.returncode == 0, f"{tool} on {name}: {proc.stderr}"
        return proc

    def search(self, name: str, base: str, scope: str = "sub", filt: str = "(objectClass=*)",
               attrs: tuple = (), config: bool = False, via: str | None = None) -> list:
        out = self.ldap("ldapsearch", name, ["-LLL", "-o", "ldif-wrap=no", "-b", base, "-s", scope, filt, *attrs],
                        config=config, via=via).stdout
        entries = []
        for block in out.strip().split("\n\n"):
            if not block.strip():
                continue
            entry: dict = {}
            for line in block.splitlines():
                key, _sep, value = line.partition(": ")
                entry.setdefault(key.rstrip(":"), []).append(value)
            entries.append(entry)
        return entries

    def context_csn(self, name: str, via: str | None = None) -> list:
        entry = self.search(name, self.suffix, "base", attrs=("contextCSN",), via=via)[0]
        return sorted(entry.get("contextCSN", []))

    def dns(self, name: str, via: str | None = None) -> set:
        return {e["dn"][0].lower() for e in self.search(name, self.suffix, attrs=("1.1",), via=via)}

    def add(self, name: str, dn: str, description: str = "x", via: str | None = None) -> None:
        cn = dn.split(",", 1)[0].split("=", 1)[1]
        self.ldap("ldapadd", name, [], via=via,
                  stdin=f"dn: {dn}\nobjectClass: device\ncn: {cn}\ndescription: {description}\n")

    def delete(self, name: str, dn: str) -> None:
        proc = self.ldap("ldapdelete", name, [dn], check=False)
        assert proc.returncode in (0, 32), proc.stderr

    def converged(self) -> bool:
        """Same contextCSN and same entries on all four (all must answer)."""
        try:
            csns = [self.context_csn(n) for n in NAMES]
            if any(c != csns[0] for c in csns) or not csns[0]:
                return False
            entries = [self.dns(n) for n in NAMES]
            return all(e == entries[0] for e in entries)
        except AssertionError:
            return False

    # -- faults ------------------------------------------------------------------------------
    def stop(self, name: str) -> None:
        if self.lab is not None:
            self.lab.cli("fault", "stop", f"{name}/slapd")
        else:
            self.own.stop(name)

    def start(self, name: str) -> None:
        if self.lab is not None:
            self.lab.cli("fault", "start", f"{name}/slapd")
            wait_for(lambda: self.ldap("ldapsearch", name, ["-b", "", "-s", "base"], check=False).returncode == 0,
                     20, f"{name} to answer")
        else:
            self.own.start(name)

    def offline(self, name: str, argv: list) -> None:
        """Run an offline slap* tool on a stopped master's configuration."""
        if self.lab is not None:
            host = self.lab.hosts[name]
            proc = self.lab.host_run(name, [*argv, "-F", str(Path(host.dir) / "slapd.d")], check=False)
        else:
            proc = self.own.offline_run(name, [*argv, "-F", str(self.own.slapd_dir(name))])
        assert proc.returncode == 0, getattr(proc, "stderr", proc)

    # -- ansible -------------------------------------------------------------------------------
    def play(self, tasks: str, check: bool = False, diff: bool = False, extra: dict | None = None,
             hosts: str = "ldap_masters") -> dict:
        """Run ``tasks`` for each master (delegated to the controller); ``{host: [results]}``."""
        out = self.workdir / f"results-{uuid.uuid4().hex}.json"
        play = textwrap.dedent(
            """\
            - name: ldap integration
              hosts: "{{{{ zg_hosts }}}}"
              gather_facts: false
              tasks:
            {tasks}
                - name: Save the results
                  ansible.builtin.copy:
                    content: "{{{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all
                      | map('extract', hostvars, 'results'))) | to_json }}}}"
                    dest: {out}
                    mode: "0600"
                  delegate_to: localhost
                  run_once: true
                  check_mode: false
                  diff: false
            """
        ).format(tasks=textwrap.indent(textwrap.dedent(tasks), "    "), out=out)
        extra_vars = {"zg_hosts": ",".join(NAMES if hosts == "ldap_masters" else [hosts]),
                      "zg_masters": self.masters, "zg_named_masters": self.named_masters,
                      **(extra or {})}
        if self.lab is not None:
            proc = self.lab.playbook(play, extra_vars=extra_vars, check=check, diff=diff)
        else:
            path = self.workdir / f"play-{uuid.uuid4().hex}.yml"
            path.write_text(play)
            varsfile = self.workdir / f"vars-{uuid.uuid4().hex}.json"
            varsfile.write_text(json.dumps(extra_vars))
            argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", self.inventory, str(path),
                    "-e", f"@{varsfile}", *(["--check"] * check), *(["--diff"] * diff)]
            env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                       ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
        output = (proc.stdout or "") + (proc.stderr or "")
        assert proc.returncode == 0, output
        for secret in (self.admin_pw, self.config_pw):
            assert secret not in output, "a password leaked into the output"
        self.last_output = output
        return json.loads(out.read_text())


MMR_TASK = """\
- name: Make this master part of the 4-way set
  mailops.zimbra_geo.ldap_mmr:
    server_uri: "{{ zimbra_geo_ldap_uri }}"
    bind_dn: cn=config
    bind_pw: "{{ zimbra_geo_ldap_config_password }}"
    ca_path: "{{ zimbra_geo_ca_path }}"
    server_id: "{{ zg_server_id | default(zimbra_geo_ldap_server_id) }}"
    suffix: "{{ zg_suffix | default(zimbra_geo_ldap_suffix) }}"
    masters: "{{ zg_masters }}"
    replication:
      bind_dn: "{{ zimbra_geo_ldap_admin_dn }}"
      credentials: "{{ zimbra_geo_ldap_admin_password }}"
      tls_cacert: "{{ zimbra_geo_ca_path }}"
  delegate_to: localhost
  register: r
  ignore_errors: "{{ zg_ignore_errors | default(false) }}"
- name: Collect
  ansible.builtin.set_fact:
    results: "{{ (results | default([])) + [r] }}"
"""

INFO_TASK = """\
- name: Read the replication state of every master
  mailops.zimbra_geo.ldap_replication_info:
    masters: "{{ zg_named_masters }}"
    suffix: "{{ zimbra_geo_ldap_suffix }}"
    bind_dn: "{{ zimbra_geo_ldap_admin_dn }}"
    bind_pw: "{{ zimbra_geo_ldap_admin_password }}"
    ca_path: "{{ zimbra_geo_ca_path }}"
    max_lag: 2
    canary: "{{ zg_canary | default(false) }}"
    audit: "{{ zg_audit | default(false) }}"
    connect_timeout: 2
  delegate_to: localhost
  register: r
- name: Collect
  ansible.builtin.set_fact:
    results: "{{ (results | default([])) + [r] }}"
"""


@pytest.fixture(scope="module")
def env(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ldap")
    lab = None
    if not os.environ.get("ZG_LDAP_OWN_SLAPD"):  # set it to test without a lab
        try:
            lab = request.getfixturevalue("lab")
        except pytest.FixtureLookupError:
            pass
    own = None
    if lab is None:
        own = OwnSlapd(tmp_path_factory.mktemp("slapd"))
        try:
            own.setup()
        except BaseException:
            own.stop_all()
            raise
    else:
        lab.reset()
    try:
        yield LdapEnv(workdir, lab, own)
    finally:
        if own is not None:
            own.stop_all()
        else:
            lab.reset()


def config_of(env: LdapEnv, name: str) -> dict:
    """olcServerID, syncprov, agreements and multi-provider mode, read with ldapsearch."""
    server = env.search(name, "cn=config", "base", attrs=("olcServerID",), config=True)[0]
    dbs = env.search(name, "cn=config", "one", "(olcSuffix=*)", ("olcSuffix", "olcSyncrepl", "olcMultiProvider"),
                     config=True)
    db = next(d for d in dbs if d["olcSuffix"][0].lower() == env.suffix.lower())
    overlays = env.search(name, db["dn"][0], "one", "(objectClass=olcOverlayConfig)", ("olcOverlay",), config=True)
    return {"server_id": server.get("olcServerID"), "agreements": db.get("olcSyncrepl", []),
            "multi_provider": db.get("olcMultiProvider"), "overlays": [o["olcOverlay"][0] for o in overlays]}


# --- the tests, in order ---------------------------------------------------------------------


def test_check_mode_on_bare_servers_predicts_and_changes_nothing(env):
    before = {n: config_of(env, n) for n in NAMES}
    results = env.play(MMR_TASK, check=True, diff=True)
    for name in NAMES:
        (r,) = results[name]
        assert r["changed"] and r["operations"][-1].startswith("set 3 replication agreements")
        assert r["diff"]["after"]["multi_provider"] and not r["diff"]["before"]["multi_provider"]
    assert {n: config_of(env, n) for n in NAMES} == before
    assert before[NAMES[0]]["server_id"] is None and before[NAMES[0]]["overlays"] == []


def test_refusals_before_any_change(env):
    before = {n: config_of(env, n) for n in NAMES}
    one = NAMES[0]
    dup = [dict(m, server_id=1) if i == 1 else m for i, m in enumerate(env.masters)]
    cases = {
        "duplicate": {"zg_masters": dup},
        "without_itself": {"zg_masters": env.masters[1:]},
        "no_database": {"zg_suffix": "dc=nowhere,dc=test"},
    }
    reasons = {}
    for case, extra in cases.items():
        (r,) = env.play(MMR_TASK, extra=dict(extra, zg_ignore_errors=True), hosts=one)[one]
        assert r["failed"], case
        reasons[case] = (r["reason"], r["msg"])
    assert reasons["duplicate"][0] == "duplicate_server_id" and "duplicate server ID 1" in reasons["duplicate"][1]
    assert reasons["without_itself"][0] == "not_in_set"
    assert reasons["no_database"][0] == "no_database" and "dc=nowhere,dc=test" in reasons["no_database"][1]
    assert {n: config_of(env, n) for n in NAMES} == before


CONNECT_TASK = """\
- name: Try a bad connection
  mailops.zimbra_geo.ldap_mmr:
    server_uri: "{{ item.uri }}"
    bind_dn: cn=config
    bind_pw: "{{ zimbra_geo_ldap_config_password if item.pw == 'right' else item.pw }}"
    ca_path: "{{ item.ca }}"
    connect_timeout: 2
    server_id: "{{ zimbra_geo_ldap_server_id }}"
    suffix: "{{ zimbra_geo_ldap_suffix }}"
    masters: "{{ zg_masters }}"
    replication:
      bind_dn: "{{ zimbra_geo_ldap_admin_dn }}"
      credentials: "{{ zimbra_geo_ldap_admin_password }}"
  delegate_to: localhost
  register: r
  ignore_errors: true
  loop: "{{ zg_cases }}"
  loop_control:
    label: "{{ item.uri }}"
- name: Collect
  ansible.builtin.set_fact:
    results: "{{ r.results }}"
"""


def test_bad_credentials_untrusted_certificate_and_unreachable_master_are_clear_errors(env, tmp_path):
    other_ca = _make_ca(tmp_path, "other-ca")[0]
    one = NAMES[0]
    good = {"uri": env.uris[one], "pw": "right", "ca": env.ca}
    cases = [dict(good, pw="wrong-password"), dict(good, ca=str(other_ca)), dict(good, uri="ldap://127.0.0.1:9/")]
    results = env.play(CONNECT_TASK, extra={"zg_cases": cases}, hosts=one)[one]
    reasons = [r.get("reason") for r in results]
    assert reasons == ["invalid_credentials", "tls", "unreachable"], [r.get("msg") for r in results]
    assert "invalid credentials for cn=config" in results[0]["msg"]
    assert "certificate" in results[1]["msg"].lower()


def test_build_converges_and_a_second_run_changes_nothing(env):
    seeded = env.dns(NAMES[0])
    results = env.play(MMR_TASK, diff=True)
    for i, name in enumerate(NAMES):
        (r,) = results[name]
        assert r["changed"] and r["state"]["server_id"] == env.masters[i]["server_id"]
        cfg = config_of(env, name)
        assert cfg["server_id"] == [str(env.masters[i]["server_id"])]
        assert cfg["multi_provider"] == ["TRUE"] and len(cfg["agreements"]) == 3
        assert any("syncprov" in o for o in cfg["overlays"])
        assert env.config_pw not in json.dumps(r)
    # a fresh master receives the directory by refresh: poll, never a fixed sleep
    wait_for(env.converged, 60, "the four masters to converge")
    assert env.dns(NAMES[3]) == seeded
    again = env.play(MMR_TASK)
    assert all(not again[n][0]["changed"] and again[n][0]["operations"] == [] for n in NAMES)
    # check mode on the built set predicts no change either
    assert all(not r[0]["changed"] for r in env.play(MMR_TASK, check=True).values())


def test_a_server_id_already_carried_by_another_master_is_refused(env):
    one, two = NAMES[0], NAMES[1]
    before = config_of(env, one)
    # the inventory swapped by mistake: dc1-ldap1 would take the ID dc1-ldap2 already has
    swapped = [dict(m, server_id={1: 2, 2: 1}.get(m["server_id"], m["server_id"])) for m in env.masters]
    extra = {"zg_masters": swapped, "zg_server_id": 2, "zg_ignore_errors": True}
    (r,) = env.play(MMR_TASK, extra=extra, hosts=one)[one]
    assert r["failed"] and r["reason"] == "duplicate_server_id", r
    assert f"server ID 2 is already used by {env.uris[two]}" in r["msg"]
    assert config_of(env, one) == before


def test_a_write_on_any_master_appears_on_the_other_three(env):
    for writer in NAMES:
        dn = f"cn=zg-test-{writer}-{uuid.uuid4().hex[:6]},{env.suffix}"
        env.add(writer, dn)
        try:
            for other in NAMES:
                wait_for(lambda o=other, d=dn: d.lower() in env.dns(o), 10, f"{dn} on {other}")
        finally:
            env.delete(writer, dn)
    wait_for(env.converged, 20, "the deletions to converge")


def test_info_shows_convergence_a_canary_in_ms_and_a_clean_audit(env):
    (r,) = env.play(INFO_TASK, extra={"zg_canary": True, "zg_audit": True}, hosts=NAMES[0])[NAMES[0]]
    assert r["healthy"], r["problems"]
    assert not r["changed"]
    assert [m["name"] for m in r["masters"]] == NAMES and all(m["reachable"] and m["in_sync"] for m in r["masters"])
    canary = r["canary"]
    assert canary["ran"] and canary["complete"] and canary["cleaned_up"]
    assert [x["writer"] for x in canary["rounds"]] == NAMES
    assert 0 < canary["max_ms"] < 10000
    audit = r["audit"]
    assert audit["ran"] and audit["in_sync"] and audit["differences_total"] == 0
    assert len(set(audit["entries"].values())) == 1 and audit["entries"][NAMES[0]] >= 3
    # the canary left nothing behind
    assert not [d for d in env.dns(NAMES[0]) if "zg-canary" in d]


def test_a_stopped_master_is_named_and_the_others_lag_still_correct_then_it_catches_up(env):
    down = NAMES[3]
    env.stop(down)
    dn = f"cn=zg-while-down-{uuid.uuid4().hex[:6]},{env.suffix}"
    try:
        env.add(NAMES[0], dn)
        wait_for(lambda: all(dn.lower() in env.dns(n) for n in NAMES[:3]), 10, "the write on the three others")
        (r,) = env.play(INFO_TASK, hosts=NAMES[0])[NAMES[0]]
        assert not r["healthy"]
        assert any(p.startswith(f"{down} is down") for p in r["problems"]), r["problems"]
        by_name = {m["name"]: m for m in r["masters"]}
        assert not by_name[down]["reachable"] and by_name[down]["reason"] == "unreachable"
        assert all(by_name[n]["reachable"] and by_name[n]["in_sync"] and by_name[n]["max_lag"] == 0.0
                   for n in NAMES[:3])
        assert all(down not in row["lag"] for row in r["server_ids"].values())
    finally:
        env.start(down)
    wait_for(lambda: dn.lower() in env.dns(down), 30, f"{down} to catch up")
    env.delete(NAMES[0], dn)
    wait_for(env.converged, 30, "convergence after the restart")
    (r,) = env.play(INFO_TASK, hosts=NAMES[0])[NAMES[0]]
    assert r["healthy"], r["problems"]


def test_the_audit_finds_entries_made_different_by_hand(env):
    victim = NAMES[3]
    people = sorted(d for d in env.dns(NAMES[0]) if d.startswith("uid="))
    changed_dn = people[0]
    sid = env.masters[3]["server_id"]
    ghost = f"cn=zg-ghost-{uuid.uuid4().hex[:6]},{env.suffix}"
    env.stop(victim)
    try:
        # Written offline on one master: slapmodify re-creates the entry with a new entryUUID
        # (same DN), and an extra entry gets a CSN older than any cookie, so no provider ever
        # sends it. Replication repairs neither; only an audit sees them.
        mod = env.workdir / "mod.ldif"
        mod.write_text(f"dn: {changed_dn}\nchangetype: modify\nreplace: description\ndescription: by hand\n")
        env.offline(victim, ["slapmodify", "-b", env.suffix, "-l", str(mod)])
        add = env.workdir / "add.ldif"
        add.write_text(f"dn: {ghost}\nobjectClass: device\ncn: {ghost.split(',', 1)[0][3:]}\n"
                       f"entryUUID: {uuid.uuid4()}\nentryCSN: 20200101000000.000000Z#000000#{sid:03x}#000000\n")
        env.offline(victim, ["slapadd", "-b", env.suffix, "-l", str(add)])
        mod.unlink()
        add.unlink()
    finally:
        env.start(victim)
    (r,) = env.play(INFO_TASK, extra={"zg_audit": True}, hosts=NAMES[0])[NAMES[0]]
    audit = r["audit"]
    assert not r["healthy"] and not audit["in_sync"]
    assert audit["different"] == 1 and audit["differences_total"] == 2, audit["differences"]
    assert audit["missing"] == {n: (1 if n != victim else 0) for n in NAMES}
    kinds = {d["dn"].lower(): d["kind"] for d in audit["differences"]}
    assert kinds == {changed_dn: "different", ghost.lower(): "missing"}
    assert any("lack 1 entries" in p or "lacks 1 entries" in p for p in r["problems"])
    # repair: the extra entry and the re-created copy go, and the right copy is rewritten
    env.delete(victim, ghost)
    env.delete(victim, changed_dn)
    repair = f"dn: {changed_dn}\nchangetype: modify\nreplace: description\ndescription: repaired\n"
    env.ldap("ldapmodify", NAMES[0], [], stdin=repair)
    wait_for(env.converged, 30, "convergence after the repair")
    (r,) = env.play(INFO_TASK, extra={"zg_audit": True}, hosts=NAMES[0])[NAMES[0]]
    assert r["healthy"] and r["audit"]["in_sync"], r["problems"]


def test_cutting_the_sites_apart_grows_lag_across_sites_only_and_healing_converges(env):
    if env.lab is None:
        pytest.skip("cutting a site needs the lab's network namespaces")
    from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import (
        csn_by_sid,
        lag_table,
    )

    dc1, dc2 = NAMES[:2], NAMES[2:]
    written = []

    def write(name: str, via: str | None = None) -> str:
        dn = f"cn=zg-cut-{name}-{uuid.uuid4().hex[:6]},{env.suffix}"
        env.add(name, dn, via=via)
        written.append((name, dn))
        return dn

    def lags() -> dict:
        """Lag table of the four: dc2 read from the controller, dc1 from inside dc1."""
        csns = {n: csn_by_sid(env.context_csn(n)) for n in dc2}
        csns.update({n: csn_by_sid(env.context_csn(n, via=dc1[0])) for n in dc1})
        return {sid: row["lag"] for sid, row in lag_table(csns).items()}

    sid_dc1, sid_dc2 = env.masters[0]["server_id"], env.masters[2]["server_id"]
    env.lab.cli("fault", "cut-site", "dc1")
    try:
        first = write(dc2[0])
        wait_for(lambda: first.lower() in env.dns(dc2[1]), 10, "the write within dc2")
        inside = write(dc1[0], via=dc1[0])
        wait_for(lambda: inside.lower() in env.dns(dc1[1], via=dc1[0]), 10, "the write within dc1")
        before = lags()
        # within each site nobody lags; across the cut each site lags on the other's writes
        assert before[sid_dc2][dc2[1]] == 0.0 and before[sid_dc1][dc1[1]] == 0.0, before
        assert all(before[sid_dc2][n] > 0 for n in dc1) and all(before[sid_dc1][n] > 0 for n in dc2), before
        second = write(dc2[0])
        wait_for(lambda: second.lower() in env.dns(dc2[1]), 10, "the second write within dc2")
        after = lags()
        assert all(after[sid_dc2][n] > before[sid_dc2][n] for n in dc1), (before, after)
        assert after[sid_dc2][dc2[1]] == 0.0
        # the module, from the controller, names both unreachable dc1 masters
        (r,) = env.play(INFO_TASK, hosts=dc2[0])[dc2[0]]
        assert not r["healthy"]
        assert {m["name"] for m in r["masters"] if not m["reachable"]} == set(dc1)
        assert all(any(p.startswith(f"{n} is down") for p in r["problems"]) for n in dc1)
    finally:
        env.lab.cli("fault", "heal")
    wait_for(env.converged, 60, "convergence after healing the link")
    assert all(dn.lower() in env.dns(n) for n in NAMES for _writer, dn in written)
    for name, dn in written:
        env.delete(name, dn)
    wait_for(env.converged, 30, "the clean-up to converge")
    (r,) = env.play(INFO_TASK, hosts=NAMES[0])[NAMES[0]]
    assert r["healthy"], r["problems"]


LDAPI_PROBE = """\
import json, sys
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import LdapClient, read_mmr_state
with LdapClient("ldapi://%2Frun%2Fslapd%2Fldapi", bind_method="sasl_external") as client:
    state = read_mmr_state(client, sys.argv[1])
print(json.dumps({"server_id": state["server_id"], "agreements": len(state["agreements"]),
                  "multi_provider": state["multi_provider"]}))
"""


def test_root_over_ldapi_with_sasl_external_reads_the_configuration(env):
    if env.lab is None:
        pytest.skip("the ldapi socket of a lab host is inside its namespaces")
    name = NAMES[2]
    proc = env.lab.host_run(name, [sys.executable, "-c", LDAPI_PROBE, env.suffix], check=False,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / ".collections")))
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)
    assert state == {"server_id": env.masters[2]["server_id"], "agreements": 3, "multi_provider": True}
