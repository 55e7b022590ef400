"""Unit tests of the dns_record module: the reconcile loop against in-memory views."""

from __future__ import annotations

import base64
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import (
    DnsError,
    RecordSet,
)
from ansible_collections.mailops.zimbra_geo.plugins.modules import dns_record

SECRET_I = base64.b64encode(b"internal-secret-internal-secret!").decode()
SECRET_E = base64.b64encode(b"external-secret-external-secret!").decode()


class FakeView:
    """The records of one view, and every call the module made to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict = {}
        self.calls: list = []
        self.fail_on: dict = {}  # method name -> DnsError to raise
        self.ignore_updates = False


class FakeClient:
    """Stands in for DnsClient; one FakeView per view name."""

    def __init__(self, fake: FakeView) -> None:
        self.fake = fake

    def _call(self, method: str, *args):
        self.fake.calls.append((method, *args))
        if method in self.fake.fail_on:
            raise self.fake.fail_on[method]

    def check_zone(self) -> None:
        self._call("check_zone")

    def read_rrset(self, fqdn, rdtype):
        self._call("read_rrset", fqdn, rdtype)
        return self.fake.records.get((fqdn, rdtype))

    def has_address(self, fqdn):
        self._call("has_address", fqdn)
        return (fqdn, "A") in self.fake.records or (fqdn, "AAAA") in self.fake.records

    def find_cname(self, fqdn):
        self._call("find_cname", fqdn)
        return self.fake.records.get((fqdn, "CNAME"))

    def update(self, fqdn, rdtype, desired):
        self._call("update", fqdn, rdtype, desired)
        if self.fake.ignore_updates:
            return
        if desired is None:
            self.fake.records.pop((fqdn, rdtype), None)
        else:
            self.fake.records[(fqdn, rdtype)] = desired


@pytest.fixture
def views():
    return {"internal": FakeView("internal"), "external": FakeView("external")}


def params(**overrides) -> dict:
    base = {
        "record": "mail",
        "type": "A",
        "values": ["127.10.2.41"],
        "ttl": 300,
        "state": "present",
        "dns_timeout": 5.0,
        "views": [
            {"name": "internal", "server": "127.10.0.53", "port": 53, "zone": "example.test",
             "key_name": "k-internal", "key_algorithm": "hmac-sha256", "key_secret": SECRET_I, "protocol": "tcp"},
            {"name": "external", "server": "127.10.0.53", "port": 53, "zone": "example.test",
             "key_name": "k-external", "key_algorithm": "hmac-sha256", "key_secret": SECRET_E, "protocol": "tcp"},
        ],
    }
    base.update(overrides)
    return base


def run(views, check_mode=False, diff_mode=False, **overrides) -> dict:
    runner = dns_record.DnsRecordRunner(
        params(**overrides), check_mode, diff_mode, lambda view, timeout: FakeClient(views[view.name])
    )
    return runner.run()


def updates(views) -> list:
    return [(name, c) for name, v in views.items() for c in v.calls if c[0] == "update"]


MAIL = "mail.example.test."
OLD = RecordSet(300, ("127.10.1.41",))
NEW = RecordSet(300, ("127.10.2.41",))


def test_check_mode_predicts_the_change_and_sends_no_update(views):
    views["internal"].records[(MAIL, "A")] = OLD
    result = run(views, check_mode=True, diff_mode=True)
    assert result["changed"] is True
    assert updates(views) == []
    assert views["internal"].records[(MAIL, "A")] == OLD
    assert [v["action"] for v in result["views"]] == ["replace", "replace"]
    assert [v["verified"] for v in result["views"]] == [False, False]
    assert result["views"][0]["after"] == {"ttl": 300, "values": ["127.10.2.41"]}
    assert result["diff"][0]["before"] == "mail.example.test. 300 IN A 127.10.1.41\n"
    assert result["diff"][0]["after"] == "mail.example.test. 300 IN A 127.10.2.41\n"
    assert result["diff"][1]["before_header"] == "mail.example.test. A (view external)"


def test_sets_every_view_verifies_and_is_idempotent(views):
    views["internal"].records[(MAIL, "A")] = OLD
    first = run(views)
    assert first["changed"] is True
    assert [call[0] for call in updates(views)] == ["internal", "external"]
    assert all(v["verified"] for v in first["views"])
    assert views["internal"].records[(MAIL, "A")] == NEW == views["external"].records[(MAIL, "A")]
    # the read after the update is the verification
    assert views["external"].calls[-1] == ("read_rrset", MAIL, "A")

    for view in views.values():
        view.calls.clear()
    second = run(views)
    assert second["changed"] is False
    assert updates(views) == []
    assert [v["action"] for v in second["views"]] == ["none", "none"]
    assert "diff" not in second


def test_only_the_view_that_differs_is_updated(views):
    views["internal"].records[(MAIL, "A")] = NEW
    result = run(views)
    assert [call[0] for call in updates(views)] == ["external"]
    assert [v["changed"] for v in result["views"]] == [False, True]


def test_ttl_change_alone_is_a_change(views):
    for view in views.values():
        view.records[(MAIL, "A")] = RecordSet(3600, NEW.values)
    result = run(views)
    assert result["changed"] is True
    assert views["external"].records[(MAIL, "A")].ttl == 300


def test_absent_removes_the_rrset_and_then_is_not_changed(views):
    views["external"].records[(MAIL, "A")] = OLD
    result = run(views, state="absent", values=None, diff_mode=True)
    assert [call[0] for call in updates(views)] == ["external"]
    assert (MAIL, "A") not in views["external"].records
    assert result["views"][1]["action"] == "delete"
    assert result["diff"][1]["after"] == ""
    assert run(views, state="absent", values=None)["changed"] is False


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"values": ["127.10.2.300"]}, "is not a valid A value"),
        ({"values": None}, "state=present needs at least one value"),
        ({"state": "absent"}, "values are not used with state=absent"),
        ({"ttl": -1}, "ttl must be between"),
        ({"record": "mail.other.test."}, "not inside zone"),
    ],
)
def test_bad_input_fails_before_any_change(views, overrides, fragment):
    with pytest.raises(DnsError, match=fragment):
        run(views, **overrides)
    assert updates(views) == []


def test_failure_in_the_second_view_leaves_the_first_unchanged(views):
    views["external"].fail_on["check_zone"] = DnsError("rejected TSIG key (BADKEY)", view="external", kind="tsig")
    with pytest.raises(DnsError) as err:
        run(views)
    assert err.value.view == "external"
    assert updates(views) == []


def test_a_refused_update_after_a_changed_view_says_which_views_changed(views):
    views["external"].fail_on["update"] = DnsError("refused the update", view="external", kind="refused")
    with pytest.raises(DnsError) as err:
        run(views)
    assert "views already changed: internal" in str(err.value)
    assert err.value.kind == "refused"


def test_an_update_the_server_ignored_fails_verification(views):
    views["internal"].ignore_updates = True
    with pytest.raises(DnsError) as err:
        run(views)
    assert err.value.kind == "verify"
    assert err.value.view == "internal"
    assert "answers no record instead of TTL 300 [127.10.2.41]" in str(err.value)


def test_data_next_to_a_cname_is_refused_before_any_change(views):
    views["external"].records[(MAIL, "CNAME")] = RecordSet(300, ("proxy1.dc1.example.test.",))
    with pytest.raises(DnsError, match="already has a CNAME"):
        run(views)
    assert updates(views) == []


def test_mx_target_without_address_is_refused_before_any_change(views):
    mx = {"record": "@", "type": "MX", "values": ["10 mta1.dc2.example.test"]}
    views["internal"].records[("mta1.dc2.example.test.", "A")] = RecordSet(300, ("127.10.2.31",))
    with pytest.raises(DnsError) as err:
        run(views, **mx)
    assert err.value.view == "external"
    assert "MX target mta1.dc2.example.test. has no A or AAAA record" in str(err.value)
    assert updates(views) == []
    views["external"].records[("mta1.dc2.example.test.", "A")] = RecordSet(300, ("127.10.2.31",))
    assert run(views, **mx)["changed"] is True


def test_main_reports_the_error_with_its_view_and_hides_secrets(monkeypatch, capsys, views):
    views["internal"].fail_on["check_zone"] = DnsError("no answer", view="internal", kind="timeout")
    monkeypatch.setattr(dns_record, "DnsClient", lambda view, timeout: FakeClient(views[view.name]))
    with patch_module_args(params()), pytest.raises(SystemExit):
        dns_record.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    assert result["failed"] is True
    assert result["msg"] == "view 'internal': no answer"
    assert result["view"] == "internal"
    assert result["error_kind"] == "timeout"
    assert SECRET_I not in out and SECRET_E not in out


def test_main_in_check_mode_returns_the_prediction(monkeypatch, capsys, views):
    monkeypatch.setattr(dns_record, "DnsClient", lambda view, timeout: FakeClient(views[view.name]))
    with patch_module_args({**params(), "_ansible_check_mode": True, "_ansible_diff": True}), pytest.raises(SystemExit):
        dns_record.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] is True
    assert len(result["diff"]) == 2
    assert updates(views) == []


def run_many(views, check_mode=False, records=None) -> dict:
    p = params(record=None, type=None, values=None, records=records)
    return dns_record.run_many(p, check_mode, False, lambda view, timeout: FakeClient(views[view.name]))


def entry(record, values, views=None, **kw):
    return {"record": record, "type": "A", "values": values, "ttl": 300, "state": "present", "views": views, **kw}


def test_records_sets_each_record_in_its_own_views_and_is_idempotent(views):
    records = [entry("mail", ["127.10.2.41"], ["internal"]), entry("mail", ["127.20.2.41"], ["external"]),
               entry("mbox1", ["127.10.2.21"], ["internal"])]
    first = run_many(views, records=records)
    assert first["changed"] is True
    assert views["internal"].records[(MAIL, "A")] == NEW
    assert views["external"].records[(MAIL, "A")] == RecordSet(300, ("127.20.2.41",))
    assert ("mbox1.example.test.", "A") not in views["external"].records
    assert [(r["record"], [v["name"] for v in r["views"]]) for r in first["records"]] == [
        ("mail", ["internal"]), ("mail", ["external"]), ("mbox1", ["internal"])]
    assert run_many(views, records=records)["changed"] is False


def test_records_reads_everything_before_any_change(views):
    # The second record set is refused at reading time: nothing at all is sent.
    views["internal"].records[("webmail.example.test.", "CNAME")] = RecordSet(300, ("proxy.example.test.",))
    with pytest.raises(DnsError, match="CNAME"):
        run_many(views, records=[entry("mail", ["127.10.2.41"]), entry("webmail", ["127.10.2.51"])])
    assert updates(views) == []


def test_records_check_mode_sends_nothing(views):
    result = run_many(views, check_mode=True, records=[entry("mail", ["127.10.2.41"])])
    assert result["changed"] is True and updates(views) == []


def test_records_refuses_an_unknown_view(views):
    with pytest.raises(DnsError, match="not in views"):
        run_many(views, records=[entry("mail", ["127.10.2.41"], ["dmz"])])
