"""Unit tests of the LDAP client's pure parts: CSNs, lag, verdict, agreements, plan, audit."""

from __future__ import annotations

import calendar
import itertools
import ssl

import ldap3
import pytest

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import (
    LdapError,
    _text,
    agreement_matches,
    apply_mmr,
    compare_ids,
    csn_by_sid,
    desired_agreements,
    format_sid,
    format_syncrepl,
    lag_table,
    ldapsearch_command,
    parse_csn,
    parse_ldif_ids,
    parse_server_ids,
    parse_syncrepl,
    plan_mmr,
    predict_state,
    replication_verdict,
    run_canary,
    validate_masters,
)

SUFFIX = "dc=example,dc=test"
MASTERS = [{"server_id": i, "uri": f"ldap://127.10.{(i + 1) // 2}.1{2 - i % 2}/"} for i in (1, 2, 3, 4)]
REPLICATION = {"bind_method": "simple", "bind_dn": "cn=admin," + SUFFIX, "credentials": "s3cret",
               "start_tls": True, "tls_cacert": "/etc/ssl/lab-ca.pem", "tls_reqcert": "demand",
               "retry": "1 60 10 +", "keepalive": "240:10:30", "network_timeout": 0}


def csn(stamp: str, sid: int, count: int = 0) -> str:
    return f"{stamp}#{count:06x}#{sid:03x}#000000"


# -- CSN parsing ------------------------------------------------------------------------

def test_parse_csn_converts_the_timestamp_to_seconds_and_hex_fields_to_ints():
    parsed = parse_csn("20261130015535.983916Z#00000a#01f#000002")
    expected = calendar.timegm((2026, 11, 30, 1, 55, 35, 0, 0, 0)) + 0.983916
    assert parsed.time == pytest.approx(expected, abs=1e-6)
    assert (parsed.count, parsed.sid, parsed.mod) == (10, 31, 2)


def test_csn_difference_is_in_seconds_not_string_arithmetic():
    # One second apart across a minute boundary: raw strings differ by 41 as numbers.
    earlier = parse_csn(csn("20261130015959.500000Z", 1))
    later = parse_csn(csn("20261130020000.500000Z", 1))
    assert later.time - earlier.time == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["", "garbage", "2026113001553.1Z#0#1#0", "20261130015535.1#0#1#0",
                                 "20261130015535.1Z#zz#1#0"])
def test_parse_csn_rejects_malformed_values(bad):
    with pytest.raises(LdapError):
        parse_csn(bad)


def test_csn_by_sid_keeps_the_newest_per_server_and_ignores_sid_000():
    values = [csn("20261130010000.000000Z", 1), csn("20261130010005.000000Z", 1, 3),
              csn("20261130020000.000000Z", 0), csn("20261130010001.000000Z", 12)]
    result = csn_by_sid(values)
    assert sorted(result) == [1, 12]
    assert result[1].raw == values[1]


def test_sids_are_formatted_as_slapd_writes_them():
    assert format_sid(10) == "00a"
    assert format_sid(4) == "004"


# -- lag and verdict ----------------------------------------------------------------------

def test_lag_is_skew_free_per_server_id():
    # dc2's clock is an hour ahead: its SID 3 CSNs are "later", but lag only compares
    # CSNs of the same SID, so the skew never shows up as lag.
    a = csn_by_sid([csn("20261130010010.000000Z", 1), csn("20261130020000.000000Z", 3)])
    b = csn_by_sid([csn("20261130010007.500000Z", 1), csn("20261130020000.000000Z", 3)])
    table = lag_table({"dc1-ldap1": a, "dc2-ldap1": b, "dc2-ldap2": None})
    assert table[1]["lag"] == {"dc1-ldap1": 0.0, "dc2-ldap1": 2.5}
    assert table[3]["lag"] == {"dc1-ldap1": 0.0, "dc2-ldap1": 0.0}


def test_a_master_without_any_change_of_a_server_id_has_unknown_lag():
    a = csn_by_sid([csn("20261130010010.000000Z", 1), csn("20261130010010.000000Z", 2)])
    b = csn_by_sid([csn("20261130010010.000000Z", 1)])
    table = lag_table({"a": a, "b": b})
    assert table[2]["lag"] == {"a": 0.0, "b": None}
    healthy, problems = replication_verdict(
        [{"name": "a", "reachable": True}, {"name": "b", "reachable": True}], table, 5)
    assert not healthy and "b has no change of server ID 002" in problems[0]


