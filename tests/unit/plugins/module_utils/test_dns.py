"""Unit tests of the DNS client: pure functions, and DnsClient against a scripted server."""

from __future__ import annotations

import base64

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import (
    DnsClient,
    DnsError,
    RecordSet,
    View,
    check_distinct_views,
    describe,
    dns_argument_spec,
    in_zone_targets,
    normalize_values,
    record_fqdn,
    rrset_action,
    rrset_diff,
)

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def make_view(**overrides) -> View:
    params = {
        "name": "internal",
        "server": "127.0.0.1",
        "port": 5300,
        "zone": "example.test",
        "key_name": "k-internal",
        "key_algorithm": "hmac-sha256",
        "key_secret": SECRET,
        "protocol": "tcp",
    }
    params.update(overrides)
    return View.from_params(params)


# --- values and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rdtype", "given", "expected"),
    [
        ("A", ["127.10.2.41", " 127.10.1.41 ", "127.10.2.41"], ("127.10.1.41", "127.10.2.41")),
        ("AAAA", ["2001:DB8:0:0::0:1"], ("2001:db8::1",)),
        (
            "MX",
            ["10 mta1.dc1.example.test", "20 mta1.dc2.example.test."],
            ("10 mta1.dc1.example.test.", "20 mta1.dc2.example.test."),
        ),
        ("CNAME", ["mbox1.dc2.example.test"], ("mbox1.dc2.example.test.",)),
        ("TXT", ["v=spf1 mx -all"], ('"v=spf1 mx -all"',)),
        ("TXT", ['say "hi"'], ('"say \\"hi\\""',)),
        ("TXT", ['"already" "quoted"'], ('"already" "quoted"',)),
        ("a", ["10.0.0.1"], ("10.0.0.1",)),
    ],
)
def test_normalize_values_gives_canonical_sorted_unique_text(rdtype, given, expected):
    assert normalize_values(rdtype, given) == expected


def test_long_txt_is_split_in_strings_of_at_most_255_octets():
    (value,) = normalize_values("TXT", ["x" * 300])
    assert value == f'"{"x" * 255}" "{"x" * 45}"'


@pytest.mark.parametrize(
    ("rdtype", "given", "fragment"),
    [
        ("A", ["127.10.2.300"], "is not a valid A value"),
        ("A", ["2001:db8::1"], "is not a valid A value"),
        ("AAAA", ["127.0.0.1"], "is not a valid AAAA value"),
        ("MX", ["mta1.example.test"], "is not a valid MX value"),
        ("CNAME", ["a.example.test", "b.example.test"], "exactly one value"),
        ("A", [""], "empty value"),
        ("SRV", ["0 0 25 mta.example.test"], "not supported"),
    ],
)
def test_invalid_values_are_input_errors(rdtype, given, fragment):
    with pytest.raises(DnsError) as err:
        normalize_values(rdtype, given)
    assert fragment in str(err.value)
    assert err.value.kind == "input"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("@", "example.test."),
        ("", "example.test."),
        ("mail", "mail.example.test."),
        ("mail.dc1", "mail.dc1.example.test."),
        ("mail.example.test", "mail.example.test."),
        ("MAIL.Example.Test.", "MAIL.Example.Test."),
    ],
)
def test_record_fqdn(record, expected):
    assert record_fqdn(record, "example.test") == expected


def test_record_outside_the_zone_is_refused():
    with pytest.raises(DnsError, match="not inside zone 'example.test.'"):
        record_fqdn("mail.other.test.", "example.test")


def test_in_zone_targets_lists_only_mx_exchanges_inside_the_zone():
    values = normalize_values("MX", ["10 mta1.dc1.example.test", "20 mx.provider.test"])
    assert in_zone_targets("MX", values, "example.test") == ["mta1.dc1.example.test."]
    assert in_zone_targets("A", ("127.0.0.1",), "example.test") == []


# --- record sets: comparison and diff ------------------------------------------------------

A1 = RecordSet(300, ("127.10.1.41",))
A2 = RecordSet(300, ("127.10.2.41",))


@pytest.mark.parametrize(
    ("current", "desired", "action"),
    [
        (None, A1, "replace"),
        (A1, A1, None),
        (A1, A2, "replace"),
        (A1, RecordSet(60, A1.values), "replace"),  # a TTL change alone is a change
        (A1, None, "delete"),
        (None, None, None),
    ],
)
def test_rrset_action(current, desired, action):
    assert rrset_action(current, desired) == action


def test_values_from_any_spelling_compare_equal_to_what_a_server_returns():
    given = RecordSet(300, normalize_values("MX", ["10 MTA1.dc1.example.test"]))
    # dnspython prints names as received; DNS names compare case-insensitively but text does
    # not, so the canonical text must come from the same printer on both sides.
    read_back = RecordSet(300, normalize_values("MX", ["10 MTA1.dc1.example.test."]))
    assert rrset_action(read_back, given) is None


