"""The Scality emulator inside the lab: a real site cut (``lab fault cut-site``), not an injected fault.

Objects written through dc1's sproxyd before dc1 is cut off must stay readable through
dc2's; scality_ring_info, run from the controller with the lab inventory, must then give a
good disaster verdict naming dc1 (the Supervisor lives on dc1, so it falls back to sproxyd
checks). After the heal, the writes dc2 queued for dc1 drain. Reads use plain ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path

import pytest
import requests

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - mailops.zimbra_geo.scality_ring_info:
        supervisor_url: "{{{{ zimbra_geo_scality_supervisor_url }}}}"
        supervisor_username: "{{{{ zimbra_geo_scality_supervisor_username }}}}"
        supervisor_password: "{{{{ zimbra_geo_scality_supervisor_password }}}}"
        supervisor_site: "{{{{ zimbra_geo_scality_supervisor_site }}}}"
        ca_path: "{{{{ zimbra_geo_ca_path }}}}"
        sites: "{{{{ zimbra_geo_sites }}}}"
        sproxyd: "{{{{ zimbra_geo_scality_sproxyd }}}}"
        timeout: 2
        retries: 0
        canary_cross_site: true
{extra}
      vars:
        ansible_python_interpreter: {python}
      register: r
    - ansible.builtin.copy:
        content: "{{{{ r | to_json }}}}"
        dest: {out}
"""


def run_module(lab, tmp_path: Path, **params) -> dict:
    out = tmp_path / "result.json"
    extra = "\n".join(f"        {k}: {json.dumps(v)}" for k, v in params.items())
    proc = lab.playbook(PLAY.format(extra=extra, python=sys.executable, out=out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.fixture
def scality(lab):
    """The lab's Scality endpoints, from its inventory; heals the lab afterwards."""
    inv = lab.inventory_vars()
    endpoints = {e["site"]: e["url"] for e in inv["zimbra_geo_scality_sproxyd"]}
    yield inv, endpoints
    lab.cli("fault", "heal")


def test_planned_check_in_the_lab(lab, scality, tmp_path) -> None:
    r = run_module(lab, tmp_path)
    assert r["verdict"]["ok"], r["verdict"]["reasons"]
    assert r["supervisor"]["reachable"] and r["supervisor"]["url"].startswith("https://127.10.1.60")
    assert r["canary"]["passed"] and r["canary"]["read_sites"] == ["dc1", "dc2"]


def test_objects_written_before_a_site_cut_stay_readable_on_the_other_site(lab, scality, tmp_path) -> None:
    inv, sproxyd = scality
    objects = {secrets.token_hex(20).upper(): os.urandom(1024) for _i in range(5)}
    for key, data in objects.items():
        assert requests.put(f"{sproxyd['dc1']}/{key}", data=data, timeout=5).status_code == 200
    try:
        lab.cli("fault", "cut-site", "dc1")
        with pytest.raises(requests.RequestException):
            requests.get(f"{sproxyd['dc1']}/.conf", timeout=1)
        for key, data in objects.items():
            got = requests.get(f"{sproxyd['dc2']}/{key}", timeout=5)
            assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()

        r = run_module(lab, tmp_path, mode="disaster", lost_site="dc1")
        v = r["verdict"]
        assert v["ok"], v["reasons"]
        assert v["lost_site"] == "dc1" and v["sproxyd_only"] and not v["split_suspected"]
        assert r["canary"]["site"] == "dc2" and r["canary"]["passed"]

        # While dc1 is gone, a delete through dc2 is queued for it ...
        first = next(iter(objects))
        assert requests.delete(f"{sproxyd['dc2']}/{first}", timeout=5).status_code == 200
    finally:
        lab.cli("fault", "heal")
    # ... and reaches it once the link is back (the queue drains on its own).
    deadline = time.monotonic() + 20
    while requests.get(f"{sproxyd['dc1']}/{first}", timeout=5).status_code != 404:
        assert time.monotonic() < deadline, "the queued delete never reached dc1"
        time.sleep(0.1)
    for key in objects:
        requests.delete(f"{sproxyd['dc1']}/{key}", timeout=5)

    def pending() -> int:
        return requests.get(
            f"{inv['zimbra_geo_scality_supervisor_url']}/api/v0.1/rings/DATA/tasks/",
            auth=(inv["zimbra_geo_scality_supervisor_username"], inv["zimbra_geo_scality_supervisor_password"]),
            verify=inv["zimbra_geo_ca_path"],
            timeout=5,
        ).json()["_meta"]["count"]

    while pending():
        assert time.monotonic() < deadline, "the rebuild backlog did not drain after the heal"
        time.sleep(0.1)
