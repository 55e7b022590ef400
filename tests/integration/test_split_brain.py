"""Split brain on the lab: two sites must never both serve mail.

- A disaster failover refuses while any part of the old site the guard probes still answers
  (only a mailbox server's sshd, only the ONTAP API, only one LDAP master), changing nothing.
- After a disaster failover, the old site comes back as it went down. replication-verify
  fails loudly naming it (split brain while its Zimbra runs; the returning site while only
  its stale volumes are mounted); site-build, a disaster failover again and a failover to the
  returning site all leave its Zimbra stopped; the failback fences it and its run record
  shows the fencing step with what was fenced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
DNS_RECORDS = REPO / "molecule" / "failover_shared" / "inventory" / "dns-records.yml"
UPDATE = """
- name: The mirrors' scheduled transfer
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Update every relationship into dc2
      mailops.zimbra_geo.snapmirror:
        hostname: "{{ zimbra_geo_ontap_clusters.dc2.hostname }}"
        port: "{{ zimbra_geo_ontap_clusters.dc2.port }}"
        username: "{{ zimbra_geo_ontap_username }}"
        password: "{{ zimbra_geo_ontap_password }}"
        ca_path: "{{ zimbra_geo_ca_path }}"
        svm: "{{ zimbra_geo_ontap_clusters.dc2.svm }}"
        state: updated
