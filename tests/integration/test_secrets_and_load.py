"""No secret in any output, and replication-verify on a schedule leaves the lab as it found it.

One walk through every playbook against the lab at verbosity 3 (-vvv), as an operator or a
scheduler runs them: by FQCN from the collection's built artifact installed into an empty
collections path, from the operator's own directory (its ansible.cfg, reports under it),
logged in to the hosts as the example inventory does (a non-root account with sudo, `become`
set on the site groups only): site-build, replication-verify run back to back with faults
coming and going between runs (the scheduled verify), then every other playbook of playbooks/
(a new one is picked up without editing this test), failover and failback last.

Become: every SSH login is the operator account's, every module run on a host goes through
sudo (and the host's own sudo log has it), no task on the controller ever becomes.

Secrets: every password, TSIG secret and the SSH private key of the lab inventory, in the
forms a leak would take (as is, base64, URL-quoted, decoded TSIG bytes in hex, any 12
characters of a long secret, any line of the key), must appear neither in the output of any
run nor in the run records and reports it wrote.

Load: after the verify runs, no canary entry left on any LDAP master, the sproxyd stores
holding the same objects as before, no new process on any host (and sshd within its
persistent sessions), no more SSH control sockets than hosts, Ansible's remote and local
temporary directories empty, each host's private /run as before, exactly one report pair per
run plus the latest pair, the SnapMirror relationships as before, and the last run (faults
healed) passing. ZG_LOAD_RUNS=60 runs the hour-equivalent (one run per scheduled minute).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from lab.core import OPERATOR_USER

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LDAPI = "ldapi://%2Frun%2Fslapd%2Fldapi"
# Faults that come and go between scheduled runs: (what, lab fault arguments, healing arguments).
FAULTS = [
    ("none", None, None),
    ("an LDAP master stopped", ["stop", "dc2-ldap2/slapd"], ["start", "dc2-ldap2/slapd"]),
    ("a Scality node down", ["scality", "node-down", "dc2-node1"], ["scality", "heal"]),
    ("the DNS server stopped", ["stop", "dns/named"], ["start", "dns/named"]),
]
# The default run: each fault once, then a run with all healed; 60 = one run a minute for an hour.
RUNS = int(os.environ.get("ZG_LOAD_RUNS", str(len(FAULTS))))
# How the walk runs each known playbook; any other playbook runs with -l on the standby site.
SEQUENCE_FIRST = ["site_build.yml"]
SEQUENCE_LAST = ["failover.yml", "failback.yml"]
LIMITS = {"failover.yml": "dc2", "failback.yml": "dc1", "dr_test.yml": "dc2"}


@dataclass
class Walk:
    outputs: dict[str, str] = field(default_factory=dict)  # run label -> stdout + stderr
    returncodes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # printed (pytest -s), never asserted
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    verify_runs: list[tuple[str, int]] = field(default_factory=list)
    reports: Path | None = None
    verify_reports: Path | None = None
    sudo_logs: dict[str, Path] = field(default_factory=dict)  # host -> its sudo log
    became: dict[str, list[str]] = field(default_factory=dict)  # run label -> hosts that logged a sudo


# ------------------------------------------------------------------ secrets
def secret_values(lab: Any) -> dict[str, str]:
    """Every secret of the lab inventory: passwords, TSIG secrets, the SSH private key."""
    found: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif isinstance(value, str) and re.search(r"password|secret", path.rsplit(".", 1)[-1]):
            found[path] = value

    for file in sorted((lab.inventory / "group_vars").rglob("*.yml")):
        walk(yaml.safe_load(file.read_text()) or {}, "")
    for name, value in lab.secrets.items():
        if isinstance(value, str) and name != "ssh":
            found[f"lab secret {name}"] = value
    connection = yaml.safe_load((lab.inventory / "group_vars" / "all" / "connection.yml").read_text())
    key = Path(connection["ansible_ssh_private_key_file"]).read_text()
    found["ssh private key"] = key
    return found


def leak_forms(secrets: dict[str, str]) -> dict[str, str]:
    """Each secret in the forms a leak would take, labelled (never printing the secret itself)."""
    forms: dict[str, str] = {}
    for name, value in secrets.items():
        if "PRIVATE KEY" in value:
            forms[f"{name}: header"] = "PRIVATE KEY-----"
            for index, line in enumerate(value.splitlines()):
                if len(line) >= 16 and "-----" not in line:
                    forms[f"{name}: line {index}"] = line
            continue
        if len(value) < 8:
            continue  # Ansible masks such values everywhere; nothing meaningful to look for
        forms[name] = value
        forms[f"{name} (base64)"] = base64.b64encode(value.encode()).decode().rstrip("=")
        forms[f"{name} (URL-quoted)"] = urllib.parse.quote(value, safe="")
        try:
            decoded = base64.b64decode(value, validate=True)
            if len(decoded) >= 8:
                forms[f"{name} (decoded, hex)"] = decoded.hex()
        except (binascii.Error, ValueError):
            pass
        if len(value) >= 16:
            for start in range(0, len(value) - 12 + 1):
                forms[f"{name} (characters {start}-{start + 11})"] = value[start:start + 12]
    return forms


def leaks(text: str, forms: dict[str, str]) -> list[str]:
    """The secrets found, each with the text before its first piece (so no piece of it is shown)."""
    first: dict[str, tuple[int, str]] = {}
    for label, form in forms.items():
        at = text.find(form)
        secret = label.split(" (")[0].split(": ")[0]
        if at >= 0 and (secret not in first or at < first[secret][0]):
            first[secret] = (at, label)
    found = []
    for at, label in sorted(first.values()):
        before = text[max(0, at - 300):at]
        for other in sorted(forms.values(), key=len, reverse=True):  # other secrets, whole
            before = before.replace(other, "<SECRET>")
        found.append(f"{label}, after: ...{' '.join(before.split())[-200:]}")
    return found


# ------------------------------------------------------------------ the lab, read out of band
def canary_entries(lab: Any) -> dict[str, list[str]]:
    out = {}
    for name in ("dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"):
        proc = lab.host_run(name, ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", LDAPI, "-b",
                                   "dc=example,dc=test", "(cn=zg-canary-*)", "1.1"], capture_output=True, text=True)
        out[name] = sorted(line for line in proc.stdout.splitlines() if line.startswith("dn:"))
    return out


def store_files(lab: Any) -> list[str]:
    root = Path(lab.dir) / "scality" / "sites"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def host_processes(lab: Any) -> dict[str, Counter]:
    out = {}
    for name, host in lab.hosts.items():
        pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True).stdout.split()
        names = Counter()
        for pid in pids:
            try:
                names[Path(f"/proc/{pid}/comm").read_text().strip()] += 1
            except OSError:
                pass  # gone since listed
        out[name] = names
    return out


def private_run(lab: Any) -> dict[str, list[str]]:
    out = {}
    for name in lab.hosts:
        if "sshd" not in lab.hosts[name].services:
            continue
        proc = lab.host_run(name, ["find", "/run", "-maxdepth", "2"], capture_output=True, text=True)
        out[name] = sorted(proc.stdout.split())
    return out


def relationships(lab: Any) -> list[tuple]:
    variables, secrets = lab.inventory_vars(), lab.secrets
    rels = []
    for cluster in variables["zimbra_geo_ontap_clusters"].values():
        with requests.Session() as http:
            http.auth = (variables["zimbra_geo_ontap_username"], secrets["ontap_password"])
            http.verify = variables["zimbra_geo_ca_path"]
            http.trust_env = False
            resp = http.get(f"https://{cluster['hostname']}:{cluster['port']}/api/snapmirror/relationships",
                            params={"fields": "uuid,state,healthy,source.path,destination.path"}, timeout=10)
            resp.raise_for_status()
            rels += [(r["uuid"], r["source"]["path"], r["destination"]["path"], r["state"], r["healthy"])
                     for r in resp.json()["records"]]
    return sorted(rels)


def lab_state(lab: Any) -> dict[str, Any]:
    return {"canaries": canary_entries(lab), "store": store_files(lab), "processes": host_processes(lab),
            "run": private_run(lab), "relationships": relationships(lab)}


def wait_for(what: str, probe: Any, expected: Any, deadline: float = 60.0) -> Any:
    """Poll ``probe()`` until it returns ``expected`` (faults heal asynchronously: rebuilds, retries)."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value == expected or time.monotonic() > end:
            return value
        time.sleep(0.5)


