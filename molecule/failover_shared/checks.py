"""What the failover scenarios verify on the lab, shared by their testinfra tests.

Each check reads the real state out of band: findmnt and zmcontrol on the hosts over SSH,
zmmailbox for the mail, signed DNS queries per view with dnspython, ldapsearch per master,
the ONTAP REST API with requests.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import requests
import yaml

HERE = Path(__file__).resolve().parent
RECORDS = yaml.safe_load((HERE / "inventory" / "dns-records.yml").read_text())["all"]["vars"]["zimbra_geo_dns_records"]


def site_of(name: str) -> str:
    return name.split("-", 1)[0]


def mounts(host: Any) -> dict[str, str]:
    out = host.run("findmnt --raw --noheadings --output TARGET,SOURCE").stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def check_volumes(host: Any, name: str, active: str) -> None:
    """The active site's mailbox has its own cluster's volumes mounted; the other none."""
    found = mounts(host)
    for path, volume in (("/opt/zimbra/db", "mbox1_db"), ("/opt/zimbra/index", "mbox1_index")):
        if site_of(name) == active:
            assert path in found, f"{path} not mounted on {name}"
            assert found[path].endswith(f"/san/{active}-ontap/{volume}]"), found[path]
        else:
            assert path not in found, f"{path} still mounted on {name}: {found[path]}"


def zmcontrol_status(host: Any) -> tuple[int, str]:
    result = host.run("su - zimbra -c '/opt/zimbra/bin/zmcontrol status'")
    return result.rc, result.stdout


def check_services(host: Any, name: str, active: str) -> None:
    rc, out = zmcontrol_status(host)
    states = [line.split()[-1] for line in out.splitlines()
              if line.startswith("\t") and not line.startswith("\t\t")]
    assert states, out
    if site_of(name) == active:
        assert rc == 0 and set(states) == {"Running"}, out
    else:
        assert set(states) == {"Stopped"}, out


def subjects(host: Any) -> str:
    return host.run("su - zimbra -c '/opt/zimbra/bin/zmmailbox -m user01@example.test search'").stdout


def query(view: dict[str, Any], name: str) -> list[str]:
    keyring = dns.tsigkeyring.from_text({view["key_name"]: (view["key_algorithm"], view["key_secret"])})
    msg = dns.message.make_query(f"{name}.{view['zone']}", dns.rdatatype.A)
    msg.use_tsig(keyring, keyname=view["key_name"], algorithm=view["key_algorithm"])
    answer = dns.query.tcp(msg, view["server"], port=int(view.get("port", 53)), timeout=5)
    return sorted(str(rr) for rrset in answer.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A)


def check_dns(variables: dict[str, Any], active: str) -> None:
    """Every service name answers the active site's addresses in each view; MX unchanged."""
    views = variables["zimbra_geo_dns_views"]
    for record in RECORDS:
        for view_name, values in record["sites"][active].items():
            assert query(views[view_name], record["record"]) == sorted(values), (record["record"], view_name)


def check_ldap_entry(host: Any, variables: dict[str, Any], dn: str) -> None:
    """Every master that holds the directory (the suffix entry) holds the entry."""
    holders = 0
    for master in ("dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"):
        address = "127.10.{}.{}".format(master[2], 10 + int(master[-1]))
        base = host.run(
            "LDAPTLS_CACERT=%s ldapsearch -LLL -x -ZZ -H ldap://%s -D %s -w %s -b %s -s base dn",
            variables["zimbra_geo_ca_path"], address, variables["zimbra_geo_ldap_admin_dn"],
            variables["zimbra_geo_ldap_admin_password"], variables["zimbra_geo_ldap_suffix"])
        if base.rc != 0:
            continue
        holders += 1
        entry = host.run(
            "LDAPTLS_CACERT=%s ldapsearch -LLL -x -ZZ -H ldap://%s -D %s -w %s -b %s -s base dn",
            variables["zimbra_geo_ca_path"], address, variables["zimbra_geo_ldap_admin_dn"],
            variables["zimbra_geo_ldap_admin_password"], dn)
        assert entry.rc == 0 and dn in entry.stdout, f"{dn} missing on {master}: {entry.stderr}"
    assert holders >= 1


def relationships(variables: dict[str, Any], site: str, source_side: bool = False) -> list[dict[str, Any]]:
    cluster = variables["zimbra_geo_ontap_clusters"][site]
    params = {"fields": "source.path,destination.path,state,healthy"}
    if source_side:
        params["list_destinations_only"] = "true"
    response = requests.get(
        f"https://{cluster['hostname']}:{cluster.get('port', 443)}/api/snapmirror/relationships",
        params=params, auth=(variables["zimbra_geo_ontap_username"], variables["zimbra_geo_ontap_password"]),
        verify=variables["zimbra_geo_ca_path"], timeout=10)
    response.raise_for_status()
    return response.json()["records"]


def run_records(kind: str, target: str) -> list[dict[str, Any]]:
    """The run records the scenario's runs wrote, oldest first."""
    directory = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "reports")
    files = sorted(glob.glob(os.path.join(directory, f"{kind}-{target}-*.json")))
    return [json.loads(Path(f).read_text()) for f in files]


def check_outgoing_mail(host: Any, lab_dir: str, subject: str, active: str, timeout: float = 60) -> None:
    """Mail the active mailbox sends to another domain leaves through its own site's MTA: the
    lab's outside relay records which MTA handed it over (its HELO name and address)."""
    import shlex
    import time

    message = f"From: user01@example.test\nTo: someone@example.net\nSubject: {subject}\n\nout\n"
    sent = host.run(f"printf %s {shlex.quote(message)} | su - zimbra -c "
                    "'/opt/zimbra/bin/zmmailbox -z -m user01@example.test sendMessage'")
    assert sent.rc == 0, sent.stdout + sent.stderr
    outbox = Path(lab_dir) / "hosts" / "outside" / "outbound"
    deadline = time.monotonic() + timeout
    while True:
        found = [json.loads(p.read_text()) for p in outbox.glob("*.json")
                 if subject in p.with_suffix(".eml").read_text(errors="replace")]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found, f"{subject!r} did not reach the outside relay in {timeout} s"
    mta = found[0]["helo"].split(".")[0]
    assert mta.startswith(f"{active}-mta"), f"{subject!r} left through {found[0]['helo']}"
    address = host.run(f"getent hosts {mta}").stdout.split()[0]
    assert found[0]["peer"] == address, found[0]
