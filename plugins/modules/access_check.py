# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: access_check
short_description: Check, read-only, that every backend accepts the inventory's credentials
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - The pre-flight read every playbook makes before its first change. For each backend given,
    one authenticated read per endpoint, all at once; the task fails, naming the endpoint and
    the variable to fix, when an endpoint that answers refuses the credentials (ONTAP C(401),
    LDAP C(invalidCredentials), Supervisor C(401), a TSIG key that selects no view), when its
    TLS certificate does not verify, or when it answers but not as expected (a DNS view that
    does not serve the zone).
  - An endpoint that does not answer at all only gives a warning, since a disaster failover
    runs with the lost site down; the roles decide whether they need it.
  - A C(ca_path) that names no file (with C(validate_certs) on) fails the task before any
    endpoint is contacted.
  - ONTAP reads C(/api/cluster); LDAP binds (and binds as the C(cn=config) administrator when
    O(ldap.config_bind_pw) is given); Scality reads the Supervisor's C(status/); DNS asks each
    view, with its TSIG key, for the SOA of its zone.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  ontap:
    description: ONTAP clusters and the credentials of their REST API.
    type: dict
    suboptions:
      clusters:
        description: The clusters, one per site.
        type: list
        elements: dict
        required: true
        suboptions:
          site:
            description: The site the cluster belongs to (shown in messages).
            type: str
          hostname:
            description: Address or name of the cluster management interface.
            type: str
            required: true
          port:
            description: HTTPS port of the REST API.
            type: int
            default: 443
      username:
        description: Cluster user for HTTP Basic authentication.
        type: str
        default: admin
      password:
        description: Password of O(ontap.username).
        type: str
        required: true
      validate_certs:
        description: Verify the clusters' TLS certificates. Turning it off is warned about.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA that signed the clusters' certificates.
        type: path
      timeout:
        description: Seconds to wait for each exchange.
        type: float
        default: 5.0
  ldap:
    description: LDAP masters and the credentials the roles bind with.
    type: dict
    suboptions:
      masters:
        description: The masters.
        type: list
        elements: dict
        required: true
        suboptions:
          host:
            description: Inventory name of the master (shown in messages).
            type: str
          uri:
            description: LDAP URI of the master.
            type: str
            required: true
      bind_dn:
        description: DN of the directory administrator.
        type: str
        required: true
      bind_pw:
        description: Password of O(ldap.bind_dn).
        type: str
        required: true
      config_bind_dn:
        description: DN of the C(cn=config) administrator.
        type: str
        default: cn=config
      config_bind_pw:
        description: Password of O(ldap.config_bind_dn); when given, that bind is checked too.
        type: str
      start_tls:
        description: StartTLS on C(ldap://) URIs.
        type: bool
        default: true
      validate_certs:
        description: Verify the masters' TLS certificates. Turning it off is warned about.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA that signed the masters' certificates.
        type: path
      timeout:
        description: Seconds to wait for the connection and each operation.
        type: float
        default: 5.0
  scality:
    description: The Scality Supervisor and its credentials.
    type: dict
    suboptions:
      supervisor_url:
        description: Base URL of the Supervisor (the API is under C(/api/v0.1/)).
        type: str
        required: true
      supervisor_username:
        description: Supervisor user for HTTP Basic authentication.
        type: str
      supervisor_password:
        description: Password of O(scality.supervisor_username).
        type: str
      validate_certs:
        description: Verify the Supervisor's TLS certificate. Turning it off is warned about.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA that signed the Supervisor's certificate.
        type: path
      timeout:
        description: Seconds to wait for each exchange.
        type: float
        default: 5.0
  dns:
    description: The DNS views and their TSIG keys.
    type: dict
    suboptions:
      views:
        description: One entry per view, as for M(mailops.zimbra_geo.dns_record).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Name of the view (shown in messages).
            type: str
          server:
            description: Address of the DNS server.
            type: str
            required: true
          port:
            description: DNS port.
            type: int
            default: 53
          zone:
            description: The zone the view serves.
            type: str
            required: true
          key_name:
            description: Name of the view's TSIG key.
            type: str
            required: true
          key_algorithm:
            description: Algorithm of the TSIG key.
            type: str
            default: hmac-sha256
            choices: [hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5]
          key_secret:
            description: Base64 secret of the TSIG key.
            type: str
            required: true
          protocol:
            description: Transport of the queries.
            type: str
            default: tcp
            choices: [tcp, udp]
      timeout:
        description: Seconds to wait for each answer.
        type: float
        default: 5.0
requirements:
  - netapp-ontap (for O(ontap))
  - ldap3 (for O(ldap))
  - requests (for O(scality))
  - dnspython (for O(dns))
seealso:
  - module: mailops.zimbra_geo.inventory_check
"""

EXAMPLES = r"""
- name: Check every backend accepts the credentials before any change
  mailops.zimbra_geo.access_check:
    ontap:
      clusters:
        - {site: dc1, hostname: ontap.dc1.example.com}
        - {site: dc2, hostname: ontap.dc2.example.com}
      password: "{{ zimbra_geo_ontap_password }}"
    dns:
      views:
        - name: internal
          server: 10.0.0.53
          zone: example.com
          key_name: k-internal
          key_secret: "{{ tsig_internal }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
endpoints:
  description: One entry per endpoint checked.
  returned: always
  type: list
  elements: dict
  contains:
    backend:
      description: C(ontap), C(ldap), C(scality) or C(dns).
      type: str
    endpoint:
      description: What was asked (cluster, URI, Supervisor URL, view).
      type: str
    status:
      description: C(ok), C(refused) (credentials or key), C(tls), C(unreachable) or C(error).
      type: str
    message:
      description: What the endpoint answered, when not C(ok).
      type: str
  sample:
    - {backend: ontap, endpoint: "ONTAP cluster ontap.dc1.example.com (site dc1)", status: ok, message: ""}
not_answering:
  description:
    - The endpoints that did not answer (warned about, not failed).
    - Not named C(unreachable), a key by which Ansible would mark the host itself unreachable.
  returned: always
  type: list
  elements: str
"""

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Tuple

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._dns import (
    DNSPYTHON_IMPORT_ERROR,
    HAS_DNSPYTHON,
    DnsClient,
    DnsError,
    View,
    dns_argument_spec,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import (
    HAS_LDAP3,
    LDAP3_IMPORT_ERROR,
    LdapClient,
    LdapError,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import (
    HAS_NETAPP_ONTAP,
    NETAPP_ONTAP_IMPORT_ERROR,
    OntapClient,
    OntapError,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._scality import (
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    ScalityClient,
    ScalityError,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings

# Which inventory variable to fix when an endpoint refuses the credentials.
FIX = {
    "ontap": "zimbra_geo_ontap_username / zimbra_geo_ontap_password",
    "ldap": "zimbra_geo_ldap_admin_dn / zimbra_geo_ldap_admin_password",
    "ldap_config": "zimbra_geo_ldap_config_password",
    "scality": "zimbra_geo_scality_supervisor_username / zimbra_geo_scality_supervisor_password",
    "dns": "zimbra_geo_dns_views.<view>.key_name / key_algorithm / key_secret",
}

Check = Tuple[str, str, Callable[[], None]]


def argument_spec() -> dict:
    return {
        "ontap": {"type": "dict", "options": {
            "clusters": {"type": "list", "elements": "dict", "required": True, "options": {
                "site": {"type": "str"},
                "hostname": {"type": "str", "required": True},
                "port": {"type": "int", "default": 443},
            }},
            "username": {"type": "str", "default": "admin"},
            "password": {"type": "str", "required": True, "no_log": True},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "timeout": {"type": "float", "default": 5.0},
        }},
        "ldap": {"type": "dict", "options": {
            "masters": {"type": "list", "elements": "dict", "required": True, "options": {
                "host": {"type": "str"},
                "uri": {"type": "str", "required": True},
            }},
            "bind_dn": {"type": "str", "required": True},
            "bind_pw": {"type": "str", "required": True, "no_log": True},
            "config_bind_dn": {"type": "str", "default": "cn=config"},
            "config_bind_pw": {"type": "str", "no_log": True},
            "start_tls": {"type": "bool", "default": True},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "timeout": {"type": "float", "default": 5.0},
        }},
        "scality": {"type": "dict", "options": {
            "supervisor_url": {"type": "str", "required": True},
            "supervisor_username": {"type": "str"},
            "supervisor_password": {"type": "str", "no_log": True},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "timeout": {"type": "float", "default": 5.0},
        }},
        "dns": {"type": "dict", "options": {
            # The same view options as dns_record's.
            "views": dns_argument_spec()["views"],
            "timeout": {"type": "float", "default": 5.0},
        }},
    }


class Refused(Exception):
    """The endpoint answered and refused the credentials or key."""


class Tls(Exception):
    """The endpoint's certificate did not verify."""


class Unreachable(Exception):
    """The endpoint did not answer."""


def ontap_checks(p: dict) -> List[Check]:
    checks: List[Check] = []
    for cluster in p["clusters"]:
        where = "ONTAP cluster %s:%s" % (cluster["hostname"], cluster["port"])
        if cluster.get("site"):
            where += " (site %s)" % cluster["site"]

        def read(cluster: dict = cluster) -> None:
            # One plain connection first: netapp-ontap retries a refused or silent connection
            # five times, which would make a lost site cost half a minute here.
            try:
                socket.create_connection((cluster["hostname"], cluster["port"]), timeout=p["timeout"]).close()
            except OSError as exc:
                raise Unreachable("cannot connect: %s" % (exc.strerror or exc)) from None
            client = OntapClient(cluster["hostname"], p["username"], p["password"], port=cluster["port"],
                                 validate_certs=p["validate_certs"], ca_path=p["ca_path"], timeout=p["timeout"])
            try:
                client.cluster()
            except OntapError as exc:
                if exc.status == 401:
                    raise Refused("refused the credentials (%s)" % FIX["ontap"]) from None
                if exc.status is None and ("SSL" in str(exc) or "certificate" in str(exc)):
                    raise Tls(str(exc)) from None
                if exc.status is None:
                    raise Unreachable(str(exc)) from None
                raise
            finally:
                client.close()

        checks.append(("ontap", where, read))
    return checks


def ldap_checks(p: dict) -> List[Check]:
    checks: List[Check] = []
    binds = [(p["bind_dn"], p["bind_pw"], "ldap")]
    if p["config_bind_pw"]:
        binds.append((p["config_bind_dn"], p["config_bind_pw"], "ldap_config"))
    for master in p["masters"]:
        where = "LDAP master %s" % master["uri"]
        if master.get("host"):
            where += " (%s)" % master["host"]

        def bind(uri: str = master["uri"]) -> None:
            for dn, pw, fix in binds:
                try:
                    with LdapClient(uri, bind_dn=dn, bind_pw=pw, start_tls=p["start_tls"],
                                    validate_certs=p["validate_certs"], ca_path=p["ca_path"],
                                    connect_timeout=p["timeout"], timeout=p["timeout"]):
                        pass
                except LdapError as exc:
                    if exc.reason == "invalid_credentials":
                        raise Refused("refused the bind as %s (%s)" % (dn, FIX[fix])) from None
                    if exc.reason == "tls":
                        raise Tls(str(exc)) from None
                    if exc.reason == "unreachable":
                        raise Unreachable(str(exc)) from None
                    raise

        checks.append(("ldap", where, bind))
    return checks


def scality_checks(p: dict) -> List[Check]:
    def status() -> None:
        client = ScalityClient(p["supervisor_url"], p["supervisor_username"], p["supervisor_password"],
                               p["validate_certs"], p["ca_path"], p["timeout"], retries=0)
        try:
            client.supervisor_status()
        except ScalityError as exc:
            if exc.kind == "auth":
                raise Refused("refused the credentials (%s)" % FIX["scality"]) from None
            if exc.kind == "tls":
                raise Tls(str(exc)) from None
            if exc.kind in ("unreachable", "timeout") or (exc.status or 0) >= 500:
                raise Unreachable(str(exc)) from None
            raise

    return [("scality", "Scality Supervisor %s" % p["supervisor_url"], status)]


def dns_checks(p: dict) -> List[Check]:
    checks: List[Check] = []
    for params in p["views"]:
        where = "DNS view %s at %s" % (params.get("name") or params["key_name"], params["server"])

        def soa(params: dict = params) -> None:
            try:
                DnsClient(View.from_params(params), timeout=p["timeout"]).check_zone()
            except DnsError as exc:
                if exc.kind == "tsig":
                    raise Refused("%s (%s)" % (exc.detail, FIX["dns"])) from None
                if exc.kind in ("unreachable", "timeout"):
                    raise Unreachable(exc.detail) from None
                raise

        checks.append(("dns", where, soa))
    return checks


BUILDERS: Dict[str, Callable[[dict], List[Check]]] = {
    "ontap": ontap_checks, "ldap": ldap_checks, "scality": scality_checks, "dns": dns_checks,
}


def run_one(check: Check) -> Dict[str, str]:
    backend, where, fn = check
    try:
        fn()
    except Refused as exc:
        return {"backend": backend, "endpoint": where, "status": "refused", "message": str(exc)}
    except Tls as exc:
        return {"backend": backend, "endpoint": where, "status": "tls", "message": str(exc)}
    except Unreachable as exc:
        return {"backend": backend, "endpoint": where, "status": "unreachable", "message": str(exc)}
    except (OntapError, LdapError, ScalityError, DnsError) as exc:
        return {"backend": backend, "endpoint": where, "status": "error", "message": str(exc)}
    return {"backend": backend, "endpoint": where, "status": "ok", "message": ""}


def run(params: dict) -> Dict[str, Any]:
    checks: List[Check] = []
    for backend, build in BUILDERS.items():
        if params.get(backend):
            checks += build(params[backend])
    if not checks:
        return {"changed": False, "endpoints": [], "not_answering": []}
    # Every endpoint at once: a lost site costs one connection timeout, not one per endpoint.
    with ThreadPoolExecutor(max_workers=min(16, len(checks))) as pool:
        endpoints = list(pool.map(run_one, checks))
    return {
        "changed": False,
        "endpoints": endpoints,
        # Not "unreachable": Ansible reads a true value of that key as the host being unreachable.
        "not_answering": [e["endpoint"] for e in endpoints if e["status"] == "unreachable"],
    }


def problems(result: Dict[str, Any]) -> List[str]:
    return ["%s: %s" % (e["endpoint"], e["message"])
            for e in result["endpoints"] if e["status"] not in ("ok", "unreachable")]


def missing_ca_files(params: dict) -> List[str]:
    """The backends whose ca_path names no file: said before anything is contacted, where a TLS
    library would otherwise report it per endpoint, in its own words, or as no answer."""
    return ["%s: ca_path %s is not a file" % (backend, params[backend]["ca_path"])
            for backend in ("ontap", "ldap", "scality")
            if params[backend] and params[backend]["validate_certs"] and params[backend]["ca_path"]
            and not os.path.isfile(params[backend]["ca_path"])]


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    missing = missing_ca_files(module.params)
    if missing:
        module.fail_json(msg="The CA bundle to verify the backends against is missing on the controller "
                             "(zimbra_geo_ca_path); nothing was contacted:\n- " + "\n- ".join(missing))
    needs = [("ontap", HAS_NETAPP_ONTAP, "netapp-ontap", NETAPP_ONTAP_IMPORT_ERROR),
             ("ldap", HAS_LDAP3, "ldap3", LDAP3_IMPORT_ERROR),
             ("scality", HAS_REQUESTS, "requests", REQUESTS_IMPORT_ERROR),
             ("dns", HAS_DNSPYTHON, "dnspython", DNSPYTHON_IMPORT_ERROR)]
    for backend, present, library, error in needs:
        if module.params[backend] and not present:
            module.fail_json(msg=missing_required_lib(library), exception=str(error))
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    result = run(module.params)
    for where in result["not_answering"]:
        module.warn("%s does not answer; the credentials could not be checked there" % where)
    found = problems(result)
    if found:
        module.fail_json(msg="Pre-flight read refused; nothing was changed:\n- " + "\n- ".join(found), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
