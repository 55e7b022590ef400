"""After a DR test on dc2 (started, checked, refused again, cleaned up twice): production on dc1
as it was, nothing of the drill left, mail flowed, replication-verify passed, records written."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "failover_shared"))
import checks  # noqa: E402

ACTIVE = "dc1"


STATE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"))


def name_of(host):
    return host.backend.get_hostname()


def test_production_mounts_unchanged_and_no_clone_mounted(host):
    if "-mbox" not in name_of(host):
        pytest.skip("mailbox servers only")
    checks.check_volumes(host, name_of(host), ACTIVE)
    assert "drtest" not in host.run("findmnt --raw --output SOURCE").stdout
    assert not host.file("/run/zimbra-geo-dr-test.json").exists


def test_zimbra_runs_on_dc1_only_again(host):
    if not any(role in name_of(host) for role in ("-mbox", "-mta", "-proxy")):
        pytest.skip("Zimbra hosts only")
    if name_of(host).startswith("dc2-") and "-mbox" not in name_of(host):
        pytest.skip("the standby's MTA and proxy may run either way")
    checks.check_services(host, name_of(host), ACTIVE)


def test_clones_destroyed_and_mirrors_replicating(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    variables = host.ansible.get_variables()
    cluster = variables["zimbra_geo_ontap_clusters"]["dc2"]
    response = requests.get(
        f"https://{cluster['hostname']}:{cluster.get('port', 443)}/api/storage/volumes",
        params={"fields": "name,clone"},
        verify=variables["zimbra_geo_ca_path"],
        timeout=10,
        auth=(variables["zimbra_geo_ontap_username"], variables["zimbra_geo_ontap_password"]),
    )
    response.raise_for_status()
    names = sorted(v["name"] for v in response.json()["records"])
    assert names == ["mbox1_db", "mbox1_index"], names
    rels = checks.relationships(variables, "dc2")
    assert {(r["state"], r["healthy"]) for r in rels} == {("snapmirrored", True)}, rels


def test_dns_production_unchanged_and_test_name_gone(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    variables = host.ansible.get_variables()
    checks.check_dns(variables, ACTIVE)
    for view in variables["zimbra_geo_dns_views"].values():
        assert checks.query(view, "drtest-mbox1") == []


def test_mail_flowed_on_the_active_site_during_the_drill(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("read on the active mailbox")
    found = checks.subjects(host)
    assert "drill-before" in found and "drill-during" in found, found


def test_replication_verify_passed_during_the_drill_and_saw_it(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    log = (STATE / "verify-during-drill.log").read_text()
    assert "failed=0" in log and "SPLIT BRAIN" not in log
    verify = sorted((STATE / "reports").glob("replication-verify*.json"))
    assert verify, "no replication-verify report"
    content = verify[-1].read_text()
    assert "DR test on clones" in content


def test_drill_records_tell_the_story(host):
    if name_of(host) != "dc1-mbox1":
        pytest.skip("once")
    records = checks.run_records("dr-test", "dc2")
    assert [(r["action"], r["result"]) for r in records] == [
        ("start", "running"),
        ("run", "failed"),
        ("cleanup", "cleaned up"),
        ("cleanup", "cleaned up"),
    ]
    start, refused, cleanup, again = records
    assert {c["name"] for c in start["clones"]} == {"mbox1_db_drtest", "mbox1_index_drtest"}
    assert all(c["snapshot"].startswith("snapmirror.") and c["snapshot_time"] for c in start["clones"])
    assert start["checks"]["ok"] is True
    assert start["checks"]["mail"].startswith("1 messages listed, 1 read back")
    assert start["production"]["not_replicating"] == [] and start["production"]["dns_changed"] == []
    assert "earlier drill was not cleaned up" in refused["failure"] and refused["clones"] == []
    assert cleanup["leftovers"] == [] and again["leftovers"] == []
    assert [s["result"] for s in cleanup["steps"]] == ["ok", "changed"]
    assert [s["result"] for s in again["steps"]] == ["ok", "ok"]
    assert list((STATE / "reports").glob("dr-test-dc2-*.html"))
