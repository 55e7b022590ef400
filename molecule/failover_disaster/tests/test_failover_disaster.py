"""After a disaster failover to dc2 with dc1 cut off: mail up to the last transfer is there,
the reported data-loss window covers what came after it, dc2 serves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "failover_shared"))
import checks  # noqa: E402

ACTIVE = "dc2"


def name_of(host):
    return host.backend.get_hostname()


def on_dc2(host, names=("-mbox", "-mta", "-proxy")):
    name = name_of(host)
    if not name.startswith("dc2-") or not any(n in name for n in names):
        pytest.skip("dc2's Zimbra hosts only (dc1 is cut off)")
    return name


def test_dc2_mounts_its_volumes(host):
    checks.check_volumes(host, on_dc2(host, ("-mbox",)), ACTIVE)


def test_zimbra_runs_on_dc2(host):
    checks.check_services(host, on_dc2(host), ACTIVE)


def test_mail_before_the_last_transfer_survives_and_later_mail_is_in_the_window(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    found = checks.subjects(host)
    assert "disaster-before-transfer" in found, found
    assert "disaster-after-transfer" not in found, found
    records = [r for r in checks.run_records("failover", ACTIVE) if r["result"] == "done"]
    assert len(records) == 1, records
    record = records[0]
    assert record["mode"] == "disaster"
    broke = [s for s in record["steps"] if s["name"] == "break_mirrors"][0]
    sent = float(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "sent-after-transfer").read_text())
    # The lost message was written inside the reported window: at most rpo_seconds before the
    # break (it was sent after `sent`; the lag is whole seconds, hence the one second).
    assert record["rpo_seconds"] + 1 >= broke["started"] - sent
    assert set(record["lag_at_break_seconds"]) == {"svm_dc2:mbox1_db", "svm_dc2:mbox1_index"}


def test_dns_views_answer_dc2(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    checks.check_dns(host.ansible.get_variables(), ACTIVE)


def test_rerun_changed_nothing(host):
    if name_of(host) != "dc2-mbox1":
        pytest.skip("once")
    records = checks.run_records("failover", ACTIVE)
    assert records[-1]["result"] == "no change"
    assert [s["result"] for s in records[-1]["steps"] if s["name"] == "split_brain_guard"] == ["ok"]
