"""ldap_replication_info with scripted masters: lag, a down master, check mode, canary, audit."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import LdapError
from ansible_collections.mailops.zimbra_geo.plugins.modules import ldap_replication_info

SUFFIX = "dc=example,dc=test"
NAMES = ["dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"]


def csn(seconds: int, sid: int) -> str:
    return f"20261130010{seconds:03d}.000000Z#000000#{sid:03x}#000000"


class Master:
    """A scripted master: its contextCSN, whether it answers, and a shared entry store."""

    def __init__(self, uri, context, store, down=None):
        self.uri = uri
        self.context = context
        self.store = store
        self.down = down
        self.closed = False
        self.writes = []

    def open(self):
        if self.down:
            raise LdapError(self.down, self.uri, "unreachable")
        return self

    def close(self):
        self.closed = True

    def read(self, dn, attributes=None):
        if dn == SUFFIX:
            return {"contextCSN": list(self.context)}
        return {"description": [self.store[dn]]} if dn in self.store else None

    def add(self, dn, attrs):
        self.writes.append(("add", dn))
        self.store[dn] = attrs["description"]

    def modify(self, dn, changes):
        self.writes.append(("modify", dn))
        self.store[dn] = changes["description"][0][1][0]

    def delete(self, dn):
        self.writes.append(("delete", dn))
        self.store.pop(dn, None)

    def exists(self, dn):
        return dn in self.store


class FakeModule:
    def __init__(self, params, check_mode=False):
        result = ArgumentSpecValidator(ldap_replication_info.argument_spec()).validate(params)
        assert not result.error_messages, result.error_messages
        self.params = result.validated_parameters
        self.check_mode = check_mode
        self._diff = False


def params(**overrides):
    p = {"masters": [{"name": n, "uri": f"ldap://{n}/", "server_id": i + 1} for i, n in enumerate(NAMES)],
         "suffix": SUFFIX, "bind_dn": "cn=admin," + SUFFIX, "bind_pw": "adminpw"}
    p.update(overrides)
    return p


def cluster(contexts, down=()):
    store = {}
    masters = {f"ldap://{n}/": Master(f"ldap://{n}/", contexts.get(n, []), store,
                                      "connection refused" if n in down else None) for n in NAMES}
    return masters, (lambda uri, **conn: masters[uri])


def test_converged_set_is_healthy_and_nothing_changes():
    same = [csn(10, 1), csn(20, 3), "20261130020000.000000Z#000000#000#000000"]
    masters, factory = cluster({n: same for n in NAMES})
    result = ldap_replication_info.run(FakeModule(params()), factory)
    assert result["healthy"] and result["problems"] == [] and not result["changed"]
    assert sorted(result["server_ids"]) == ["001", "003"]  # SID 000 ignored
    assert all(m["in_sync"] and m["max_lag"] == 0.0 for m in result["masters"])
    assert all(m.closed for m in masters.values())


def test_a_down_master_is_named_and_the_others_lag_still_computed():
    contexts = {"dc1-ldap1": [csn(30, 1)], "dc1-ldap2": [csn(30, 1)], "dc2-ldap1": [csn(12, 1)]}
    factory = cluster(contexts, down={"dc2-ldap2"})[1]
    result = ldap_replication_info.run(FakeModule(params(max_lag=5)), factory)
    assert not result["healthy"]
    down = [m for m in result["masters"] if not m["reachable"]]
    assert [m["name"] for m in down] == ["dc2-ldap2"] and "connection refused" in down[0]["error"]
    assert result["server_ids"]["001"]["lag"] == {"dc1-ldap1": 0.0, "dc1-ldap2": 0.0, "dc2-ldap1": 18.0}
    assert any(p.startswith("dc2-ldap2 is down") for p in result["problems"])
    assert any(p.startswith("dc2-ldap1 lags 18.000 s") for p in result["problems"])


def test_a_master_without_the_suffix_entry_answers_but_is_not_in_sync():
    masters, factory = cluster({n: [csn(10, 1)] for n in NAMES[:3]})
    empty = masters["ldap://dc2-ldap2/"]
    empty.read = lambda dn, attributes=None: None
    result = ldap_replication_info.run(FakeModule(params()), factory)
    report = result["masters"][3]
    assert report["reachable"] and report["reason"] == "no_suffix" and not report["in_sync"]
    assert result["server_ids"]["001"]["lag"]["dc2-ldap2"] is None
    assert not result["healthy"]
    assert result["problems"][0].startswith("dc2-ldap2 answers but")
    assert "dc2-ldap2 has no change of server ID 001" in result["problems"][1]


def test_an_unusable_uri_is_reported_for_that_master_only():
    masters, factory = cluster({n: [csn(10, 1)] for n in NAMES})

    def picky(uri, **conn):
        if uri.endswith("dc2-ldap2/"):
            raise LdapError("unsupported URI scheme 'http'", uri, "bad_input")
        return factory(uri, **conn)

    result = ldap_replication_info.run(FakeModule(params()), picky)
    assert [m["reachable"] for m in result["masters"]] == [True, True, True, False]
    assert result["masters"][3]["reason"] == "bad_input"


def test_check_mode_skips_the_canary_and_writes_nothing():
    masters, factory = cluster({n: [csn(1, 1)] for n in NAMES})
    result = ldap_replication_info.run(FakeModule(params(canary=True), check_mode=True), factory)
    assert result["canary"] == {"ran": False}
    assert all(not m.writes for m in masters.values())


def test_canary_writes_on_each_master_in_turn_and_removes_its_markers():
    masters, factory = cluster({n: [csn(1, 1)] for n in NAMES})
    result = ldap_replication_info.run(FakeModule(params(canary=True)), factory)
    canary = result["canary"]
    assert canary["ran"] and canary["complete"] and canary["cleaned_up"]
    assert [r["writer"] for r in canary["rounds"]] == NAMES
    assert not result["changed"] and result["healthy"]
    writes = [[w[0] for w in m.writes] for m in masters.values()]
    assert writes == [["add"], ["modify"], ["modify"], ["modify", "delete"]]
    assert next(iter(masters.values())).store == {}


def test_canary_skips_a_down_master():
    masters, factory = cluster({n: [csn(1, 1)] for n in NAMES}, down={"dc2-ldap2"})
    result = ldap_replication_info.run(FakeModule(params(canary=True)), factory)
    assert masters["ldap://dc2-ldap2/"].writes == []
    assert [r["writer"] for r in result["canary"]["rounds"]] == NAMES[:3]
    assert all("dc2-ldap2" not in r["propagation_ms"] for r in result["canary"]["rounds"])


def test_audit_engine_ldapsearch_without_the_program_is_a_clear_error():
    factory = cluster({n: [csn(1, 1)] for n in NAMES})[1]
    p = params(audit=True, audit_engine="ldapsearch")
    with pytest.raises(LdapError, match="ldap-utils"):
        ldap_replication_info.run(FakeModule(p), factory, ldapsearch="")


def test_duplicate_master_names_are_refused():
    factory = cluster({})[1]
    p = params(masters=[{"name": "a", "uri": "ldap://x/"}, {"name": "a", "uri": "ldap://y/"}])
    with pytest.raises(LdapError, match="unique"):
        ldap_replication_info.run(FakeModule(p), factory)
