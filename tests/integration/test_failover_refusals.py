"""failover.yml and failback.yml refuse, before any change, a run they cannot make safely.

These need no lab: the refusals come before the first call to any host or API, so they run
against a copy of inventories/example, whose hosts do not exist (any step past the refusal
would fail on a connection, not with the refusal's message).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DNS_RECORDS = [{"record": "mail", "type": "A", "ttl": 300,
                "sites": {"dc1": {"internal": ["10.1.0.31"]}, "dc2": {"internal": ["10.2.0.31"]}}}]


@pytest.fixture(name="inventory")
def fixture_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "example", inv)
    platform = inv / "group_vars" / "all" / "platform.yml"
    data = yaml.safe_load(platform.read_text())
    data["zimbra_geo_dns_records"] = DNS_RECORDS
    platform.write_text(yaml.safe_dump(data))
    return inv


def run(inventory: Path, playbook: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         str(REPO / "playbooks" / playbook), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def refused(proc: subprocess.CompletedProcess, message: str) -> None:
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0, out
    assert message in out, out
    assert "Nothing was changed" in out, out
    assert "UNREACHABLE" not in proc.stdout, "a host was contacted before the refusal"


@pytest.mark.parametrize("playbook", ["failover.yml", "failback.yml"])
def test_no_limit_is_refused(inventory, playbook):
    refused(run(inventory, playbook), "run with -l <site>")


@pytest.mark.parametrize("playbook", ["failover.yml", "failback.yml"])
def test_a_limit_on_both_sites_is_refused(inventory, playbook):
    proc = run(inventory, playbook, "-l", "mbox1.dc1.mail.example.com,mbox1.dc2.mail.example.com")
    refused(proc, "covers the sites dc1, dc2")


def test_a_host_of_an_unknown_site_is_refused(inventory):
    hosts = inventory / "hosts.yml"
    data = yaml.safe_load(hosts.read_text())
    data["all"]["children"]["dc2"]["hosts"]["mta1.dc2.mail.example.com"] = {"zimbra_geo_site": "dc3"}
    hosts.write_text(yaml.safe_dump(data))
    refused(run(inventory, "failover.yml", "-l", "mta1.dc2.mail.example.com"), "covers the sites dc3")


def test_disaster_mode_needs_its_confirmation(inventory):
    proc = run(inventory, "failover.yml", "-l", "dc2", "-e", "site_failover_mode=disaster")
    refused(proc, "site_failover_confirm_disaster=true")


def test_a_target_without_dns_records_is_refused(inventory):
    platform = inventory / "group_vars" / "all" / "platform.yml"
    data = yaml.safe_load(platform.read_text())
    data["zimbra_geo_dns_records"] = [{"record": "mail", "sites": {"dc1": {"internal": ["10.1.0.31"]}}}]
    platform.write_text(yaml.safe_dump(data))
    refused(run(inventory, "failover.yml", "-l", "dc2"), "gives no values for it")
