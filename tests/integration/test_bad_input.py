"""Bad input: every broken inventory, variable or limit fails before any change.

One table, one real playbook run per row against a copy of the lab's inventory with one thing
broken (or a bad limit, or a missing confirmation). Each row asserts the message names the
problem, and that the platform is exactly as before: SnapMirror relationships and the ONTAP
job list of both clusters, the records of both DNS views, the mailbox hosts' mounts and
zmcontrol status, cn=config and contextCSN of every LDAP master, and no run record written.

The structural rows stop in the inventory check, the credential rows in its pre-flight read
(mailops.zimbra_geo.access_check), the rest in the failover role's refusals. A target that is
already active is not an error: the run is a no-op that says so (a re-run must converge).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import dns.message
import dns.query
import dns.tsigkeyring
import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
Change = Callable[[dict, dict], None]
WRONG = "wrong-secret-for-this-test"
WRONG_TSIG = "d3JvbmctdHNpZy1zZWNyZXQtZm9yLXRoaXMtdGVzdA=="  # valid base64, not the key's secret
DNS_NAMES = ("mail", "smtp", "webmail", "imap", "mbox1")
LDAPI = "ldapi://%2Frun%2Fslapd%2Fldapi"


@dataclass
class Row:
    id: str
    message: str
    change: Change | None = None
    playbook: str = "failover.yml"
    limit: str | None = "dc2"
    args: list[str] = field(default_factory=list)
    succeeds: bool = False  # a no-op that says why, instead of a failure


def hosts_of(hosts: dict, site: str) -> dict:
    return hosts["all"]["children"][site]["hosts"]


def _one_site(hosts, platform):
    platform["zimbra_geo_sites"] = ["dc1"]


def _three_sites(hosts, platform):
    platform["zimbra_geo_sites"] = ["dc1", "dc2", "dc3"]


def _three_masters(hosts, platform):
    hosts_of(hosts, "dc1")["dc1-ldap3"] = {"ansible_host": "127.10.1.13", "zimbra_geo_ldap_server_id": 5,
                                           "zimbra_geo_ldap_uri": "ldap://127.10.1.13"}
    hosts["all"]["children"]["ldap_masters"]["hosts"]["dc1-ldap3"] = None


def _duplicate_sid(hosts, platform):
    hosts_of(hosts, "dc2")["dc2-ldap2"]["zimbra_geo_ldap_server_id"] = 3


def _no_peer(hosts, platform):
    del hosts_of(hosts, "dc1")["dc1-mbox1"]["zimbra_geo_mailbox_peer"]


def _peer_same_site(hosts, platform):
    hosts_of(hosts, "dc2")["dc2-mbox1"]["zimbra_geo_mailbox_peer"] = "dc2-mbox1"


def _missing_tsig(hosts, platform):
    del platform["zimbra_geo_dns_views"]["internal"]["key_secret"]


def _missing_ontap(hosts, platform):
    del platform["zimbra_geo_ontap_clusters"]


def _missing_scality(hosts, platform):
    del platform["zimbra_geo_scality_sproxyd"]


def _unknown_active(hosts, platform):
    platform["zimbra_geo_active_site"] = "dc3"


def _wrong_ontap(hosts, platform):
    platform["zimbra_geo_ontap_password"] = WRONG


def _wrong_ldap_admin(hosts, platform):
    platform["zimbra_geo_ldap_admin_password"] = WRONG


def _wrong_ldap_config(hosts, platform):
    platform["zimbra_geo_ldap_config_password"] = WRONG


def _wrong_scality(hosts, platform):
    platform["zimbra_geo_scality_supervisor_password"] = WRONG


def _wrong_tsig(hosts, platform):
    platform["zimbra_geo_dns_views"]["external"]["key_secret"] = WRONG_TSIG


def _unknown_relationship(hosts, platform):
    for volume in hosts_of(hosts, "dc2")["dc2-mbox1"]["zimbra_geo_mailbox_volumes"]:
        volume["volume"] = volume["volume"].replace("mbox1", "mbox9")


def _host_of_unknown_site(hosts, platform):
    hosts_of(hosts, "dc2")["dc2-mta1"]["zimbra_geo_site"] = "dc3"


def _dns_records_without_target(hosts, platform):
    platform["zimbra_geo_dns_records"] = [{"record": "mail", "sites": {"dc1": {"internal": ["127.10.1.31"]}}}]


ROWS = [
    # The inventory check: the shape of the platform.
    Row("one_site", "zimbra_geo_sites must name exactly two sites", _one_site),
    Row("three_sites", "zimbra_geo_sites must name exactly two sites", _three_sites),
    Row("three_ldap_masters_in_a_site", "site dc1 must have exactly 2 LDAP masters", _three_masters),
    Row("duplicate_server_ids", "LDAP server ID 3 is used by both dc2-ldap1 and dc2-ldap2", _duplicate_sid),
    Row("mailbox_without_peer", "dc1-mbox1 needs zimbra_geo_mailbox_peer", _no_peer),
    Row("peer_on_the_same_site", "the peer must be on the other site", _peer_same_site),
    Row("missing_tsig_key", "DNS view internal needs TSIG key (zimbra_geo_dns_views.internal.key_secret)",
        _missing_tsig),
    Row("missing_ontap_clusters", "zimbra_geo_ontap_clusters.dc1.hostname", _missing_ontap),
    Row("missing_sproxyd", "Scality needs an sproxyd endpoint for site dc1", _missing_scality),
    Row("unknown_active_site", "zimbra_geo_active_site must be one of dc1, dc2", _unknown_active),
    # The pre-flight read: each backend refuses the credentials.
    Row("wrong_ontap_password", "ONTAP cluster 127.10.2.50:443 (site dc2): refused the credentials "
        "(zimbra_geo_ontap_username / zimbra_geo_ontap_password)", _wrong_ontap),
    Row("wrong_ldap_admin_password", "LDAP master ldap://127.10.1.11 (dc1-ldap1): refused the bind as "
        "cn=admin,dc=example,dc=test (zimbra_geo_ldap_admin_dn / zimbra_geo_ldap_admin_password)",
        _wrong_ldap_admin, playbook="site_build.yml", limit=None),
    Row("wrong_ldap_config_password", "LDAP master ldap://127.10.2.12 (dc2-ldap2): refused the bind as "
        "cn=config (zimbra_geo_ldap_config_password)", _wrong_ldap_config, playbook="site_build.yml", limit=None),
    Row("wrong_scality_password", "Scality Supervisor https://127.10.1.60:443: refused the credentials "
        "(zimbra_geo_scality_supervisor_username / zimbra_geo_scality_supervisor_password)", _wrong_scality,
        playbook="replication_verify.yml", limit=None),
    Row("wrong_tsig_secret", "DNS view external at 127.10.0.53: query example.test. SOA: 127.10.0.53 port 53 "
        "(TCP) rejected TSIG key 'k-external'", _wrong_tsig),
    # The failover's own refusals.
    Row("unknown_relationship", "svm_dc2:mbox9_db, svm_dc2:mbox9_index are neither all destinations",
        _unknown_relationship),
    Row("no_limit", "run with -l <site>", limit=None),
    Row("limit_unknown_site", "Could not match supplied host pattern, ignoring: dc3", limit="dc3"),
    Row("limit_unknown_host", "Could not match supplied host pattern, ignoring: nosuchhost", limit="nosuchhost"),
    Row("limit_on_both_sites", "covers the sites dc1, dc2", limit="dc1-mbox1,dc2-mbox1"),
    Row("host_of_an_unknown_site", "covers the sites dc3", _host_of_unknown_site, limit="dc2-mta1"),
    Row("disaster_without_confirmation", "site_failover_confirm_disaster=true",
        args=["-e", "site_failover_mode=disaster"]),
    Row("dns_records_without_the_target", "gives no values for it", _dns_records_without_target),
    Row("target_already_active", "dc1 is already the active site (the SnapMirror source); nothing to do",
        limit="dc1", succeeds=True),
]


# ------------------------------------------------------------------ the platform, read out of band
def ontap_state(lab: Any) -> dict:
    variables, secrets = lab.inventory_vars(), lab.secrets
    out = {}
    for site, cluster in variables["zimbra_geo_ontap_clusters"].items():
        base = f"https://{cluster['hostname']}:{cluster['port']}/api"
        with requests.Session() as http:
            http.auth = (variables["zimbra_geo_ontap_username"], secrets["ontap_password"])
            http.verify = variables["zimbra_geo_ca_path"]
            http.trust_env = False
            rels = []
            for extra in ({}, {"list_destinations_only": "true"}):
                resp = http.get(f"{base}/snapmirror/relationships", timeout=10,
                                params={"fields": "uuid,state,healthy,source.path,destination.path", **extra})
                resp.raise_for_status()
                rels += [(r["uuid"], r["source"]["path"], r["destination"]["path"], r["state"], r["healthy"])
                         for r in resp.json()["records"]]
            jobs = http.get(f"{base}/cluster/jobs", params={"fields": "uuid"}, timeout=10)
            jobs.raise_for_status()
        out[site] = {"relationships": sorted(rels), "jobs": sorted(j["uuid"] for j in jobs.json()["records"])}
    return out


def dns_state(lab: Any) -> dict:
    out = {}
    for view, spec in lab.inventory_vars()["zimbra_geo_dns_views"].items():
        keyring = dns.tsigkeyring.from_text({spec["key_name"]: (spec["key_algorithm"], spec["key_secret"])})
        for name in DNS_NAMES:
            query = dns.message.make_query(f"{name}.{spec['zone']}", "A")
            query.use_tsig(keyring, keyname=spec["key_name"])
            answer = dns.query.tcp(query, spec["server"], port=spec["port"], timeout=5)
            out[f"{view}/{name}"] = sorted(rr.to_text() for rrset in answer.answer for rr in rrset)
    return out


def host_state(lab: Any) -> dict:
    out = {}
    for name in ("dc1-mbox1", "dc2-mbox1"):
        mounts = lab.host_run(name, ["findmnt", "-rn", "-o", "TARGET,SOURCE"], capture_output=True, text=True)
        status = lab.host_run(name, ["su", "-", "zimbra", "-c", "/opt/zimbra/bin/zmcontrol status"],
                              check=False, capture_output=True, text=True)
        out[name] = {"mounts": sorted(line for line in mounts.stdout.splitlines() if "/opt/zimbra/" in line),
                     "zmcontrol": (status.returncode, status.stdout)}
    for name in ("dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"):
        config = lab.host_run(name, ["ldapsearch", "-Q", "-LLL", "-o", "ldif-wrap=no", "-Y", "EXTERNAL", "-H", LDAPI,
                                     "-b", "cn=config", "(|(olcServerID=*)(olcSyncrepl=*)(olcOverlay=*))",
                                     "olcServerID", "olcSyncrepl", "olcMultiProvider", "olcOverlay"],
                              capture_output=True, text=True)
        csn = lab.host_run(name, ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", LDAPI, "-b",
                                  "dc=example,dc=test", "-s", "base", "contextCSN"],
                           check=False, capture_output=True, text=True)
        out[name] = {"config": config.stdout, "contextCSN": csn.stdout}
    return out


def platform_state(lab: Any) -> dict:
    return {"ontap": ontap_state(lab), "dns": dns_state(lab), "hosts": host_state(lab)}


# ------------------------------------------------------------------ fixtures
def broken_inventory(lab: Any, tmp_path: Path, change: Change | None) -> Path:
    inv = tmp_path / "inventory"
    shutil.copytree(lab.inventory, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    platform = yaml.safe_load((inv / "group_vars" / "all" / "platform.yml").read_text())
    if change:
        change(hosts, platform)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars" / "all" / "platform.yml").write_text(yaml.safe_dump(platform))
    return inv


@dataclass
class Outcome:
    proc: subprocess.CompletedProcess
    reports: Path


@pytest.fixture(scope="module", name="outcomes")
def fixture_outcomes(lab, tmp_path_factory) -> dict[str, Any]:
    """Every row's run, a few at once (each stops in seconds), between two reads of the platform."""
    lab.reset()
    before = platform_state(lab)

    def run(row: Row) -> Outcome:
        tmp = tmp_path_factory.mktemp(row.id)
        reports = tmp / "reports"
        proc = lab.playbook(REPO / "playbooks" / row.playbook, inventory=broken_inventory(lab, tmp, row.change),
                            limit=row.limit, args=[*row.args, "-e", f"zimbra_geo_report_dir={reports}"])
        return Outcome(proc, reports)

    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(zip([r.id for r in ROWS], pool.map(run, ROWS), strict=True))
    return {"before": before, "after": platform_state(lab), "runs": runs}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_fails_before_any_change(outcomes, row: Row):
    proc, reports = outcomes["runs"][row.id].proc, outcomes["runs"][row.id].reports
    out = " ".join((proc.stdout + proc.stderr).split())
    if row.succeeds:
        assert proc.returncode == 0, out
    else:
        assert proc.returncode != 0, out
        assert "nothing was changed" in out.lower() or "no hosts to target" in out, out
    assert row.message in out, out
    assert "UNREACHABLE" not in proc.stdout, "a host was contacted that does not exist"
    # A refusal inside the recorded steps (the SnapMirror read) leaves a record of it: failed,
    # with no step that changed anything.
    for record in reports.glob("*.json") if reports.exists() else []:
        data = json.loads(record.read_text())
        assert data["result"] == ("success" if row.succeeds else "failed") or row.succeeds, data
        assert [s["name"] for s in data["steps"] if s["result"] == "changed"] == [], data
    # The ONTAP job lists prove no state change was even asked for; the rest is read as is.
    assert outcomes["after"] == outcomes["before"], "a run of the table changed the platform"

def test_the_example_inventory_passes_the_inventory_check(tmp_path):
    """The documented production-shaped inventory is valid (its hosts do not exist: no pre-flight read)."""
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        "- name: Check the inventory\n  hosts: all\n  gather_facts: false\n"
        "  roles:\n    - role: mailops.zimbra_geo.inventory_check\n"
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventories" / "example"),
         str(playbook), "-e", "inventory_check_access=false"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed=0" in proc.stdout