def test_a_down_master_is_never_masked_by_the_others_being_equal():
    same = csn_by_sid([csn("20261130010010.000000Z", 1)])
    masters = [{"name": "dc1-ldap1", "reachable": True},
               {"name": "dc2-ldap2", "reachable": False, "error": "connection refused"}]
    healthy, problems = replication_verdict(masters, lag_table({"dc1-ldap1": same, "dc2-ldap2": None}), 5)
    assert not healthy
    assert problems == ["dc2-ldap2 is down: connection refused"]


def test_verdict_names_the_lagging_master_and_the_server_id():
    a = csn_by_sid([csn("20261130010030.000000Z", 10)])
    b = csn_by_sid([csn("20261130010000.000000Z", 10)])
    masters = [{"name": "a", "reachable": True}, {"name": "b", "reachable": True}]
    table = lag_table({"a": a, "b": b})
    assert replication_verdict(masters, table, 60) == (True, [])
    healthy, problems = replication_verdict(masters, table, 5)
    assert not healthy and problems == ["b lags 30.000 s behind server ID 00a (max_lag 5 s)"]


def test_no_master_answering_is_a_problem_even_with_no_lag_table():
    healthy, problems = replication_verdict([{"name": "a", "reachable": False, "error": "x"}], {}, 5)
    assert not healthy and "no master answered" in problems


# -- agreements ---------------------------------------------------------------------------

def test_desired_agreements_one_per_other_master_rid_is_the_provider_server_id():
    agreements = desired_agreements(2, MASTERS, SUFFIX, REPLICATION)
    assert [a["rid"] for a in agreements] == ["001", "003", "004"]
    assert all(a["provider"] != MASTERS[1]["uri"] for a in agreements)
    assert all(a["starttls"] == "critical" and a["tls_cacert"] == "/etc/ssl/lab-ca.pem" for a in agreements)
    assert agreements[0]["type"] == "refreshAndPersist" and agreements[0]["searchbase"] == SUFFIX


def test_no_starttls_on_ldaps_and_sasl_external_has_no_password():
    masters = [{"server_id": 1, "uri": "ldaps://a/"}, {"server_id": 2, "uri": "ldaps://b/"}]
    rep = dict(REPLICATION, bind_method="sasl_external", tls_cert="/c.pem", tls_key="/k.pem")
    (agreement,) = desired_agreements(1, masters, SUFFIX, rep)
    assert "starttls" not in agreement and "credentials" not in agreement
    assert agreement["bindmethod"] == "sasl" and agreement["saslmech"] == "EXTERNAL"
    assert agreement["tls_cert"] == "/c.pem"


def test_syncrepl_round_trip_and_slapd_defaults_do_not_count_as_a_change():
    desired = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)[0]
    text = "{0}" + format_syncrepl(desired)
    parsed = parse_syncrepl(text)
    assert parsed == desired
    # slapd's own re-serialisation adds defaults and may change case and spacing
    slapd = text + ' timeout=0 network-timeout=0 scope=sub attrs="*,+" schemachecking=off'
    slapd = slapd.replace("cn=admin,dc=example,dc=test", "cn=Admin, dc=example, dc=test")
    assert agreement_matches(parse_syncrepl(slapd), desired)


@pytest.mark.parametrize("key,value", [("credentials", "other"), ("provider", "ldap://elsewhere/"),
                                       ("retry", "5 +"), ("tls_reqcert", "never")])
def test_a_changed_managed_key_is_a_change(key, value):
    desired = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)[0]
    assert not agreement_matches(dict(desired, **{key: value}), desired)


def test_a_managed_key_set_by_hand_but_not_wanted_is_a_change():
    desired = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)[0]
    assert not agreement_matches(dict(desired, saslmech="EXTERNAL"), desired)


def test_quotes_in_agreement_values_are_refused():
    with pytest.raises(LdapError, match="quotes"):
        format_syncrepl({"rid": "001", "credentials": 'a"b'})