# ------------------------------------------------------------------ the walk
def operator_directory(path: Path) -> Path:
    """An operator's working directory: an ansible.cfg as README's Prerequisites suggest, and an
    inventory layer with the example inventory's connection settings, where it keeps them
    (group_vars of the site groups, which outrank the lab inventory's group_vars/all)."""
    path.mkdir()
    (path / "ansible.cfg").write_text("[defaults]\nforks = 20\n\n[ssh_connection]\npipelining = True\n")
    (path / "inventory" / "group_vars").mkdir(parents=True)
    (path / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"dc1": {}, "dc2": {}}}}))
    connection = {"ansible_user": OPERATOR_USER, "ansible_become": True,
                  "ansible_become_method": "ansible.builtin.sudo"}
    for site in ("dc1", "dc2"):
        (path / "inventory" / "group_vars" / f"{site}.yml").write_text(yaml.safe_dump(connection))
    return path


@pytest.fixture(scope="module", name="walk")
def fixture_walk(lab, installed, tmp_path_factory) -> Walk:
    tmp = tmp_path_factory.mktemp("walk")
    caller = operator_directory(tmp / "operator")
    walk = Walk(reports=caller / "reports", verify_reports=tmp / "verify-reports", sudo_logs={
        name: host.dir / "sudo.log" for name, host in lab.hosts.items() if "sshd" in host.services})
    local_tmp = tmp / "local-tmp"
    env = {**installed.env, "ANSIBLE_VERBOSITY": "3", "ANSIBLE_LOCAL_TMP": str(local_tmp)}
    lab.reset()

    def run(label: str, playbook: str, limit: str | None = None, report_dir: Path | None = None) -> int:
        for log in walk.sudo_logs.values():
            log.unlink(missing_ok=True)
        argv = [str(BIN / "ansible-playbook"), f"mailops.zimbra_geo.{Path(playbook).stem}",
                "-i", str(lab.inventory), "-i", str(caller / "inventory")] + (["-l", limit] if limit else [])
        if report_dir:
            argv += ["-e", f"zimbra_geo_report_dir={report_dir}"]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=caller)
        walk.seconds[label] = time.monotonic() - started
        walk.outputs[label] = proc.stdout + proc.stderr
        walk.returncodes[label] = proc.returncode
        walk.became[label] = sorted(host for host, log in walk.sudo_logs.items()
                                    if log.exists() and f"{OPERATOR_USER} : " in log.read_text())
        return proc.returncode

    assert run("site_build.yml", "site_build.yml") == 0, walk.outputs["site_build.yml"][-4000:]

    # The scheduled verify: one run a "minute", faults coming and going between runs, the
    # last run after every fault is healed.
    walk.before = lab_state(lab)
    cycle = FAULTS[1:] if RUNS <= len(FAULTS) else FAULTS
    faults = list(itertools.islice(itertools.cycle(cycle), RUNS - 1)) + [("none (all healed)", None, None)]
    for index, (what, fault, heal) in enumerate(faults):
        if fault:
            lab.cli("fault", *fault)
        rc = run(f"replication_verify.yml #{index + 1} ({what})", "replication_verify.yml",
                 report_dir=walk.verify_reports)
        walk.verify_runs.append((what, rc))
        if heal:
            lab.cli("fault", *heal)
    # Healing is asynchronous (Scality rebuilds, LDAP catch-up): wait for the known end state.
    wait_for("the sproxyd stores", lambda: store_files(lab), walk.before["store"])
    walk.after = lab_state(lab)
    walk.after["remote_tmp"] = sorted(str(p) for host in lab.hosts.values()
                                      for p in (host.dir / "ops-home" / ".ansible").rglob("*"))
    walk.after["local_tmp"] = sorted(str(p) for p in local_tmp.rglob("*")) if local_tmp.exists() else []
    walk.after["ssh_control_sockets"] = len(list((Path(lab.dir) / "ssh").glob("cp-*")))

    # Every other playbook, then the failover and the failback.
    known = set(SEQUENCE_FIRST) | set(SEQUENCE_LAST) | {"replication_verify.yml"}
    others = sorted(p.name for p in (REPO / "playbooks").glob("*.yml") if p.name not in known)
    # The installed artifact has the same playbooks as the working tree.
    assert sorted(n for n in installed.names if n.startswith("playbooks/") and n.endswith(".yml")) == sorted(
        f"playbooks/{p.name}" for p in (REPO / "playbooks").glob("*.yml"))
    for playbook in others + SEQUENCE_LAST:
        run(playbook, playbook, limit=LIMITS.get(playbook, "dc2" if playbook not in ("lab_smoke.yml",) else None))
    return walk


