"""After a planned failover to dc2: nothing lost, dc2 serves, dc1 is a standby."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "failover_shared"))
import checks  # noqa: E402

ACTIVE = "dc2"


def name_of(host):
    return host.backend.get_hostname()


def test_mailbox_volumes_mounted_on_dc2_only(host):
    if "-mbox" not in name_of(host):
        pytest.skip("mailbox servers only")
    checks.check_volumes(host, name_of(host), ACTIVE)


def test_zimbra_runs_on_dc2_only(host):
    if not any(role in name_of(host) for role in ("-mbox", "-mta", "-proxy")):
        pytest.skip("Zimbra hosts only")
    checks.check_services(host, name_of(host), ACTIVE)


def test_mail_from_before_the_failover_is_readable_on_dc2(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("read on the new active mailbox")
    found = checks.subjects(host)
    assert "planned-delivered" in found, found
    assert "planned-queued" in found, found


def test_outgoing_mail_leaves_from_dc2(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("sent from the new active mailbox")
    checks.check_outgoing_mail(host, host.ansible.get_variables()["zimbra_geo_lab_dir"],
                               "planned-outgoing-after", ACTIVE)


def test_dns_views_answer_dc2(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    checks.check_dns(host.ansible.get_variables(), ACTIVE)


def test_ldap_write_from_before_is_present(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    variables = host.ansible.get_variables()
    checks.check_ldap_entry(host, variables, "cn=molecule-failover," + variables["zimbra_geo_ldap_suffix"])


def test_run_records_planned_failover_lost_nothing(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    records = [r for r in checks.run_records("failover", ACTIVE) if not r["check_mode"]]
    assert records[0]["result"] == "done" and records[0]["rpo_seconds"] == 0
    assert records[0]["rto_seconds"] > 0
    assert [s["result"] for s in records[0]["steps"] if s["name"] == "break_mirrors"] == ["changed"]
    # The idempotence run changed nothing and says so.
    assert records[-1]["result"] == "no change"


def test_dc2_replicates_to_dc1_after_the_failover(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    variables = host.ansible.get_variables()
    on_dc1 = {r["destination"]["path"]: r for r in checks.relationships(variables, "dc1")}
    for volume in ("mbox1_db", "mbox1_index"):
        rel = on_dc1[f"svm_dc1:{volume}"]
        assert rel["source"]["path"] == f"svm_dc2:{volume}"
        assert rel["state"] == "snapmirrored" and rel["healthy"], rel