def test_rrset_diff_shows_zone_file_lines_per_view():
    diff = rrset_diff("external", "mail.example.test.", "A", A1, A2)
    assert diff["before_header"] == "mail.example.test. A (view external)"
    assert diff["before"] == "mail.example.test. 300 IN A 127.10.1.41\n"
    assert diff["after"] == "mail.example.test. 300 IN A 127.10.2.41\n"
    assert rrset_diff("internal", "x.example.test.", "A", None, A1)["before"] == ""
    assert rrset_diff("internal", "x.example.test.", "A", A1, None)["after"] == ""


def test_describe():
    assert describe(None) == "no record"
    assert describe(A1) == "TTL 300 [127.10.1.41]"


# --- views ---------------------------------------------------------------------------------


def test_view_defaults_its_label_to_the_key_name_and_hides_the_secret():
    view = make_view(name=None)
    assert view.name == "k-internal"
    assert view.zone == "example.test."
    assert SECRET not in repr(view)


def test_bad_secret_is_rejected_before_any_network_use():
    with pytest.raises(DnsError) as err:
        make_view(key_secret="not base64!")
    assert str(err.value).startswith("view 'internal': key_secret of TSIG key 'k-internal' is not valid base64")


def test_two_entries_reaching_the_same_view_are_refused():
    views = [make_view(), make_view(name="external")]
    with pytest.raises(DnsError, match="'internal' and 'external' use the same server, zone and TSIG key"):
        check_distinct_views(views)
    check_distinct_views([make_view(), make_view(name="external", key_name="k-external")])


def test_argument_spec_hides_the_secret_only():
    options = dns_argument_spec()["views"]["options"]
    assert options["key_secret"]["no_log"] is True
    assert options["key_name"]["no_log"] is False


# --- the client against a scripted server --------------------------------------------------


class FakeServer:
    """One view of an authoritative server: answers signed queries and applies updates.

    Messages are handled as objects (no wire, no real TSIG): the real signing path is covered
    by the integration tests against named.
    """

    def __init__(self, zone: str = "example.test.", key_name: str = "k-internal") -> None:
        self.zone = dns.name.from_text(zone)
        self.key_name = dns.name.from_text(key_name)
        self.rrsets: dict = {}
        self.queries: list = []
        self.updates: list = []
        self.update_rcode = dns.rcode.NOERROR
        self.add(zone, 300, "SOA", "ns.example.test. hostmaster.example.test. 1 3600 600 86400 300")

    def add(self, name: str, ttl: int, rdtype: str, *values: str) -> None:
        rrset = dns.rrset.from_text(name, ttl, "IN", rdtype, *values)
        self.rrsets[(rrset.name, rrset.rdtype)] = rrset

    def __call__(self, message, view, timeout):
        assert message.had_tsig, "every message must be signed"
        if message.keyname != self.key_name:
            raise dns.tsig.PeerBadKey
        response = dns.message.make_response(message)
        if isinstance(message, dns.update.UpdateMessage):
            self.updates.append(message)
            if message.zone[0].name != self.zone:
                response.set_rcode(dns.rcode.NOTAUTH)
            elif self.update_rcode != dns.rcode.NOERROR:
                response.set_rcode(self.update_rcode)
            else:
                for rrset in message.update:
                    key = (rrset.name, rrset.rdtype)
                    if rrset.deleting == dns.rdataclass.ANY:
                        self.rrsets.pop(key, None)
                    elif key in self.rrsets:
                        self.rrsets[key].union_update(rrset)
                        self.rrsets[key].update_ttl(rrset.ttl)
                    else:
                        self.rrsets[key] = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
                        self.rrsets[key].update(rrset)
            return response
        question = message.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        if not question.name.is_subdomain(self.zone):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        found = self.rrsets.get((question.name, question.rdtype))
        if found is not None:
            response.answer.append(found)
        elif not any(key[0] == question.name for key in self.rrsets):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


def test_read_replace_and_delete_an_rrset():
    server = FakeServer()
    client = DnsClient(make_view(), transport=server)
    client.check_zone()
    assert client.read_rrset("mail.example.test.", "A") is None
    desired = RecordSet(60, ("127.10.2.41", "127.10.2.42"))
    client.update("mail.example.test.", "A", desired)
    assert client.read_rrset("mail.example.test.", "A") == desired
    client.update("mail.example.test.", "A", None)
    assert client.read_rrset("mail.example.test.", "A") is None
    assert len(server.updates) == 2