# ------------------------------------------------------------------ secrets
def test_every_playbook_ran(walk):
    print("\n".join(f"{seconds:7.1f} s  {label}" for label, seconds in walk.seconds.items()))
    playbooks = {p.name for p in (REPO / "playbooks").glob("*.yml")}
    ran = {label.split(" ")[0] for label in walk.outputs}
    assert playbooks <= ran
    for playbook in ("site_build.yml", "failover.yml", "failback.yml"):
        assert walk.returncodes[playbook] == 0, walk.outputs[playbook][-4000:]
    assert all("<127.10." in out or "ESTABLISH" in out for out in walk.outputs.values()), "not at -vvv"


def test_every_run_logged_in_as_the_operator_and_became_root_on_the_hosts_only(walk):
    """The example inventory's connection: SSH as a non-root account, sudo on the site groups'
    hosts, never on the controller (the API tasks run there as whoever runs Ansible)."""
    for label, out in walk.outputs.items():
        users = set(re.findall(r"ESTABLISH SSH CONNECTION FOR USER: (\S+)", out))
        assert users <= {OPERATOR_USER}, (label, users)
        host_runs = [line for line in out.splitlines() if re.match(r"<127\.10\.[12]\.\d+> SSH: EXEC .*python", line)]
        assert all("sudo -H -S -n" in line for line in host_runs), label
        local_runs = [line for line in out.splitlines() if line.startswith("<localhost> EXEC")]
        assert not [line for line in local_runs if "sudo" in line], label
        if host_runs:
            assert walk.became[label], f"{label}: no host's sudo log has the run"
    for label in ("site_build.yml", "failover.yml", "failback.yml", "prereq_check.yml"):
        assert "ESTABLISH SSH CONNECTION FOR USER" in walk.outputs[label], label
    # Out of band: the Zimbra hosts of both sites logged the build's commands as root.
    assert {"dc1-mbox1", "dc2-mbox1", "dc1-mta1", "dc2-mta1"} <= set(walk.became["site_build.yml"])
    # Reports land under the operator's directory (its ./reports), not in the installed collection.
    assert sorted(p.name for p in walk.reports.glob("failover-*.json")), sorted(walk.reports.iterdir())
    assert sorted(p.name for p in walk.reports.glob("failback-*.json"))


