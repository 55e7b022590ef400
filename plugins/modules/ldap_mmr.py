# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ldap_mmr
short_description: Make one OpenLDAP master part of an N-way multi-provider set
version_added: 0.1.0
description:
  - Configures, on C(cn=config) of one OpenLDAP server, everything that server needs to be one
    master of an N-way multi-provider (multi-master) set replicating the database of O(suffix) -
    its server ID, the C(syncprov) module and overlay, one C(olcSyncrepl) agreement per other
    master, and multi-provider mode.
  - Writes in the order slapd accepts them at run time. Load C(syncprov), set C(olcServerID)
    (read back before going on, so no change is ever stamped with server ID 000), add the
    overlay, then set the agreements B(and) multi-provider mode in one modify (slapd rejects
    multi-provider mode without agreements, and agreements alone make the database read-only).
  - Reads before it writes, so a second run changes nothing. Agreements to masters no longer in
    O(masters) are removed and a changed agreement is replaced (the agreement list is replaced as
    a whole, in the same single modify).
  - The database is found by its suffix, never by its index (C({1}mdb), C({2}mdb) and
    C({3}mdb) are all common). C(olcMirrorMode), the older name of C(olcMultiProvider), is
    understood when reading.
  - Refuses, before any change, a server ID listed twice or already used by another reachable
    master, a set of masters that does not include this one, and a server without the database.
  - Every agreement uses O(masters[].server_id) of its provider as its C(rid).
author:
  - zimbra_geo maintainers (@mailops)
extends_documentation_fragment:
  - mailops.zimbra_geo.ldap
attributes:
  check_mode:
    support: full
    description: Reports the operations it would run and the predicted configuration.
  diff_mode:
    support: full
    description: Before and after of the managed configuration, with credentials masked.
