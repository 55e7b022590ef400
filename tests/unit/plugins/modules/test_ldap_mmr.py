"""ldap_mmr against an in-memory cn=config: order of writes, check mode, diff, idempotence, refusals."""

from __future__ import annotations

import copy

import ldap3
import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import LdapError
from ansible_collections.mailops.zimbra_geo.plugins.modules import ldap_mmr

SUFFIX = "dc=example,dc=test"
URIS = {i: f"ldap://127.10.{(i + 1) // 2}.1{2 - i % 2}/" for i in (1, 2, 3, 4)}


def bare_config():
    """cn=config of a bare lab slapd: back_mdb loaded, the main database at index 2."""
    return {
        "cn=config": {"objectClass": ["olcGlobal"], "cn": ["config"]},
        "cn=module{0},cn=config": {"objectClass": ["olcModuleList"], "olcModuleLoad": ["{0}back_mdb"]},
        "olcDatabase={0}config,cn=config": {"objectClass": ["olcDatabaseConfig"], "olcDatabase": ["{0}config"]},
        "olcDatabase={1}mdb,cn=config": {"objectClass": ["olcDatabaseConfig", "olcMdbConfig"],
                                         "olcSuffix": ["cn=accesslog"]},
        "olcDatabase={2}mdb,cn=config": {"objectClass": ["olcDatabaseConfig", "olcMdbConfig"],
                                         "olcSuffix": [SUFFIX]},
    }


class FakeSlapd:
    """Just enough of slapd's cn=config for ldap_mmr, with a log of every write."""

    def __init__(self, uri, entries):
        self.uri = uri
        self.entries = entries
        self.writes = []

    # the LdapClient interface -----------------------------------------------------------
    def open(self):
        return self

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def search(self, base, search_filter="(objectClass=*)", scope="SUBTREE", attributes=None):
        want = search_filter.split("=", 1)[1].rstrip(")").lower()
        found = []
        for dn, attrs in self.entries.items():
            parent = dn.split(",", 1)[1] if "," in dn else ""
            if scope == "BASE" and dn != base or scope == "LEVEL" and parent != base:
                continue
            if want != "*" and want not in [o.lower() for o in attrs.get("objectClass", [])]:
                continue
            found.append((dn, copy.deepcopy(attrs)))
        return found

    def read(self, dn, attributes=None):
        entry = self.entries.get(dn)
        return copy.deepcopy(entry) if entry is not None else None

    def add(self, dn, attributes):
        self.writes.append(("add", dn, attributes))
        if dn.startswith("olcOverlay=syncprov,"):
            dn = "olcOverlay={0}syncprov," + dn.split(",", 1)[1]
        self.entries[dn] = {k: (v if isinstance(v, list) else [v]) for k, v in attributes.items()}

    def modify(self, dn, changes):
        self.writes.append(("modify", dn, changes))
        entry = self.entries[dn]
        for attr, mods in changes.items():
            for op, values in mods:
                if op == ldap3.MODIFY_ADD:
                    entry.setdefault(attr, []).extend(values)
                elif op == ldap3.MODIFY_REPLACE:
                    entry[attr] = list(values)


class FakeModule:
    def __init__(self, params, check_mode=False, diff=False):
        result = ArgumentSpecValidator(ldap_mmr.argument_spec()).validate(params)
        assert not result.error_messages, result.error_messages
        self.params = result.validated_parameters
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def params(server_id=1, **overrides):
    p = {
        "server_uri": URIS[server_id], "bind_dn": "cn=config", "bind_pw": "configpw",
        "server_id": server_id, "suffix": SUFFIX,
        "masters": [{"server_id": i, "uri": URIS[i]} for i in (1, 2, 3, 4)],
        "replication": {"bind_dn": "cn=admin," + SUFFIX, "credentials": "adminpw",
                        "tls_cacert": "/etc/ssl/lab-ca.pem"},
    }
    p.update(overrides)
    return p


@pytest.fixture
def servers():
    """Four fake masters, reachable by URI through the client factory."""
    return {URIS[i]: FakeSlapd(URIS[i], bare_config()) for i in (1, 2, 3, 4)}


def factory_for(servers):
    def factory(uri, **conn):
        if uri not in servers:
            raise LdapError("cannot connect", uri, "unreachable")
        return servers[uri]
    return factory