def test_server_id_values_with_and_without_urls():
    assert parse_server_ids(["{0}1", "0x2 ldap://b/"]) == [(1, None), (2, "ldap://b/")]


# -- refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("server_id,masters,reason", [
    (1, MASTERS[:2] + [{"server_id": 2, "uri": "ldap://x/"}], "duplicate_server_id"),
    (5, MASTERS, "not_in_set"),
    (1, MASTERS[:1], "bad_input"),
    (1, MASTERS + [{"server_id": 9, "uri": MASTERS[0]["uri"]}], "bad_input"),
    (1000, MASTERS, "bad_input"),
])
def test_validate_masters_refuses(server_id, masters, reason):
    with pytest.raises(LdapError) as err:
        validate_masters(server_id, masters)
    assert err.value.reason == reason


# -- the plan -----------------------------------------------------------------------------

def bare_state(**overrides):
    state = {"server_id_values": [], "server_id": None, "module_entries": ["cn=module{0},cn=config"],
             "syncprov_loaded": False, "database": "olcDatabase={2}mdb,cn=config", "overlay": None,
             "multi_provider": False, "multi_provider_attr": None, "agreements": []}
    state.update(overrides)
    return state


def test_plan_from_a_bare_server_is_in_the_order_slapd_accepts():
    agreements = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)
    ops = plan_mmr(bare_state(), 1, agreements, "100 10", 10000)
    assert [(o.kind, o.dn) for o in ops] == [
        ("modify", "cn=module{0},cn=config"),
        ("modify", "cn=config"),
        ("add", "olcOverlay=syncprov,olcDatabase={2}mdb,cn=config"),
        ("modify", "olcDatabase={2}mdb,cn=config"),
    ]
    last = ops[-1].payload
    # agreements and multi-provider mode travel in one modify
    assert set(last) == {"olcSyncrepl", "olcMultiProvider"}
    assert last["olcSyncrepl"][0][0] == ldap3.MODIFY_REPLACE
    assert [v.split(" ")[0] for v in last["olcSyncrepl"][0][1]] == ["{0}rid=002", "{1}rid=003", "{2}rid=004"]


def test_plan_of_the_predicted_state_is_empty():
    agreements = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)
    predicted = predict_state(bare_state(), 1, agreements, "100 10", 10000)
    assert plan_mmr(predicted, 1, agreements, "100 10", 10000) == []


def test_mirror_mode_is_read_as_multi_provider_and_a_removed_master_replaces_the_list():
    agreements = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)
    state = predict_state(bare_state(), 1, agreements, "100 10", 10000)
    state["multi_provider_attr"] = "olcMirrorMode"
    ops = plan_mmr(state, 1, agreements[:2], "100 10", 10000)
    assert len(ops) == 1 and set(ops[0].payload) == {"olcSyncrepl"}
    assert len(ops[0].payload["olcSyncrepl"][0][1]) == 2


def test_no_module_entry_means_one_is_created():
    ops = plan_mmr(bare_state(module_entries=[]), 1, [], "100 10", 10000)
    assert ops[0].kind == "add" and ops[0].dn == "cn=module,cn=config"


class RecordingClient:
    """Stands in for LdapClient: records writes, answers cn=config reads from a script."""

    uri = "ldap://fake/"

    def __init__(self, server_ids=("1",), fail_first_modify_with=None):
        self.calls = []
        self.server_ids = list(server_ids)
        self.fail_first_modify_with = fail_first_modify_with

    def add(self, dn, attrs):
        self.calls.append(("add", dn, sorted(attrs)))

    def modify(self, dn, changes):
        if self.fail_first_modify_with and any(a in changes for a in ("olcMultiProvider",)):
            err, self.fail_first_modify_with = self.fail_first_modify_with, None
            raise LdapError(err, self.uri)
        self.calls.append(("modify", dn, sorted(changes)))

    def read(self, dn, attributes=None):
        return {"olcServerID": self.server_ids}


def test_apply_reads_the_server_id_back_before_adding_the_overlay():
    agreements = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)
    client = RecordingClient(server_ids=["7"])
    with pytest.raises(LdapError, match="olcServerID reads"):
        apply_mmr(client, plan_mmr(bare_state(), 1, agreements, "100 10", 10000), 1)
    # module loaded and server ID written; nothing after the failed check
    assert [c[1] for c in client.calls] == ["cn=module{0},cn=config", "cn=config"]