options:
  server_uri:
    description:
      - URI of the server to configure, for example C(ldap://ldap1.example.com/) or
        C(ldapi://%2Frun%2Fslapd%2Fldapi) (with O(bind_method=sasl_external) as root).
      - The bind identity must be able to write C(cn=config) (its rootDN, or root over C(ldapi)).
    type: str
    required: true
  server_id:
    description:
      - This master's server ID (C(olcServerID)), unique in the set. 1 to 999.
    type: int
    required: true
  suffix:
    description:
      - Suffix of the replicated database, for example C(dc=example,dc=com).
    type: str
    required: true
  masters:
    description:
      - Every master of the set, this one included (matched by O(server_id)). At least two.
    type: list
    elements: dict
    required: true
    suboptions:
      server_id:
        description:
          - The master's server ID.
        type: int
        required: true
      uri:
        description:
          - The URL the other masters replicate from (the agreement's C(provider)). With
            O(check_peers), also the URL this module reads the master's server ID from.
        type: str
        required: true
  replication:
    description:
      - How every agreement of this master connects to its providers.
    type: dict
    required: true
    suboptions:
      bind_method:
        description:
          - V(simple) binds with O(replication.bind_dn) and O(replication.credentials).
          - V(sasl_external) uses SASL EXTERNAL (a TLS client certificate, see
            O(replication.tls_cert)).
        type: str
        default: simple
        choices: [simple, sasl_external]
      bind_dn:
        description:
          - DN the consumer binds as on its providers; it must read every entry and its
            operational attributes (usually the rootDN of the database).
        type: str
      credentials:
        description:
          - Password of O(replication.bind_dn). It is stored in C(cn=config) of this master.
        type: str
      start_tls:
        description:
          - Use StartTLS (C(starttls=critical)) towards C(ldap://) providers.
        type: bool
        default: true
      tls_cacert:
        description:
          - CA file, as a path on the LDAP server, to verify the providers' certificates.
        type: path
      tls_reqcert:
        description:
          - Certificate checking of the providers (C(tls_reqcert) of the agreement).
        type: str
        default: demand
        choices: [demand, hard, try, allow, never]
      tls_cert:
        description:
          - Client certificate, as a path on the LDAP server, for SASL EXTERNAL over TLS.
        type: path
      tls_key:
        description:
          - Key of O(replication.tls_cert), as a path on the LDAP server.
        type: path
      retry:
        description:
          - Reconnection schedule (C(retry) of the agreement), pairs of seconds and counts.
            The default retries every second for a minute, then every 10 seconds forever.
        type: str
        default: "1 60 10 +"
      keepalive:
        description:
          - TCP keepalive of the replication connections, C(idle:probes:interval).
        type: str
        default: "240:10:30"
      network_timeout:
        description:
          - Seconds to wait for a provider's TCP connection (C(network-timeout)); 0 leaves
            slapd's default.
        type: int
        default: 0
  syncprov_checkpoint:
    description:
      - C(olcSpCheckpoint) of the syncprov overlay, C(<operations> <minutes>).
    type: str
    default: "100 10"
  syncprov_sessionlog:
    description:
      - C(olcSpSessionLog) of the syncprov overlay, in operations.
    type: int
    default: 10000
  check_peers:
    description:
      - Read C(olcServerID) on every other master (with the same connection options) and
        refuse if one already uses O(server_id). An unreachable master only gives a warning.
      - Skipped with O(bind_method=sasl_external), which reaches only the local server.
    type: bool
    default: true
notes:
  - C(cn=config) is not replicated, so the module runs once for each master.
  - After the build, wait for convergence with M(mailops.zimbra_geo.ldap_replication_info)
    (a fresh master may take minutes to receive a large directory).
seealso:
  - module: mailops.zimbra_geo.ldap_replication_info
"""

EXAMPLES = r"""
- name: List the masters of the set from the inventory
  ansible.builtin.set_fact:
    ldap_masters: >-
      {{ ldap_masters | default([]) + [{'server_id': hostvars[item].zimbra_geo_ldap_server_id,
                                        'uri': hostvars[item].zimbra_geo_ldap_uri}] }}
  loop: "{{ groups['ldap_masters'] }}"
  run_once: true

- name: Make every LDAP master part of the 4-way set
  mailops.zimbra_geo.ldap_mmr:
    server_uri: "{{ zimbra_geo_ldap_uri }}"
    bind_dn: cn=config
    bind_pw: "{{ zimbra_geo_ldap_config_password }}"
    ca_path: "{{ zimbra_geo_ca_path }}"
    server_id: "{{ zimbra_geo_ldap_server_id }}"
    suffix: "{{ zimbra_geo_ldap_suffix }}"
    masters: "{{ ldap_masters }}"
    replication:
      bind_dn: "{{ zimbra_geo_ldap_admin_dn }}"
      credentials: "{{ zimbra_geo_ldap_admin_password }}"
      tls_cacert: /etc/ssl/certs/example-ca.pem
  delegate_to: localhost

- name: The same, as root over ldapi on the master itself
  mailops.zimbra_geo.ldap_mmr:
    server_uri: ldapi://%2Frun%2Fslapd%2Fldapi
    bind_method: sasl_external
    server_id: 1
    suffix: dc=example,dc=com
    masters:
      - {server_id: 1, uri: "ldap://ldap1.example.com/"}
      - {server_id: 2, uri: "ldap://ldap2.example.com/"}
    replication:
      bind_dn: cn=admin,dc=example,dc=com
      credentials: "{{ ldap_admin_password }}"
"""

RETURN = r"""
server_id:
  description: This master's server ID.
  returned: success
  type: int
  sample: 1
database:
  description: DN of the replicated database's configuration entry.
  returned: success
  type: str
  sample: olcDatabase={1}mdb,cn=config
operations:
  description: The writes made (or, in check mode, that would be made), in order.
  returned: success
  type: list
  elements: str
  sample:
    - load the syncprov module
    - set olcServerID to 1
    - add the syncprov overlay
    - set 3 replication agreements and turn on multi-provider mode
state:
  description: The managed configuration after the run (predicted in check mode), credentials masked.
  returned: success
  type: dict
  contains:
    server_id:
      description: C(olcServerID) of the server.
      type: int
    syncprov_loaded:
      description: Whether the C(syncprov) module is loaded.
      type: bool
    database:
      description: DN of the database's configuration entry.
      type: str
    syncprov:
      description: C(checkpoint) and C(sessionlog) of the syncprov overlay, null without it.
      type: dict
    multi_provider:
      description: Whether multi-provider mode is on.
      type: bool
    agreements:
      description: The C(olcSyncrepl) agreements.
      type: list
      elements: str
  sample:
    server_id: 1
    syncprov_loaded: true
    database: olcDatabase={1}mdb,cn=config
    syncprov: {checkpoint: "100 10", sessionlog: "10000"}
    multi_provider: true
    agreements:
      - rid=002 provider=ldap://ldap2.example.com/ bindmethod=simple binddn="cn=admin,dc=example,dc=com"
        credentials=******** searchbase="dc=example,dc=com" type=refreshAndPersist retry="1 60 10 +"
warnings:
  description: Masters that could not be read for the server ID check.
  returned: when a peer is unreachable
  type: list
  elements: str
reason:
  description: On failure, a short machine-readable cause (for example C(duplicate_server_id),
    C(not_in_set), C(no_database), C(invalid_credentials), C(unreachable), C(tls)).
  returned: failure
  type: str
  sample: duplicate_server_id
"""

from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import (
    HAS_LDAP3,
    LDAP3_IMPORT_ERROR,
    LdapClient,
    LdapError,
    apply_mmr,
    concurrently,
    connection_params,
    desired_agreements,
    ldap_argument_spec,
    own_server_id,
    plan_mmr,
    predict_state,
    public_state,
    read_mmr_state,
    validate_masters,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings


def argument_spec() -> dict[str, Any]:
    spec = ldap_argument_spec()
    spec.update(
        server_uri={"type": "str", "required": True},
        server_id={"type": "int", "required": True},
        suffix={"type": "str", "required": True},
        masters={"type": "list", "elements": "dict", "required": True, "options": {
            "server_id": {"type": "int", "required": True},
            "uri": {"type": "str", "required": True},
        }},
        replication={"type": "dict", "required": True, "options": {
            "bind_method": {"type": "str", "default": "simple", "choices": ["simple", "sasl_external"]},
            "bind_dn": {"type": "str"},
            "credentials": {"type": "str", "no_log": True},
            "start_tls": {"type": "bool", "default": True},
            "tls_cacert": {"type": "path"},
            "tls_reqcert": {"type": "str", "default": "demand",
                            "choices": ["demand", "hard", "try", "allow", "never"]},
            "tls_cert": {"type": "path"},
            "tls_key": {"type": "path", "no_log": False},
            "retry": {"type": "str", "default": "1 60 10 +"},
            "keepalive": {"type": "str", "default": "240:10:30"},
            "network_timeout": {"type": "int", "default": 0},
        }},
        syncprov_checkpoint={"type": "str", "default": "100 10"},
        syncprov_sessionlog={"type": "int", "default": 10000},
        check_peers={"type": "bool", "default": True},
    )
    return spec


def check_peer_ids(params: dict[str, Any], factory: Callable[..., Any]) -> list[str]:
    """Refuse a server ID another master already carries; return warnings for silent peers."""
    peers = [m for m in params["masters"] if m["server_id"] != params["server_id"]]

    def read(peer: dict[str, Any]) -> Any:
        with factory(peer["uri"], **connection_params(params)) as client:
            entry = client.read("cn=config", ["olcServerID"]) or {}
            return own_server_id(entry.get("olcServerID", []), peer["uri"])

    warnings = []
    found_ids = concurrently(read, peers)
    for i, peer in enumerate(peers):
        found = found_ids[i]
        if isinstance(found, LdapError):
            warnings.append(f"server ID check skipped for {peer['uri']}: {found}")
        elif found == params["server_id"]:
            raise LdapError(f"server ID {found} is already used by {peer['uri']}",
                            reason="duplicate_server_id")
    return warnings


def run(module: AnsibleModule, factory: Callable[..., Any] = LdapClient) -> dict[str, Any]:
    """Read, plan, apply unless check mode; the result the module returns."""
    p = module.params
    rep = p["replication"]
    validate_masters(p["server_id"], p["masters"])
    if rep["bind_method"] == "simple" and not (rep["bind_dn"] and rep["credentials"]):
        raise LdapError("replication.bind_method simple needs replication.bind_dn and "
                        "replication.credentials", reason="bad_input")
    agreements = desired_agreements(p["server_id"], p["masters"], p["suffix"], rep)
    own_uri = next(m["uri"] for m in p["masters"] if m["server_id"] == p["server_id"])
    warnings: list[str] = []
    with factory(p["server_uri"], **connection_params(p)) as client:
        state = read_mmr_state(client, p["suffix"], own_uri)
        if p["check_peers"] and p["bind_method"] == "simple":
            warnings = check_peer_ids(p, factory)
        ops = plan_mmr(state, p["server_id"], agreements, p["syncprov_checkpoint"],
                       p["syncprov_sessionlog"])
        if ops and not module.check_mode:
            apply_mmr(client, ops, p["server_id"])
            after = read_mmr_state(client, p["suffix"], own_uri)
        else:
            after = predict_state(state, p["server_id"], agreements, p["syncprov_checkpoint"],
                                  p["syncprov_sessionlog"]) if ops else state
    result: dict[str, Any] = {
        "changed": bool(ops),
        "server_id": p["server_id"],
        "database": state["database"],
        "operations": [op.description for op in ops],
        "state": public_state(after),
    }
    if module._diff:
        result["diff"] = {"before": public_state(state), "after": public_state(after)}
    for warning in warnings:
        module.warn(warning)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("bind_method", "simple", ("bind_dn", "bind_pw"))],
    )
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    if not HAS_LDAP3:
        module.fail_json(msg=missing_required_lib("ldap3"), exception=str(LDAP3_IMPORT_ERROR))
    try:
        result = run(module)
    except LdapError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
