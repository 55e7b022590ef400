"""After site-build on the lab: replication-verify passes, and the hosts' real state is the
reference architecture, read out of band (findmnt, zmcontrol status, dig with TSIG, ldap3
on the four masters). A split brain made on purpose fails replication-verify loudly.

Tests that reach a host take it by name (one SSH command each): testinfra's Ansible backend
pays a whole Ansible run per call, so nothing is run per host of the inventory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
INVENTORY = os.environ.get("MOLECULE_LAB_INVENTORY", str(REPO / "inventories" / "lab"))
BIN = Path(sys.executable).parent


def inventory() -> dict[str, Any]:
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", INVENTORY, "--list"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    return data


INV = inventory()
HOSTVARS = INV["_meta"]["hostvars"]
# Every host carries the group variables in --list output.
PLATFORM = HOSTVARS["dc1-ldap1"]


def host(name: str) -> Any:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def sh(name: str, command: str) -> Any:
    return host(name).run(command)


def playbook(path: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", INVENTORY, str(REPO / path),
         "-e", f"zimbra_geo_report_dir={tmp_path}", *extra],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)


def test_replication_verify_passes_and_writes_its_report(tmp_path: Path) -> None:
    proc = playbook("playbooks/replication_verify.yml", tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "replication-verify-latest.json").read_text())
    assert report["ok"] and not report["split_brain"] and report["active_site"] == "dc1"
    assert {c["name"]: c["ok"] for c in report["checks"]} == {
        "active_site": True, "ldap": True, "snapmirror": True, "scality": True, "dns": True,
        "zimbra": True, "standby_fenced": True}
    assert isinstance(report["rpo_current_seconds"], int)
    html = (tmp_path / "replication-verify-latest.html").read_text()
    assert html.count("<table>") == 1 + len(report["checks"])
    # No secret of the inventory reaches the output or the report.
    for secret in (PLATFORM["zimbra_geo_ldap_admin_password"], PLATFORM["zimbra_geo_ontap_password"]):
        assert secret not in proc.stdout + proc.stderr and secret not in html


def test_volumes_are_mounted_on_the_active_mailbox_server_only() -> None:
    for name, mounted in (("dc1-mbox1", True), ("dc2-mbox1", False)):
        volumes = HOSTVARS[name]["zimbra_geo_mailbox_volumes"]
        paths = " ".join(v["path"] for v in volumes)
        out = sh(name, f"for p in {paths}; do findmnt -rn -o FSROOT --mountpoint $p || echo -; done")
        lines = out.stdout.split()
        if mounted:
            assert lines == [v["src"] for v in volumes], out.stdout
        else:
            assert lines == ["-"] * len(volumes), out.stdout


def zmcontrol_states(name: str) -> dict[str, str]:
    out = sh(name, "su - zimbra -c '/opt/zimbra/bin/zmcontrol status'").stdout
    return {line.split()[0]: line.split()[-1] for line in out.splitlines()
            if line.startswith("\t") and not line.startswith("\t\t")}


def test_zimbra_runs_on_dc1_only() -> None:
    assert set(zmcontrol_states("dc1-mbox1").values()) == {"Running"}
    assert set(zmcontrol_states("dc2-mbox1").values()) == {"Stopped"}
    for name, state in (("dc1-mta1", "Running"), ("dc1-proxy1", "Running"), ("dc2-mta1", "Stopped"),
                        ("dc2-proxy1", "Stopped")):
        assert set(zmcontrol_states(name).values()) == {state}, name


def test_zimbra_localconfig_lists_own_site_masters_first() -> None:
    out = sh("dc2-mbox1", "su - zimbra -c '/opt/zimbra/bin/zmlocalconfig -m nokey ldap_url sproxyd_url'")
    ldap_url, store = out.stdout.splitlines()
    assert ldap_url.split() == [HOSTVARS[h]["zimbra_geo_ldap_uri"]
                                for h in ("dc2-ldap1", "dc2-ldap2", "dc1-ldap1", "dc1-ldap2")]
    assert store == [s["url"] for s in PLATFORM["zimbra_geo_scality_sproxyd"] if s["site"] == "dc2"][0]


def dig(view: str, name: str, rtype: str = "A") -> list[str]:
    spec = PLATFORM["zimbra_geo_dns_views"][view]
    key = f"{spec['key_algorithm']}:{spec['key_name']}:{spec['key_secret']}"
    out = subprocess.run(["dig", "+short", "+tcp", "-y", key, "-p", str(spec["port"]),
                          f"@{spec['server']}", spec["zone"] if name == "@" else f"{name}.{spec['zone']}", rtype],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return sorted(out.split("\n")[:-1])


def test_dns_answers_for_dc1_in_each_view() -> None:
    mta, proxy, mbox = (HOSTVARS[h] for h in ("dc1-mta1", "dc1-proxy1", "dc1-mbox1"))
    assert dig("internal", "mail") == [mta["ansible_host"]]
    assert dig("internal", "mbox1") == [mbox["ansible_host"]]
    assert dig("internal", "webmail") == [proxy["ansible_host"]]
    assert dig("external", "mail") == [mta["zimbra_geo_public_address"]]
    assert dig("external", "imap") == [proxy["zimbra_geo_public_address"]]
    assert dig("external", "mbox1") == []
    assert dig("external", "@", "MX") == ["10 mail.example.test."]


def test_the_four_ldap_masters_replicate_a_write_to_each_other() -> None:
    import ssl

    import ldap3

    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=PLATFORM["zimbra_geo_ca_path"])
    masters = {h: HOSTVARS[h]["zimbra_geo_ldap_uri"] for h in INV["ldap_masters"]["hosts"]}
    assert len(masters) == 4
    conns = {}
    for name, uri in masters.items():
        conn = ldap3.Connection(ldap3.Server(uri, tls=tls, get_info=ldap3.NONE),
                                PLATFORM["zimbra_geo_ldap_admin_dn"],
                                PLATFORM["zimbra_geo_ldap_admin_password"])
        conn.open()
        conn.start_tls()
        assert conn.bind(), name
        conns[name] = conn
    suffix = PLATFORM["zimbra_geo_ldap_suffix"]
    dn = f"cn=molecule-{uuid.uuid4().hex[:8]},{suffix}"
    writer = conns["dc2-ldap2"]
    try:
        assert writer.add(dn, ["device"], {"cn": dn.split(",")[0][3:]}), writer.result
        deadline = time.monotonic() + 10
        missing = set(conns)
        while missing and time.monotonic() < deadline:
            missing = {n for n in missing if not conns[n].search(dn, "(objectClass=*)", ldap3.BASE)}
            time.sleep(0.05)
        assert not missing, f"not replicated to {missing}"
        # Every master holds the same contextCSN values (one per server ID that wrote).
        time.sleep(0.2)
        csns = {}
        for name, conn in conns.items():
            conn.search(suffix, "(objectClass=*)", ldap3.BASE, attributes=["contextCSN"])
            csns[name] = sorted(conn.entries[0].entry_attributes_as_dict["contextCSN"])
        assert len({tuple(v) for v in csns.values()}) == 1, csns
        assert any(c.split("#")[2] == "004" for c in csns["dc1-ldap1"]), "server ID 4 stamps its writes"
    finally:
        writer.delete(dn)
        for conn in conns.values():
            conn.unbind()


@pytest.fixture
def dc2_mailbox_started() -> Any:
    """Zimbra started on dc2-mbox1 on scratch volumes: the split brain a bad failover leaves."""
    name = "dc2-mbox1"
    start = sh(name, "for d in db index; do mount -t tmpfs -o uid=4990,gid=4990 tmpfs /opt/zimbra/$d; done;"
                     " su - zimbra -c '/opt/zimbra/bin/zmcontrol start'")
    try:
        assert start.rc == 0, start.stdout + start.stderr
        yield name
    finally:
        sh(name, "su - zimbra -c '/opt/zimbra/bin/zmcontrol stop'; umount /opt/zimbra/db /opt/zimbra/index")


def test_a_split_brain_fails_replication_verify_loudly(dc2_mailbox_started: str, tmp_path: Path) -> None:
    proc = playbook("playbooks/replication_verify.yml", tmp_path)
    assert proc.returncode != 0
    assert "SPLIT BRAIN" in proc.stdout + proc.stderr
    report = json.loads((tmp_path / "replication-verify-latest.json").read_text())
    assert report["split_brain"] and report["failed_checks"] == ["zimbra"]


def test_mail_through_the_ingress_mta_lands_on_dc1_with_its_blob_in_dc1_sproxyd() -> None:
    import smtplib

    import requests

    subject = f"molecule build {uuid.uuid4().hex[:8]}"
    message = f"From: a@remote.test\r\nTo: user01@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n"
    with smtplib.SMTP(HOSTVARS["dc1-mta1"]["ansible_host"], 25, timeout=30) as client:
        assert client.sendmail("a@remote.test", ["user01@example.test"], message) == {}
    query = (f"su - zimbra -c \"/opt/zimbra/bin/zmmailbox -m user01@example.test s '{subject}'\"; "
             "python3 -c \"import sqlite3; print(sqlite3.connect("
             "'/opt/zimbra/db/data/mailbox.sqlite').execute('SELECT blob_key FROM message "
             f"WHERE subject = ?', ('{subject}',)).fetchone()[0])\"")
    deadline = time.monotonic() + 30
    out = sh("dc1-mbox1", query)
    while subject not in out.stdout and time.monotonic() < deadline:
        time.sleep(0.5)
        out = sh("dc1-mbox1", query)
    assert subject in out.stdout, out.stdout + out.stderr
    key = out.stdout.split()[-1]
    dc1 = [s["url"] for s in PLATFORM["zimbra_geo_scality_sproxyd"] if s["site"] == "dc1"][0]
    assert requests.get(f"{dc1}/{key}", timeout=10).content.endswith(b"body\r\n")


def test_outgoing_mail_leaves_from_the_active_site_and_the_mtas_are_no_open_relay() -> None:
    import smtplib

    sys.path.insert(0, str(REPO / "molecule" / "failover_shared"))
    import checks

    checks.check_outgoing_mail(host("dc1-mbox1"), PLATFORM["zimbra_geo_lab_dir"],
                               f"molecule outgoing {uuid.uuid4().hex[:8]}", "dc1")
    # From outside the sites (the controller), mail for another domain is refused.
    with smtplib.SMTP(HOSTVARS["dc1-mta1"]["ansible_host"], 25, timeout=30) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@remote.test", ["b@elsewhere.test"], "Subject: relay?\r\n\r\nx\r\n")