def test_update_replaces_the_whole_rrset_in_one_message():
    server = FakeServer()
    server.add("mail.example.test.", 300, "A", "127.10.1.41", "127.10.1.42")
    client = DnsClient(make_view(), transport=server)
    client.update("mail.example.test.", "A", RecordSet(300, ("127.10.2.41",)))
    (message,) = server.updates
    deleted = [r for r in message.update if r.deleting == dns.rdataclass.ANY]
    added = [r for r in message.update if r.deleting is None]
    assert [r.name.to_text() for r in deleted] == ["mail.example.test."]
    assert [rd.to_text() for r in added for rd in r] == ["127.10.2.41"]
    assert client.read_rrset("mail.example.test.", "A") == RecordSet(300, ("127.10.2.41",))


def test_mx_exchange_is_sent_absolute_not_relative_to_the_zone():
    server = FakeServer()
    client = DnsClient(make_view(), transport=server)
    client.update("example.test.", "MX", RecordSet(300, normalize_values("MX", ["10 mta1.dc1.example.test"])))
    rrset = server.rrsets[(dns.name.from_text("example.test."), dns.rdatatype.MX)]
    assert [rd.exchange.to_text() for rd in rrset] == ["mta1.dc1.example.test."]


def test_zone_not_served_in_the_view_is_a_zone_error():
    client = DnsClient(make_view(zone="other.test"), transport=FakeServer())
    with pytest.raises(DnsError) as err:
        client.check_zone()
    assert err.value.kind == "zone"
    assert err.value.view == "internal"
    assert "does not serve the zone" in str(err.value)


def test_a_name_inside_the_zone_that_is_not_a_zone_apex_is_refused_with_a_hint():
    server = FakeServer()
    client = DnsClient(make_view(zone="dc1.example.test"), transport=server)

    def answer_with_authority(message, view, timeout):
        response = dns.message.make_response(message)
        response.flags |= dns.flags.AA
        response.authority.append(server.rrsets[(server.zone, dns.rdatatype.SOA)])
        return response

    client._transport = answer_with_authority
    with pytest.raises(DnsError, match="the enclosing zone there is 'example.test.'"):
        client.check_zone()


def test_notauth_on_update_names_the_zone_and_the_view():
    server = FakeServer(zone="other.test.")
    client = DnsClient(make_view(), transport=server)
    with pytest.raises(DnsError) as err:
        client.update("mail.example.test.", "A", A1)
    assert err.value.kind == "zone"
    assert "not authoritative for zone 'example.test.'" in str(err.value)


def test_refused_update_is_a_refused_error():
    server = FakeServer()
    server.update_rcode = dns.rcode.REFUSED
    client = DnsClient(make_view(), transport=server)
    with pytest.raises(DnsError) as err:
        client.update("mail.example.test.", "A", A1)
    assert err.value.kind == "refused"
    assert "refused the update of zone 'example.test.'" in str(err.value)


@pytest.mark.parametrize(
    ("raised", "kind", "fragment"),
    [
        (dns.tsig.PeerBadKey, "tsig", "rejected TSIG key 'k-internal' (hmac-sha256) (BADKEY)"),
        (dns.tsig.PeerBadSignature, "tsig", "(BADSIG)"),
        (dns.tsig.PeerBadTime, "tsig", "(BADTIME)"),
        (dns.tsig.BadSignature, "tsig", "failed TSIG verification"),
        (dns.exception.Timeout, "timeout", "no answer from DNS server 127.0.0.1 port 5300 (TCP) within 2 s"),
        (ConnectionRefusedError, "unreachable", "connection refused (nothing listens there)"),
        (OSError(113, "No route to host"), "unreachable", "unreachable: No route to host"),
        (dns.exception.FormError("missing TSIG"), "protocol", "malformed or unsigned answer"),
    ],
)
def test_transport_failures_become_typed_errors_naming_the_view(raised, kind, fragment):
    def transport(message, view, timeout):
        raise raised

    client = DnsClient(make_view(), timeout=2, transport=transport)
    with pytest.raises(DnsError) as err:
        client.check_zone()
    assert err.value.kind == kind
    assert err.value.view == "internal"
    assert str(err.value).startswith("view 'internal': query example.test. SOA")
    assert fragment in str(err.value)


def test_has_address_and_find_cname():
    server = FakeServer()
    server.add("mta1.dc1.example.test.", 300, "AAAA", "2001:db8::31")
    server.add("webmail.example.test.", 300, "CNAME", "proxy1.dc1.example.test.")
    client = DnsClient(make_view(), transport=server)
    assert client.has_address("mta1.dc1.example.test.")
    assert not client.has_address("mta1.dc2.example.test.")
    assert client.find_cname("webmail.example.test.") == RecordSet(300, ("proxy1.dc1.example.test.",))
    assert client.find_cname("mta1.dc1.example.test.") is None
