"""access_check: which answers stop a run (refused, TLS, wrong zone) and which only warn (no answer)."""

from __future__ import annotations

import json
import socket

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import DnsError
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import LdapError
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import OntapError
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._scality import ScalityError
from ansible_collections.mailops.zimbra_geo.plugins.modules import access_check

SECRET = "pw-not-in-any-output"


def raise_if(error):
    """Raise the scripted error, if any."""
    if error is not None:
        raise error


class FakeOntap:
    error: OntapError | None = None

    def __init__(self, *args, **kwargs):
        pass

    def cluster(self):
        raise_if(self.error)
        return {"name": "dc1-ontap"}

    def close(self):
        pass


class FakeLdap:
    error: LdapError | None = None

    def __init__(self, uri, **kwargs):
        self.uri = uri

    def __enter__(self):
        raise_if(self.error)
        return self

    def __exit__(self, *exc):
        return False


class FakeScality:
    error: ScalityError | None = None

    def __init__(self, *args, **kwargs):
        pass

    def supervisor_status(self):
        raise_if(self.error)
        return {}


class FakeDns:
    error: DnsError | None = None

    def __init__(self, view, timeout):
        pass

    def check_zone(self):
        raise_if(self.error)


@pytest.fixture(name="listener")
def fixture_listener():
    # The ONTAP check first opens a plain connection: something must listen.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    for name, fake in (("OntapClient", FakeOntap), ("LdapClient", FakeLdap), ("ScalityClient", FakeScality),
                       ("DnsClient", FakeDns)):
        fake.error = None
        monkeypatch.setattr(access_check, name, fake)


def args(port: int) -> dict:
    return {
        "ontap": {"clusters": [{"site": "dc1", "hostname": "127.0.0.1", "port": port}], "password": SECRET},
        "ldap": {"masters": [{"host": "dc1-ldap1", "uri": "ldap://127.0.0.1"}], "bind_dn": "cn=admin,dc=x",
                 "bind_pw": SECRET},
        "scality": {"supervisor_url": "https://127.0.0.1", "supervisor_username": "s", "supervisor_password": SECRET},
        "dns": {"views": [{"name": "internal", "server": "127.0.0.1", "zone": "example.test", "key_name": "k",
                           "key_secret": "c2VjcmV0LXRzaWc="}]},
    }


def run(capsys, monkeypatch, port: int) -> tuple[dict, list[str]]:
    warnings: list[str] = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, warning, **kw: warnings.append(warning))
    with patch_module_args(args(port)), pytest.raises(SystemExit):
        access_check.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out), warnings


def test_every_backend_accepts(capsys, monkeypatch, listener):
    result, warnings = run(capsys, monkeypatch, listener)
    assert not result.get("failed") and not result["changed"]
    assert [e["status"] for e in result["endpoints"]] == ["ok"] * 4
    assert warnings == []


@pytest.mark.parametrize("fake, error, message", [
    (FakeOntap, OntapError("401", status=401),
     "ONTAP cluster 127.0.0.1:{port} (site dc1): refused the credentials "
     "(zimbra_geo_ontap_username / zimbra_geo_ontap_password)"),
    (FakeLdap, LdapError("invalid", "ldap://127.0.0.1", "invalid_credentials"),
     "LDAP master ldap://127.0.0.1 (dc1-ldap1): refused the bind as cn=admin,dc=x"),
    (FakeLdap, LdapError("certificate verify failed", "ldap://127.0.0.1", "tls"), "certificate verify failed"),
    (FakeScality, ScalityError("authentication failed", status=401, kind="auth"),
     "Scality Supervisor https://127.0.0.1: refused the credentials"),
    (FakeDns, DnsError("rejected TSIG key 'k' (BADKEY)", "internal", "tsig"),
     "DNS view internal at 127.0.0.1: rejected TSIG key 'k' (BADKEY) (zimbra_geo_dns_views"),
    (FakeDns, DnsError("does not serve the zone", "internal", "zone"), "does not serve the zone"),
], ids=["ontap-401", "ldap-credentials", "ldap-tls", "scality-401", "dns-badkey", "dns-zone"])
def test_a_refusal_fails_naming_the_endpoint(capsys, monkeypatch, listener, fake, error, message):
    fake.error = error
    result = run(capsys, monkeypatch, listener)[0]
    assert result["failed"]
    assert result["msg"].startswith("Pre-flight read refused; nothing was changed:")
    assert message.format(port=listener) in result["msg"]


@pytest.mark.parametrize("fake, error", [
    (FakeLdap, LdapError("cannot connect", "ldap://127.0.0.1", "unreachable")),
    (FakeScality, ScalityError("cannot connect", kind="unreachable")),
    (FakeScality, ScalityError("HTTP 503", status=503, kind="http")),
    (FakeDns, DnsError("no answer", "internal", "timeout")),
], ids=["ldap", "scality", "scality-503", "dns"])
def test_no_answer_only_warns(capsys, monkeypatch, listener, fake, error):
    fake.error = error
    result, warnings = run(capsys, monkeypatch, listener)
    assert not result.get("failed")
    assert len(result["not_answering"]) == 1
    assert "does not answer" in warnings[0]


def test_a_missing_ca_file_is_refused_before_anything_is_contacted(capsys, monkeypatch, tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    params = args(1)
    for backend in ("ontap", "ldap", "scality"):
        params[backend]["ca_path"] = missing
    params["scality"]["validate_certs"] = False  # not verified: its CA is not needed
    for fake in (FakeOntap, FakeLdap, FakeScality, FakeDns):
        fake.error = AssertionError("nothing may be contacted")
    monkeypatch.setattr(access_check.socket, "create_connection",
                        lambda *a, **kw: pytest.fail("nothing may be contacted"))
    with patch_module_args(params), pytest.raises(SystemExit):
        access_check.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "nothing was contacted" in result["msg"]
    assert f"ontap: ca_path {missing} is not a file" in result["msg"]
    assert f"ldap: ca_path {missing} is not a file" in result["msg"]
    assert "scality" not in result["msg"]


def test_an_ontap_cluster_that_does_not_answer_costs_one_connection(capsys, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
    FakeOntap.error = AssertionError("the client must not be used when nothing answers")
    result, warnings = run(capsys, monkeypatch, port)
    assert not result.get("failed")
    assert result["not_answering"] == [f"ONTAP cluster 127.0.0.1:{port} (site dc1)"]