def test_apply_falls_back_to_olcmirrormode_on_an_older_slapd():
    agreements = desired_agreements(1, MASTERS, SUFFIX, REPLICATION)
    client = RecordingClient(fail_first_modify_with="modify refused: undefinedAttributeType")
    apply_mmr(client, plan_mmr(bare_state(), 1, agreements, "100 10", 10000), 1)
    assert client.calls[-1] == ("modify", "olcDatabase={2}mdb,cn=config", ["olcMirrorMode", "olcSyncrepl"])


# -- audit ---------------------------------------------------------------------------------

LDIF = b"""dn: dc=example,dc=test
entryUUID: 11111111-0000-0000-0000-000000000001
entryCSN: 20261130010000.000000Z#000000#001#000000

dn:: dWlkPWrDtnJnLGRjPWV4YW1wbGUsZGM9dGVzdA==
entryCSN: 20261130010001.000000Z#000000#001#000000
entryUUID: 11111111-0000-0000-0000-000000000002

"""


def test_parse_ldif_ids_handles_base64_dns_and_any_attribute_order():
    ids = parse_ldif_ids(LDIF)
    csn, dn = ids[b"11111111-0000-0000-0000-000000000002"]
    assert csn == b"20261130010001.000000Z#000000#001#000000"
    assert _text(dn) == "uid=jörg,dc=example,dc=test"
    assert len(ids) == 2


def test_parse_ldif_ids_skips_an_entry_without_uuid_and_keeps_the_others_paired():
    text = LDIF + b"dn: cn=no-uuid,dc=example,dc=test\nentryCSN: 20261130010009.000000Z#000000#001#000000\n\n"
    ids = parse_ldif_ids(text)
    assert len(ids) == 2
    assert ids[b"11111111-0000-0000-0000-000000000001"][0].startswith(b"20261130010000")


def test_differences_are_reported_as_text_whatever_the_engine():
    a = {b"u1": (b"c1", b"dn:: dWlkPWrDtnJnLGRjPWV4YW1wbGUsZGM9dGVzdA==")}
    (diff,) = compare_ids({"a": a, "b": {}}, 5)["differences"]
    assert diff == {"dn": "uid=jörg,dc=example,dc=test", "kind": "missing",
                    "entry_uuid": {"a": "u1", "b": None}, "entry_csn": {"a": "c1", "b": None},
                    "dn_per_master": {"a": "uid=jörg,dc=example,dc=test", "b": None}}


def test_compare_ids_counts_missing_and_different_entries():
    base = {f"u{i}": (f"csn{i}", f"cn=e{i}") for i in range(5)}
    b = dict(base)
    del b["u1"]
    c = dict(base, u3=("other", "cn=e3"))
    report = compare_ids({"a": base, "b": b, "c": c}, limit=10)
    assert report["missing"] == {"a": 0, "b": 1, "c": 0}
    assert report["different"] == 1
    assert report["differences_total"] == 2
    kinds = {d["dn"]: d["kind"] for d in report["differences"]}
    assert kinds == {"cn=e1": "missing", "cn=e3": "different"}
    assert not report["in_sync"]
    assert compare_ids({"a": base, "b": dict(base)}, 10)["in_sync"]


def test_an_entry_recreated_with_another_uuid_is_one_different_entry():
    a = {"u1": ("c1", "uid=x,dc=t"), "u2": ("c2", "uid=y,dc=t")}
    b = {"u1": ("c1", "uid=x,dc=t"), "u9": ("c9", "UID=Y, dc=t")}
    report = compare_ids({"a": a, "b": b}, limit=10)
    assert report["different"] == 1 and report["missing"] == {"a": 0, "b": 0}
    (diff,) = report["differences"]
    assert diff["kind"] == "different" and diff["entry_uuid"] == {"a": "u2", "b": "u9"}
    assert diff["entry_csn"] == {"a": "c2", "b": "c9"}