def test_no_secret_in_any_output_record_or_report(lab, walk):
    forms = leak_forms(secret_values(lab))
    assert len(forms) > 20, "the lab inventory should hold passwords, TSIG secrets and a key"
    found = {label: leaks(text, forms) for label, text in walk.outputs.items()}
    for directory in (walk.reports, walk.verify_reports):
        for file in sorted(directory.rglob("*")) if directory.exists() else []:
            if file.is_file():
                found[str(file.name)] = leaks(file.read_text(errors="replace"), forms)
    assert any(directory.exists() and any(directory.iterdir()) for directory in (walk.reports, walk.verify_reports))
    leaked = {label: what[:3] for label, what in found.items() if what}
    assert leaked == {}, "\n".join(f"{label}: {what}" for label, what in leaked.items())


# ------------------------------------------------------------------ load
def test_scheduled_verify_sees_the_faults_and_passes_once_healed(walk):
    wrong = [(what, rc) for what, rc in walk.verify_runs[:-1] if (rc == 0) != (what == "none")]
    assert wrong == [], "verify passed under a fault, or failed without one"
    last = f"replication_verify.yml #{len(walk.verify_runs)}"
    label = next(label for label in walk.outputs if label.startswith(last))
    assert walk.verify_runs[-1][1] == 0, walk.outputs[label][-4000:]


def test_scheduled_verify_leaves_the_lab_as_it_found_it(lab, walk):
    before, after = walk.before, walk.after
    assert after["canaries"] == before["canaries"] == {name: [] for name in before["canaries"]}
    assert after["store"] == before["store"], "canary objects or queued operations left in sproxyd"
    assert after["relationships"] == before["relationships"]
    assert after["run"] == before["run"], "files left in a host's private /run"
    for host, names in after["processes"].items():
        grown = {name: n - before["processes"][host][name] for name, n in names.items()
                 if n > before["processes"][host][name] and name != "sshd"}
        assert grown == {}, f"processes left on {host}"
        # The listener, plus one persistent session (ControlPersist) and its child.
        assert names["sshd"] <= before["processes"][host]["sshd"] + 2, f"sshd sessions pile up on {host}"
    assert after["ssh_control_sockets"] <= len(lab.core.ssh_hosts())
    assert after["remote_tmp"] == [] or all(Path(p).is_dir() for p in after["remote_tmp"])
    assert after["local_tmp"] == [] or all(Path(p).is_dir() for p in after["local_tmp"])
    reports = sorted(p.name for p in walk.verify_reports.iterdir())
    stamped = [n for n in reports if re.fullmatch(r"replication-verify-\d{8}T\d{6}Z\.(json|html)", n)]
    assert len(stamped) == 2 * len(walk.verify_runs), reports
    assert set(reports) - set(stamped) == {"replication-verify-latest.json", "replication-verify-latest.html"}
