"""After a failover to dc2 and a failback to dc1: dc1 serves every message, replication runs
dc1 -> dc2 again, dc2 is the standby."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "failover_shared"))
import checks  # noqa: E402

ACTIVE = "dc1"


def name_of(host):
    return host.backend.get_hostname()


def test_mailbox_volumes_mounted_on_dc1_only(host):
    if "-mbox" not in name_of(host):
        pytest.skip("mailbox servers only")
    checks.check_volumes(host, name_of(host), ACTIVE)


def test_zimbra_runs_on_dc1_only(host):
    if not any(role in name_of(host) for role in ("-mbox", "-mta", "-proxy")):
        pytest.skip("Zimbra hosts only")
    checks.check_services(host, name_of(host), ACTIVE)


def test_mail_from_both_sites_is_on_dc1(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("read on the active mailbox")
    found = checks.subjects(host)
    assert "failback-on-dc1" in found and "failback-on-dc2" in found, found


def test_dns_views_answer_dc1(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    checks.check_dns(host.ansible.get_variables(), ACTIVE)


def test_replication_runs_dc1_to_dc2_again(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    variables = host.ansible.get_variables()
    on_dc2 = {r["destination"]["path"]: r for r in checks.relationships(variables, "dc2")}
    for volume in ("mbox1_db", "mbox1_index"):
        rel = on_dc2[f"svm_dc2:{volume}"]
        assert rel["source"]["path"] == f"svm_dc1:{volume}"
        assert rel["state"] == "snapmirrored" and rel["healthy"], rel
    assert not [r for r in checks.relationships(variables, "dc1")
                if r["destination"]["path"].startswith("svm_dc1:mbox1_")]


def test_failback_record(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    records = checks.run_records("failback", ACTIVE)
    steps = {s["name"]: s["result"] for s in records[0]["steps"]}
    assert records[0]["result"] == "done"
    # The reverse resync brought dc1 up to date, the failover back broke the mirrors and, at
    # its end, turned them back to dc1 -> dc2 (so the failback's last step found them so).
    assert steps["reverse_resync"] == steps["break_mirrors"] == steps["protect_new_site"] == "changed"
    assert steps["restore_direction"] == "ok"
    assert records[-1]["result"] == "no change"
