"""The inventory check as every playbook runs it: broken inventories fail before any change.

These run ansible-playbook on the controller only (the check needs no host), against copies
of inventories/example with one thing broken each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = """---
- name: Check the inventory
  hosts: all
  gather_facts: false
  roles:
    - role: mailops.zimbra_geo.inventory_check
- name: A change that must never happen when the check fails
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Mark
      ansible.builtin.file:
        path: "{{ marker }}"
        state: touch
        mode: "0644"
"""


def run_check(inventory: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    pb = tmp_path / "check.yml"
    pb.write_text(PLAYBOOK)
    marker = tmp_path / "changed"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        # The second play runs on the implicit localhost (this Python, local connection).
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(pb),
         "-e", f"marker={marker}"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    return proc, marker


def broken(tmp_path: Path, change: Callable[[dict, dict], None]) -> Path:
    inv = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "example", inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    platform = yaml.safe_load((inv / "group_vars" / "all" / "platform.yml").read_text())
    change(hosts, platform)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars" / "all" / "platform.yml").write_text(yaml.safe_dump(platform))
    return inv


def _ok(hosts, platform):
    pass


def _one_site(hosts, platform):
    platform["zimbra_geo_sites"] = ["dc1"]


def _three_sites(hosts, platform):
    platform["zimbra_geo_sites"] = ["dc1", "dc2", "dc3"]


def _three_masters(hosts, platform):
    new = "ldap3.dc1.mail.example.com"
    hosts["all"]["children"]["dc1"]["hosts"][new] = {"zimbra_geo_ldap_server_id": 5, "zimbra_geo_ldap_uri": "ldap://x"}
    hosts["all"]["children"]["ldap_masters"]["hosts"][new] = None


def _duplicate_sid(hosts, platform):
    hosts["all"]["children"]["dc2"]["hosts"]["ldap2.dc2.mail.example.com"]["zimbra_geo_ldap_server_id"] = 3


def _no_peer(hosts, platform):
    hosts["all"]["children"]["dc1"]["hosts"]["mbox1.dc1.mail.example.com"] = None


def _peer_same_site(hosts, platform):
    hosts["all"]["children"]["dc2"]["hosts"]["mbox1.dc2.mail.example.com"]["zimbra_geo_mailbox_peer"] = \
        "mbox1.dc2.mail.example.com"


def _missing_tsig(hosts, platform):
    del platform["zimbra_geo_dns_views"]["internal"]["key_secret"]


def _missing_ontap(hosts, platform):
    del platform["zimbra_geo_ontap_clusters"]


def _missing_scality(hosts, platform):
    del platform["zimbra_geo_scality_sproxyd"]


def _unknown_active(hosts, platform):
    platform["zimbra_geo_active_site"] = "dc3"


CASES = [
    (_one_site, "zimbra_geo_sites must name exactly two sites"),
    (_three_sites, "zimbra_geo_sites must name exactly two sites"),
    (_three_masters, "site dc1 must have exactly 2 LDAP masters"),
    (_duplicate_sid, "LDAP server ID 3 is used by both"),
    (_no_peer, "mbox1.dc1.mail.example.com needs zimbra_geo_mailbox_peer"),
    (_peer_same_site, "the peer must be on the other site"),
    (_missing_tsig, "DNS view internal needs TSIG key"),
    (_missing_ontap, "zimbra_geo_ontap_clusters.dc1.hostname"),
    (_missing_scality, "sproxyd endpoint for site dc1"),
    (_unknown_active, "zimbra_geo_active_site must be one of dc1, dc2"),
]


def test_the_example_inventory_passes(tmp_path):
    proc, marker = run_check(broken(tmp_path, _ok), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert marker.exists()


@pytest.mark.parametrize("change, message", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_a_broken_inventory_fails_before_any_change(tmp_path, change, message):
    proc, marker = run_check(broken(tmp_path, change), tmp_path)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout
    assert "nothing was changed" in proc.stdout
    assert not marker.exists(), "the play after the failed check must not run"