def test_an_entry_renamed_on_one_master_only_is_different_and_case_alone_is_not():
    a = {"u1": ("c1", "cn=old,dc=t"), "u2": ("c2", "cn=Same,dc=t")}
    b = {"u1": ("c1", "cn=new,dc=t"), "u2": ("c2", "CN=same, DC=t")}
    report = compare_ids({"a": a, "b": b}, limit=10)
    assert report["different"] == 1 and report["differences_total"] == 1
    (diff,) = report["differences"]
    assert diff["kind"] == "different" and diff["dn_per_master"] == {"a": "cn=old,dc=t", "b": "cn=new,dc=t"}


def test_compare_ids_limits_the_listed_differences_but_counts_all():
    a = {f"u{i}": ("x", f"cn={i}") for i in range(50)}
    report = compare_ids({"a": a, "b": {}}, limit=3)
    assert report["differences_total"] == 50 and len(report["differences"]) == 3


def test_ldapsearch_command_never_carries_the_password():
    conn = {"bind_method": "simple", "bind_dn": "cn=admin", "bind_pw": "s3cret", "start_tls": True,
            "connect_timeout": 5}
    argv = ldapsearch_command("ldap://h/", conn, SUFFIX, 500, "/tmp/pw")
    assert "s3cret" not in argv
    assert argv[argv.index("-y") + 1] == "/tmp/pw" and "-ZZ" in argv
    assert "pr=500/noprompt" in argv and argv[-2:] == ["entryUUID", "entryCSN"]


# -- canary --------------------------------------------------------------------------------

class CanaryClient:
    """A master sharing one directory with the others (replication is instantaneous)."""

    def __init__(self, store):
        self.store = store
        self.writes = []

    def add(self, dn, attrs):
        self.writes.append("add")
        self.store[dn] = attrs["description"]

    def modify(self, dn, changes):
        self.writes.append("modify")
        self.store[dn] = changes["description"][0][1][0]

    def delete(self, dn):
        self.writes.append("delete")
        self.store.pop(dn, None)

    def read(self, dn, attributes=None):
        return {"description": [self.store[dn]]} if dn in self.store else None

    def exists(self, dn):
        return dn in self.store


def fake_clock():
    ticks = itertools.count()
    return lambda: next(ticks) / 1000.0


def test_canary_one_marker_added_rewritten_by_each_master_then_deleted():
    store = {}
    clients = {n: CanaryClient(store) for n in ("a", "b", "c")}
    report = run_canary(clients, SUFFIX, timeout=1000, now=fake_clock())
    assert [r["writer"] for r in report["rounds"]] == ["a", "b", "c"]
    assert all(set(r["propagation_ms"]) == {"a", "b", "c"} - {r["writer"]} for r in report["rounds"])
    assert report["complete"] and report["cleaned_up"] and report["swept"] == [] and store == {}
    # one add and one delete in all: a quick add/delete pair is what plain syncrepl can resurrect
    assert [clients[n].writes for n in ("a", "b", "c")] == [["add"], ["modify"], ["modify", "delete"]]
    assert report["dn"].startswith("cn=zg-canary-") and report["dn"].endswith(SUFFIX)


def test_canary_sweeps_a_marker_that_came_back_after_its_deletion():
    store = {}

    class Resurrecting(CanaryClient):
        """Its replica of the deleted marker comes back once, as a late relayed add would."""

        def __init__(self, store):
            super().__init__(store)
            self.ghost = None
            self.deleted_seen = False

        def read(self, dn, attributes=None):
            if dn not in self.store and dn.startswith("cn=zg-canary") and not self.deleted_seen:
                self.deleted_seen = True
                self.ghost = dn
                return None  # the deletion is seen first ...
            if dn == self.ghost:
                return {"description": ["stale"]}  # ... then the entry is back
            return super().read(dn, attributes)

        def exists(self, dn):
            return dn == self.ghost or super().exists(dn)

        def delete(self, dn):
            if dn == self.ghost:
                self.ghost = None
            super().delete(dn)

    clients = {"a": CanaryClient(store), "b": Resurrecting(store), "c": CanaryClient(store)}
    report = run_canary(clients, SUFFIX, timeout=1000, now=fake_clock())
    assert report["swept"] == [{"dn": report["dn"], "masters": ["b"]}]
    assert report["cleaned_up"] and not clients["b"].exists(report["dn"])