def test_build_changes_then_a_second_run_changes_nothing(servers):
    first = ldap_mmr.run(FakeModule(params()), factory_for(servers))
    assert first["changed"]
    assert first["operations"] == ["load the syncprov module", "set olcServerID to 1",
                                   "add the syncprov overlay",
                                   "set 3 replication agreements and turn on multi-provider mode"]
    assert first["database"] == "olcDatabase={2}mdb,cn=config"
    writes_after_first = len(servers[URIS[1]].writes)
    second = ldap_mmr.run(FakeModule(params()), factory_for(servers))
    assert not second["changed"] and second["operations"] == []
    assert len(servers[URIS[1]].writes) == writes_after_first
    # peers were only read
    assert all(not servers[URIS[i]].writes for i in (2, 3, 4))


def test_check_mode_predicts_and_writes_nothing(servers):
    before = copy.deepcopy(servers[URIS[1]].entries)
    result = ldap_mmr.run(FakeModule(params(), check_mode=True, diff=True), factory_for(servers))
    assert result["changed"] and len(result["operations"]) == 4
    assert servers[URIS[1]].writes == [] and servers[URIS[1]].entries == before
    # the prediction equals what a real run then reports
    real = ldap_mmr.run(FakeModule(params()), factory_for(servers))
    assert result["state"] == real["state"]


def test_diff_shows_before_and_after_with_credentials_masked(servers):
    result = ldap_mmr.run(FakeModule(params(), diff=True), factory_for(servers))
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert before["server_id"] is None and not before["multi_provider"] and before["agreements"] == []
    assert after["server_id"] == 1 and after["multi_provider"] and len(after["agreements"]) == 3
    assert "adminpw" not in repr(result)
    assert "credentials=********" in after["agreements"][0]


def test_no_diff_unless_asked(servers):
    assert "diff" not in ldap_mmr.run(FakeModule(params()), factory_for(servers))


def test_a_removed_master_and_a_changed_password_replace_the_agreements_in_one_modify(servers):
    ldap_mmr.run(FakeModule(params()), factory_for(servers))
    server = servers[URIS[1]]
    server.writes.clear()
    p = params(masters=[{"server_id": i, "uri": URIS[i]} for i in (1, 2, 3)],
               replication={"bind_dn": "cn=admin," + SUFFIX, "credentials": "newpw"})
    result = ldap_mmr.run(FakeModule(p), factory_for(servers))
    assert result["operations"] == ["set 2 replication agreements"]
    ((kind, dn, changes),) = server.writes
    assert dn == "olcDatabase={2}mdb,cn=config"
    assert kind == "modify" and list(changes) == ["olcSyncrepl"]
    assert all("credentials=newpw" in v for v in changes["olcSyncrepl"][0][1])
    assert not ldap_mmr.run(FakeModule(p), factory_for(servers))["changed"]


def test_mirror_mode_counts_as_multi_provider(servers):
    ldap_mmr.run(FakeModule(params()), factory_for(servers))
    db = servers[URIS[1]].entries["olcDatabase={2}mdb,cn=config"]
    db["olcMirrorMode"] = db.pop("olcMultiProvider")
    assert not ldap_mmr.run(FakeModule(params()), factory_for(servers))["changed"]


@pytest.mark.parametrize("overrides,reason", [
    ({"masters": [{"server_id": 1, "uri": URIS[1]}, {"server_id": 1, "uri": URIS[2]}]}, "duplicate_server_id"),
    ({"masters": [{"server_id": 2, "uri": URIS[2]}, {"server_id": 3, "uri": URIS[3]}]}, "not_in_set"),
    ({"suffix": "dc=missing,dc=test"}, "no_database"),
    ({"replication": {"bind_dn": "cn=admin," + SUFFIX}}, "bad_input"),
])
def test_refusals_happen_before_any_write(servers, overrides, reason):
    with pytest.raises(LdapError) as err:
        ldap_mmr.run(FakeModule(params(**overrides)), factory_for(servers))
    assert err.value.reason == reason
    assert all(not s.writes for s in servers.values())


def test_a_server_id_already_used_by_another_master_is_refused(servers):
    servers[URIS[2]].entries["cn=config"]["olcServerID"] = ["1"]
    with pytest.raises(LdapError, match="server ID 1 is already used by " + URIS[2]) as err:
        ldap_mmr.run(FakeModule(params()), factory_for(servers))
    assert err.value.reason == "duplicate_server_id"
    assert not servers[URIS[1]].writes


def test_an_unreachable_peer_is_a_warning_not_a_failure(servers):
    del servers[URIS[4]]
    module = FakeModule(params())
    assert ldap_mmr.run(module, factory_for(servers))["changed"]
    assert len(module.warnings) == 1 and URIS[4] in module.warnings[0]
