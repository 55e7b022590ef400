"""A failover killed right after the break, run again: it completes and nothing is lost."""

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


def test_mail_from_before_is_readable_on_dc2(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("read on the new active mailbox")
    assert "interrupted-before" in checks.subjects(host)


def test_dns_views_answer_dc2(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    checks.check_dns(host.ansible.get_variables(), ACTIVE)


def test_rerun_found_the_break_done_and_completed(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    # The killed run wrote no record; the re-run is the first.
    records = checks.run_records("failover", ACTIVE)
    steps = {s["name"]: s["result"] for s in records[0]["steps"]}
    assert records[0]["storage_state_before"] == "promoted"
    assert steps["break_mirrors"] == "ok" and steps["start_new_site"] == "changed"
    assert records[0]["result"] == "done"
    assert records[-1]["result"] == "no change"
