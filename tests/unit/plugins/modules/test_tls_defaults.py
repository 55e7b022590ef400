"""TLS verification is on by default in every module, and turning it off is warned about.

The defaults are read from each module's own argument spec (every module of plugins/modules,
so a new module is covered without editing this test); the warning is what each module
prints when run with verification off against an endpoint that does not answer.
"""

from __future__ import annotations

import importlib
import json
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings

MODULES = sorted(
    p.stem for p in (Path(__file__).resolve().parents[4] / "plugins" / "modules").glob("*.py")
    if p.stem != "__init__"
)
# Options that, set the other way, accept a certificate that does not verify.
SECURE_DEFAULTS = {"validate_certs": True, "start_tls": True, "tls_reqcert": "demand"}


def load(name: str) -> Any:
    return importlib.import_module(f"ansible_collections.mailops.zimbra_geo.plugins.modules.{name}")


def walk(spec: dict, path: str = "") -> Iterator[tuple[str, str, dict]]:
    for option, body in spec.items():
        yield f"{path}{option}", option, body
        if body.get("options"):
            yield from walk(body["options"], f"{path}{option}.")


def tls_options(name: str) -> list[tuple[str, str, dict]]:
    module = load(name)
    if not hasattr(module, "argument_spec"):
        return []
    return [item for item in walk(module.argument_spec()) if item[1] in SECURE_DEFAULTS]


def test_every_module_is_looked_at():
    assert {"snapmirror", "snapmirror_info", "ldap_mmr", "ldap_replication_info", "scality_ring_info",
            "access_check", "dns_record", "zmcontrol"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_tls_verification_is_the_default(name):
    for path, option, body in tls_options(name):
        wanted = SECURE_DEFAULTS[option]
        assert body.get("default") == wanted, f"{name}: {path} must default to {wanted}"
        if option == "validate_certs":
            assert body.get("type") == "bool", f"{name}: {path}"


@pytest.mark.parametrize("name", MODULES)
def test_every_password_and_key_is_no_log(name):
    module = load(name)
    if not hasattr(module, "argument_spec"):
        return
    for path, option, body in walk(module.argument_spec()):
        if any(word in option for word in ("password", "secret", "bind_pw", "credentials", "config_pw")):
            assert body.get("no_log") is True, f"{name}: {path} must be no_log"


def test_the_warning_names_the_option_and_the_risk():
    found = unverified_tls_warnings({"validate_certs": True, "ldap": {"validate_certs": False},
                                     "replication": {"tls_reqcert": "never"}, "list": [{"validate_certs": False}]})
    assert len(found) == 3
    assert found[0].startswith("ldap.validate_certs=false: ") and "impersonate" in found[0]
    assert found[1].startswith("replication.tls_reqcert=never: ")
    assert found[2].startswith("list[0].validate_certs=false: ")
    assert unverified_tls_warnings({"validate_certs": True, "tls_reqcert": "demand"}) == []


@pytest.fixture(name="closed_port")
def fixture_closed_port() -> int:
    # A port nothing listens on: each module fails at once on the connection, after warning.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def insecure_args(name: str, port: int) -> dict:
    ontap = {"hostname": "127.0.0.1", "port": port, "password": "pw-never-shown", "validate_certs": False,
             "timeout": 1}
    ldap = {"bind_dn": "cn=admin", "bind_pw": "pw-never-shown", "validate_certs": False, "connect_timeout": 1,
            "timeout": 1}
    uri = f"ldaps://127.0.0.1:{port}"
    return {
        "snapmirror_info": {**ontap, "svm": "svm_dc2"},
        "snapmirror": {**ontap, "svm": "svm_dc2", "state": "paused"},
        "volume_clone": {**ontap, "svm": "svm_dc2", "volumes": ["mbox1_db"]},
        "ldap_replication_info": {**ldap, "masters": [{"uri": uri}], "suffix": "dc=example,dc=test"},
        "ldap_mmr": {**ldap, "server_uri": uri, "server_id": 1, "suffix": "dc=example,dc=test",
                     "masters": [{"server_id": 1, "uri": uri}, {"server_id": 2, "uri": uri + "/"}],
                     "check_peers": False,
                     "replication": {"bind_dn": "cn=admin", "credentials": "pw-never-shown", "tls_reqcert": "never"}},
        "scality_ring_info": {"supervisor_url": f"https://127.0.0.1:{port}", "supervisor_username": "supervisor",
                              "supervisor_password": "pw-never-shown", "validate_certs": False, "retries": 0,
                              "timeout": 1, "sites": ["dc1", "dc2"], "supervisor_site": "dc1",
                              "sproxyd": [{"site": "dc1", "url": f"http://127.0.0.1:{port}/proxy/chord"},
                                          {"site": "dc2", "url": f"http://127.0.0.1:{port}/proxy/chord"}]},
        "access_check": {"ontap": {"clusters": [{"hostname": "127.0.0.1", "port": port}],
                                   "password": "pw-never-shown", "validate_certs": False, "timeout": 1}},
    }[name]


@pytest.mark.parametrize("name", [m for m in MODULES if tls_options(m)])
def test_every_tls_module_warns_when_verification_is_off(name):
    source = (Path(load(name).__file__)).read_text()
    assert "unverified_tls_warnings(module.params)" in source, (
        f"{name} has TLS options: pass unverified_tls_warnings(module.params) to module.warn in main()"
    )


WARNED = ["access_check", "ldap_mmr", "ldap_replication_info", "scality_ring_info", "snapmirror", "snapmirror_info",
          "volume_clone"]


@pytest.mark.parametrize("name", WARNED)
def test_turning_verification_off_is_warned_about(name, closed_port, capsys, monkeypatch):
    # In a test process Ansible hands module warnings to its controller display, not to the
    # JSON result: catch them where the module gives them.
    seen: list[str] = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, warning, **kw: seen.append(warning))
    with patch_module_args(insecure_args(name, closed_port)), pytest.raises(SystemExit):
        load(name).main()
    out = capsys.readouterr().out
    json.loads(out)  # the module ran to its end (it reports or fails on the closed port)
    warnings = [w for w in seen if "not verified" in w and "impersonate" in w]
    assert warnings, seen
    assert any(w.split("=")[0].endswith(("validate_certs", "tls_reqcert")) for w in warnings), warnings
    assert "pw-never-shown" not in out