def test_canary_reports_a_master_it_never_reached():
    store = {}

    class Never(CanaryClient):
        def read(self, dn, attributes=None):
            return None

        def exists(self, dn):
            return False

    clients = {"a": CanaryClient(store), "b": Never(store)}
    report = run_canary(clients, SUFFIX, timeout=0.05, now=fake_clock())
    first = report["rounds"][0]
    assert first["propagation_ms"] == {"b": None} and not first["complete"]
    assert not report["complete"] and store == {}


def test_canary_moves_on_when_a_master_refuses_the_add():
    store = {}

    class ReadOnly(CanaryClient):
        def add(self, dn, attrs):
            raise LdapError("add refused: unwillingToPerform", "ldap://ro/")

    clients = {"ro": ReadOnly(store), "b": CanaryClient(store), "c": CanaryClient(store)}
    report = run_canary(clients, SUFFIX, timeout=1000, now=fake_clock())
    assert "unwillingToPerform" in report["rounds"][0]["error"] and not report["complete"]
    assert clients["b"].writes[0] == "add" and report["rounds"][2]["complete"] and store == {}


# -- connection errors become one error type with a reason --------------------------------

class ScriptedConnection:
    """Replaces ldap3.Connection: fails at the step and with the exception it is given."""

    script: dict = {}

    def __init__(self, server, **kwargs):
        self.server = server
        self.kwargs = kwargs

    def _step(self, name):
        if name in self.script:
            raise self.script[name]
        return True

    def open(self):
        return self._step("open")

    def start_tls(self):
        return self._step("start_tls")

    def bind(self):
        return self._step("bind")


@pytest.mark.parametrize("step,exc,reason,text", [
    ("open", ldap3.core.exceptions.LDAPSocketOpenError("socket connection error while opening: [Errno 111]"),
     "unreachable", "cannot connect"),
    ("open", ldap3.core.exceptions.LDAPSocketOpenError("socket ssl wrapping error: certificate verify failed"),
     "tls", "certificate"),
    ("start_tls", ldap3.core.exceptions.LDAPStartTLSError("wrap socket error: certificate verify failed"),
     "tls", "not trusted"),
    ("bind", ldap3.core.exceptions.LDAPInvalidCredentialsResult(result=49, description="invalidCredentials"),
     "invalid_credentials", "invalid credentials for cn=config"),
])
def test_connection_failures_map_to_reasons(monkeypatch, step, exc, reason, text):
    from ansible_collections.mailops.zimbra_geo.plugins.module_utils import _ldap

    monkeypatch.setattr(ScriptedConnection, "script", {step: exc})
    monkeypatch.setattr(_ldap.ldap3, "Connection", ScriptedConnection)
    client = _ldap.LdapClient("ldap://127.10.1.11/", bind_dn="cn=config", bind_pw="pw")
    with pytest.raises(LdapError) as err:
        client.open()
    assert err.value.reason == reason and text in str(err.value)
    assert str(err.value).startswith("ldap://127.10.1.11/: ")


def test_starttls_is_skipped_for_ldaps_and_verification_is_on_by_default(monkeypatch, tmp_path):
    from ansible_collections.mailops.zimbra_geo.plugins.module_utils import _ldap

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(ScriptedConnection, "script", {"start_tls": AssertionError("no StartTLS on ldaps")})
    monkeypatch.setattr(_ldap.ldap3, "Connection", ScriptedConnection)
    client = _ldap.LdapClient("ldaps://127.10.1.11/", bind_dn="cn=config", bind_pw="pw", ca_path=str(ca)).open()
    tls = client.conn.server.tls
    assert tls.validate == ssl.CERT_REQUIRED and tls.ca_certs_file == str(ca)
    assert client.conn.kwargs["receive_timeout"] == 30


def test_a_missing_ca_file_is_a_clear_error():
    from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import LdapClient

    with pytest.raises(LdapError, match="TLS settings.*/nonexistent/ca.pem") as err:
        LdapClient("ldap://x/", bind_dn="cn=config", bind_pw="pw", ca_path="/nonexistent/ca.pem").open()
    assert err.value.reason == "bad_input"


def test_simple_bind_without_password_is_refused_before_connecting():
    from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import LdapClient

    with pytest.raises(LdapError, match="needs bind_dn and bind_pw"):
        LdapClient("ldap://x/", bind_dn="cn=config")
