"""snapmirror on the lab: the emulated clusters on dc1-ontap/dc2-ontap, a cut site, a mounted volume.

Uses the session ``lab`` fixture (tests/conftest.py): this process sits in the controller's
network namespace, so the ONTAP REST API is read directly with ``requests`` to check results.
Every test puts the lab back (heal + reset) whatever happens.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests


@pytest.fixture
def ontap(lab: Any):
    # From the initial state whatever an earlier test on this worker left (dc2 active, say).
    lab.reset()
    inv = lab.inventory_vars()
    yield inv
    lab.cli("fault", "heal", check=False)
    lab.reset()


def rest(inv: dict, site: str, path: str, **params: str) -> dict:
    c = inv["zimbra_geo_ontap_clusters"][site]
    s = requests.Session()
    s.trust_env = False
    resp = s.get(
        f"https://{c['hostname']}:{c['port']}/api/{path}",
        params=params,
        auth=(inv["zimbra_geo_ontap_username"], inv["zimbra_geo_ontap_password"]),
        verify=inv["zimbra_geo_ca_path"],
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/mailops.zimbra_geo.zimbra_geo:
      hostname: "{{ zimbra_geo_ontap_clusters.dc2.hostname }}"
      password: "{{ zimbra_geo_ontap_password }}"
      ca_path: "{{ zimbra_geo_ca_path }}"
      timeout: 5
  tasks:
    - name: drive
      mailops.zimbra_geo.snapmirror:
        svm: "{{ zimbra_geo_ontap_clusters.dc2.svm }}"
        state: "{{ target }}"
      register: drive
      ignore_errors: true
    - name: report
      ansible.builtin.copy:
        content: "{{ drive | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def drive(lab: Any, target: str, tmp_path: Any) -> dict:
    out = tmp_path / f"{target}.json"
    proc = lab.playbook(PLAY, extra_vars={"target": target, "out": str(out)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def test_disaster_break_with_the_primary_site_cut(lab: Any, ontap: dict, tmp_path: Any) -> None:
    lab.cli("fault", "cut-site", "dc1")
    update = drive(lab, "updated", tmp_path)
    assert update["failed"] and "unreachable" in update["msg"]
    broken = drive(lab, "broken_off", tmp_path)
    assert not broken.get("failed"), broken
    assert all(
        r["actions"] == ["quiesce", "break"] and r["lag_at_break_seconds"] is not None for r in broken["relationships"]
    )
    states = {
        r["destination"]["path"]: r["state"]
        for r in rest(ontap, "dc2", "snapmirror/relationships", fields="state")["records"]
    }
    assert set(states.values()) == {"broken_off"} and len(states) == len(broken["relationships"])


def test_a_mounted_destination_is_read_only_until_break(lab: Any, ontap: dict, tmp_path: Any) -> None:
    src = f"{ontap['zimbra_geo_ontap_clusters']['dc2']['data_dir']}/mbox1_db"
    lab.host_run("dc2-mbox1", ["mkdir", "-p", "/mnt/zg-test-db"])
    lab.host_run("dc2-mbox1", ["mount", "--bind", src, "/mnt/zg-test-db"])
    try:
        denied = lab.host_run(
            "dc2-mbox1", ["sh", "-c", "echo x > /mnt/zg-test-db/probe"], check=False, capture_output=True, text=True
        )
        assert denied.returncode != 0 and "not permitted" in denied.stderr
        assert not drive(lab, "broken_off", tmp_path).get("failed")
        lab.host_run("dc2-mbox1", ["sh", "-c", "echo x > /mnt/zg-test-db/probe"])
    finally:
        lab.host_run("dc2-mbox1", ["umount", "/mnt/zg-test-db"], check=False)
