"""The inventory model's rules, one case per refusal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._inventory import check_inventory

ALL = ("ldap", "ontap", "scality", "dns")


def valid() -> dict[str, Any]:
    hosts = {
        "dc1-ldap1": {"zimbra_geo_ldap_server_id": 1, "zimbra_geo_ldap_uri": "ldap://a"},
        "dc1-ldap2": {"zimbra_geo_ldap_server_id": 2, "zimbra_geo_ldap_uri": "ldap://b"},
        "dc2-ldap1": {"zimbra_geo_ldap_server_id": 3, "zimbra_geo_ldap_uri": "ldap://c"},
        "dc2-ldap2": {"zimbra_geo_ldap_server_id": 4, "zimbra_geo_ldap_uri": "ldap://d"},
        "dc1-mbox1": {"zimbra_geo_mailbox_peer": "dc2-mbox1"},
        "dc2-mbox1": {"zimbra_geo_mailbox_peer": "dc1-mbox1"},
        "dc1-mta1": {}, "dc2-mta1": {}, "dc1-proxy1": {}, "dc2-proxy1": {},
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
        "zimbra_geo_ontap_clusters": {"dc1": {"hostname": "o1"}, "dc2": {"hostname": "o2"}},
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
