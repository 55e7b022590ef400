"""The inventory model's rules, one case per refusal."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._inventory import INVENTORY_VARIABLES, check_inventory

REPO = Path(__file__).resolve().parents[4]
VOLUMES = [{"name": "db", "volume": "mbox1_db", "path": "/opt/zimbra/db", "src": "LABEL=zdb", "fstype": "xfs"},
           {"name": "index", "volume": "mbox1_index", "path": "/opt/zimbra/index", "src": "LABEL=zix", "fstype": "xfs"}]

ALL = ("ldap", "ontap", "scality", "dns")


def valid() -> dict[str, Any]:
    hosts = {
        "dc1-ldap1": {"zimbra_geo_ldap_server_id": 1, "zimbra_geo_ldap_uri": "ldap://a"},
        "dc1-ldap2": {"zimbra_geo_ldap_server_id": 2, "zimbra_geo_ldap_uri": "ldap://b"},
        "dc2-ldap1": {"zimbra_geo_ldap_server_id": 3, "zimbra_geo_ldap_uri": "ldap://c"},
        "dc2-ldap2": {"zimbra_geo_ldap_server_id": 4, "zimbra_geo_ldap_uri": "ldap://d"},
        "dc1-mbox1": {"zimbra_geo_mailbox_peer": "dc2-mbox1", "zimbra_geo_zimbra_hostname": "mbox1.example.test",
                      "zimbra_geo_mailbox_volumes": copy.deepcopy(VOLUMES)},
        "dc2-mbox1": {"zimbra_geo_mailbox_peer": "dc1-mbox1", "zimbra_geo_zimbra_hostname": "mbox1.example.test",
                      "zimbra_geo_mailbox_volumes": copy.deepcopy(VOLUMES)},
        "dc1-mta1": {"zimbra_geo_zimbra_hostname": "mta1.dc1.example.test", "zimbra_geo_public_address": "192.0.2.1"},
        "dc2-mta1": {"zimbra_geo_zimbra_hostname": "mta1.dc2.example.test", "zimbra_geo_public_address": "192.0.2.2"},
        "dc1-proxy1": {"zimbra_geo_public_address": "192.0.2.3"},
        "dc2-proxy1": {"zimbra_geo_public_address": "192.0.2.4"},
    }
    groups = {
        "dc1": [h for h in hosts if h.startswith("dc1")],
        "dc2": [h for h in hosts if h.startswith("dc2")],
        "ldap_masters": [h for h in hosts if "ldap" in h],
        "mailbox": ["dc1-mbox1", "dc2-mbox1"],
        "mta": ["dc1-mta1", "dc2-mta1"],
        "proxy": ["dc1-proxy1", "dc2-proxy1"],
    }
    platform = {
        "zimbra_geo_active_site": "dc1",
        "zimbra_geo_ldap_suffix": "dc=x", "zimbra_geo_ldap_admin_dn": "cn=admin,dc=x",
        "zimbra_geo_ldap_admin_password": "pw",
        "zimbra_geo_ontap_clusters": {"dc1": {"hostname": "o1", "svm": "svm_dc1"},
                                      "dc2": {"hostname": "o2", "svm": "svm_dc2"}},
        "zimbra_geo_ontap_username": "admin", "zimbra_geo_ontap_password": "pw",
        "zimbra_geo_scality_sproxyd": [{"site": "dc1", "url": "http://s1"}, {"site": "dc2", "url": "http://s2"}],
        "zimbra_geo_scality_supervisor_url": "https://sup",
        "zimbra_geo_dns_views": {
            v: {"server": "ns", "zone": "example.test", "key_name": f"k-{v}", "key_secret": "c2VjcmV0"}
            for v in ("internal", "external")
        },
    }
    return {"sites": ["dc1", "dc2"], "groups": groups, "hosts": hosts, "platform": platform}


def run(model: dict[str, Any], require: tuple[str, ...] = ALL) -> list[str]:
    return check_inventory(model["sites"], model["groups"], lambda h: model["hosts"].get(h, {}),
                           model["platform"], list(require))


def test_a_valid_inventory_has_no_problem():
    assert run(valid()) == []


def _one_site(m):
    m["sites"] = ["dc1"]


def _three_sites(m):
    m["sites"] = ["dc1", "dc2", "dc3"]
    m["groups"]["dc3"] = []


def _empty_site(m):
    m["groups"]["dc2"] = []


def _three_masters(m):
    m["hosts"]["dc1-ldap3"] = {"zimbra_geo_ldap_server_id": 5, "zimbra_geo_ldap_uri": "ldap://e"}
    m["groups"]["dc1"].append("dc1-ldap3")
    m["groups"]["ldap_masters"].append("dc1-ldap3")


def _duplicate_sid(m):
    m["hosts"]["dc2-ldap2"]["zimbra_geo_ldap_server_id"] = 1


def _bad_sid(m):
    m["hosts"]["dc2-ldap2"]["zimbra_geo_ldap_server_id"] = "two"


def _no_peer(m):
    del m["hosts"]["dc1-mbox1"]["zimbra_geo_mailbox_peer"]


def _peer_same_site(m):
    m["hosts"]["dc1-mbox1"]["zimbra_geo_mailbox_peer"] = "dc1-mbox1"


def _host_in_no_site(m):
    m["groups"]["mta"].append("lost-mta")


def _active_unknown(m):
    m["platform"]["zimbra_geo_active_site"] = "dc9"


def _no_tsig(m):
    del m["platform"]["zimbra_geo_dns_views"]["external"]["key_secret"]


def _no_ontap(m):
    del m["platform"]["zimbra_geo_ontap_clusters"]["dc2"]


def _no_sproxyd(m):
    m["platform"]["zimbra_geo_scality_sproxyd"] = m["platform"]["zimbra_geo_scality_sproxyd"][:1]


def _no_mta(m):
    m["groups"]["mta"] = ["dc1-mta1"]


def _no_zimbra_hostname(m):
    del m["hosts"]["dc2-mta1"]["zimbra_geo_zimbra_hostname"]


def _service_names_differ(m):
    # zmbx01-par / zmbx01-lon would derive "par" and "lon": the pair needs one name.
    for old, new in (("dc1-mbox1", "zmbx01-par"), ("dc2-mbox1", "zmbx01-lon")):
        m["hosts"][new] = m["hosts"].pop(old)
        for group in m["groups"].values():
            group[:] = [new if h == old else h for h in group]
    m["hosts"]["zmbx01-par"]["zimbra_geo_mailbox_peer"] = "zmbx01-lon"
    m["hosts"]["zmbx01-lon"]["zimbra_geo_mailbox_peer"] = "zmbx01-par"


def _volumes_differ(m):
    m["hosts"]["dc2-mbox1"]["zimbra_geo_mailbox_volumes"][1]["path"] = "/opt/zimbra/idx"


def _no_volumes(m):
    del m["hosts"]["dc1-mbox1"]["zimbra_geo_mailbox_volumes"]


def _no_public_address(m):
    del m["hosts"]["dc2-proxy1"]["zimbra_geo_public_address"]


def _same_svm(m):
    m["platform"]["zimbra_geo_ontap_clusters"]["dc2"]["svm"] = "svm_dc1"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (_one_site, "exactly two sites"),
        (_three_sites, "exactly two sites"),
        (_empty_site, "site dc2 has no hosts"),
        (_three_masters, "site dc1 must have exactly 2 LDAP masters"),
        (_duplicate_sid, "server ID 1 is used by both dc1-ldap1 and dc2-ldap2"),
        (_bad_sid, "dc2-ldap2 needs zimbra_geo_ldap_server_id"),
        (_no_peer, "dc1-mbox1 needs zimbra_geo_mailbox_peer"),
        (_peer_same_site, "the peer must be on the other site"),
        (_host_in_no_site, "lost-mta (group mta) belongs to no site"),
        (_active_unknown, "zimbra_geo_active_site must be one of dc1, dc2"),
        (_no_tsig, "DNS view external needs TSIG key"),
        (_no_ontap, "zimbra_geo_ontap_clusters.dc2.hostname"),
        (_no_sproxyd, "sproxyd endpoint for site dc2"),
        (_no_mta, "site dc2 has no host in group mta"),
        (_no_zimbra_hostname, "MTA dc2-mta1 needs zimbra_geo_zimbra_hostname"),
        (_service_names_differ, "derive different service names (lon, par)"),
        (_volumes_differ, "must have the same volumes (name: path)"),
        (_no_volumes, "dc1-mbox1 needs zimbra_geo_mailbox_volumes"),
        (_same_svm, "both name SVM 'svm_dc1'"),
        (_no_public_address, "proxy dc2-proxy1 needs zimbra_geo_public_address"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_each_refusal_names_the_problem(mutate, expected):
    model = copy.deepcopy(valid())
    mutate(model)
    problems = run(model)
    assert any(expected in p for p in problems), problems


def test_only_required_endpoints_are_checked():
    model = valid()
    del model["platform"]["zimbra_geo_ontap_clusters"]
    assert run(model, ["ldap", "dns"]) == []
    assert run(model) != []


def test_a_service_name_set_on_both_peers_is_accepted():
    model = copy.deepcopy(valid())
    _service_names_differ(model)
    for host in ("zmbx01-par", "zmbx01-lon"):
        model["hosts"][host]["zimbra_geo_mailbox_service_name"] = "zmbx01"
    assert run(model) == []


def test_the_check_knows_every_inventory_variable_the_roles_read():
    """A variable a role or playbook reads that the check does not know would reach a user
    as an undefined-variable error in the middle of a run, not as a problem before it."""
    read = set()
    for path in [*REPO.glob("roles/**/*.yml"), *REPO.glob("roles/**/*.j2"), *REPO.glob("playbooks/*.yml"),
                 *REPO.glob("plugins/action/*.py")]:
        read |= set(re.findall(r"\bzimbra_geo_[a-z0-9_]+", path.read_text()))
    # Role and collection names that are not inventory variables.
    read -= {"zimbra_geo_awx_report_dir"}
    unknown = sorted(read - set(INVENTORY_VARIABLES))
    assert unknown == [], f"read by the roles but unknown to inventory_check: {unknown}"
    assert len(read) > 20


def test_the_example_inventory_passes_the_check_and_sets_every_required_variable():
    import yaml

    example = REPO / "inventories" / "example"
    hosts_doc = yaml.safe_load((example / "hosts.yml").read_text())
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}

    def walk(name: str, node: dict[str, Any]) -> list[str]:
        members = []
        for host, values in ((node or {}).get("hosts") or {}).items():
            hosts.setdefault(host, {}).update(values or {})
            members.append(host)
        for child, sub in ((node or {}).get("children") or {}).items():
            members += walk(child, sub)
        groups.setdefault(name, [])
        groups[name] += [m for m in members if m not in groups[name]]
        return members

    walk("all", hosts_doc["all"])
    platform: dict[str, Any] = {}
    for path in sorted((example / "group_vars" / "all").glob("*.yml")):
        platform.update(yaml.safe_load(path.read_text()) or {})
    for site in platform["zimbra_geo_sites"]:
        site_vars = yaml.safe_load((example / "group_vars" / f"{site}.yml").read_text()) or {}
        for host in groups[site]:
            hosts[host] = {**site_vars, **hosts[host]}
    problems = check_inventory(platform["zimbra_geo_sites"], groups, lambda h: hosts.get(h, {}), platform, list(ALL))
    assert problems == []