"""
DISASTER = {"site_failover_mode": "disaster", "site_failover_confirm_disaster": True}


class Platform:
    def __init__(self, lab: Any, report_dir: Path) -> None:
        self.lab, self.report_dir = lab, report_dir
        self.variables = lab.inventory_vars()

    def run(self, playbook: str, limit: str | None = None, extra_vars: dict[str, Any] | None = None):
        return self.lab.playbook(REPO / "playbooks" / playbook, limit=limit,
                                 extra_vars={"zimbra_geo_report_dir": str(self.report_dir), **(extra_vars or {})},
                                 args=["-i", str(DNS_RECORDS)])

    def zimbra(self, host: str, action: str) -> Any:
        return self.lab.host_run(host, ["su", "-", "zimbra", "-c", f"/opt/zimbra/bin/zmcontrol {action}"], check=False)

    def mailbox_running(self, host: str) -> bool:
        status = self.zimbra(host, "status").stdout
        return any(line.split()[:1] == ["mailbox"] and line.split()[-1] == "Running" for line in status.splitlines())

    def relationships(self, site: str) -> list[dict[str, Any]]:
        cluster = self.variables["zimbra_geo_ontap_clusters"][site]
        response = requests.get(
            f"https://{cluster['hostname']}:{cluster.get('port', 443)}/api/snapmirror/relationships",
            params={"fields": "source.path,destination.path,state"},
            auth=(self.variables["zimbra_geo_ontap_username"], self.variables["zimbra_geo_ontap_password"]),
            verify=self.variables["zimbra_geo_ca_path"], timeout=10)
        response.raise_for_status()
        return response.json()["records"]

    def latest(self, pattern: str) -> dict[str, Any]:
        return json.loads(sorted(self.report_dir.glob(pattern))[-1].read_text())


def out(proc: Any) -> str:
    return " ".join((proc.stdout + proc.stderr).split())


@pytest.fixture(scope="module")
def platform(lab, tmp_path_factory):
    """A reset lab, built: dc1 active, dc2 the standby."""
    lab.reset()
    plat = Platform(lab, tmp_path_factory.mktemp("split-brain-reports"))
    proc = plat.run("site_build.yml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    yield plat
    # Leave the lab as the tests after this module expect it: initial state, faults healed.
    lab.reset()


# The mailbox servers' sshd and the LDAP masters are probed by the same task: one of them
# stands for both.
@pytest.mark.parametrize("answering", ["dc1-mbox1", "dc1-ontap"], ids=["only-a-mailbox-sshd", "only-the-ontap-api"])
def test_disaster_mode_refuses_while_part_of_the_old_site_answers(lab, platform, answering):
    before = platform.relationships("dc2")
    for name, host in lab.hosts.items():
        if host.site == "dc1" and name != answering:
            lab.core.set_host_link(host, False)  # as `lab fault stop HOST`: unreachable
    try:
        proc = platform.run("failover.yml", limit="dc2", extra_vars=DISASTER)
    finally:
        lab.cli("fault", "heal")
    text = out(proc)
    assert proc.returncode != 0, text[-3000:]
    assert "still answers" in text and "Nothing was changed" in text, text[-3000:]
    named = "(ONTAP API)" if answering == "dc1-ontap" else answering
    assert named in text.split("still answers", 1)[1].split("Nothing was changed", 1)[0], text[-3000:]
    assert platform.relationships("dc2") == before
    assert platform.mailbox_running("dc1-mbox1") and not platform.mailbox_running("dc2-mbox1")


def test_a_returning_site_is_detected_never_started_and_fenced_by_the_failback(lab, platform):
    # The mirrors' last scheduled transfer, then dc1 is lost as it runs: cut off, its Zimbra
    # still running on its volumes.
    proc = platform.lab.playbook(UPDATE, extra_vars={"zimbra_geo_report_dir": str(platform.report_dir)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    lab.cli("fault", "cut-site", "dc1")
    proc = platform.run("failover.yml", limit="dc2", extra_vars=DISASTER)
    assert proc.returncode == 0, proc.stdout[-4000:]
    lab.cli("fault", "heal")

    # Back with its mailbox running: a split brain, the returning site named.
    proc = platform.run("replication_verify.yml")
    text = out(proc)
    assert proc.returncode != 0 and "SPLIT BRAIN" in text, text[-3000:]
    assert "dc1 is returning after the failover to dc2" in text, text[-3000:]
    report = platform.latest("replication-verify-2*.json")
    assert report["split_brain"] and report["returning_site"] == "dc1"

    # Its Zimbra stopped by hand, its stale volumes still mounted: still the returning site.
    for host in ("dc1-mbox1", "dc1-mta1", "dc1-proxy1"):
        platform.zimbra(host, "stop")
    proc = platform.run("replication_verify.yml")
    text = out(proc)
    assert proc.returncode != 0 and "RETURNING SITE dc1" in text, text[-3000:]
    assert "dc1-mbox1:/opt/zimbra/db" in text and "failback.yml -l dc1" in text, text[-3000:]
    assert "See docs/operator-guide.md#a-site-returns-after-a-disaster-failover" in text, text[-3000:]
    report = platform.latest("replication-verify-2*.json")
    assert not report["split_brain"] and report["returning_site"] == "dc1"
    assert "standby_fenced" in report["failed_checks"]

    # No playbook starts it: site-build, a disaster failover again, a failover to it.
    for playbook, limit, extra, refusal in (
        ("site_build.yml", None, None, "broken off"),
        ("failover.yml", "dc2", DISASTER, "still answers"),
        ("failover.yml", "dc1", None, "fail back"),
    ):
        proc = platform.run(playbook, limit=limit, extra_vars=extra)
        assert proc.returncode != 0 and refusal in out(proc), out(proc)[-3000:]
        assert not platform.mailbox_running("dc1-mbox1"), f"{playbook} -l {limit} started dc1's mailbox"
        assert platform.mailbox_running("dc2-mbox1"), f"{playbook} -l {limit} stopped dc2's mailbox"

    # It comes up again on its own (a reboot): the failback fences it before the resync.
    assert platform.zimbra("dc1-mbox1", "start").returncode == 0
    proc = platform.run("failback.yml", limit="dc1")
    assert proc.returncode == 0, proc.stdout[-4000:]
    record = platform.latest("failback-dc1-*.json")
    fence = record["steps"][0]
    assert fence["name"] == "fence_returning_site" and fence["result"] == "changed", record["steps"]
    assert "Zimbra stopped on dc1-mbox1" in fence["detail"], fence
    assert "dc1-mbox1:/opt/zimbra/db" in fence["detail"], fence
    assert [s["name"] for s in record["steps"]].index("reverse_resync") == 1
    proc = platform.run("replication_verify.yml")
    assert proc.returncode == 0, out(proc)[-3000:]
    assert platform.latest("replication-verify-2*.json")["active_site"] == "dc1"
