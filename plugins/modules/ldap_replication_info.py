# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ldap_replication_info
short_description: Prove that the masters of an OpenLDAP multi-provider set converge
version_added: 0.1.0
description:
  - Connects to every master concurrently and reads C(contextCSN) on the suffix entry. Per
    master, reports whether it answered (and why not), its server ID and its CSNs.
  - Per server ID, reports the lag of each master in seconds, computed without clock skew -
    the newest CSN of that server ID on any master minus this master's CSN of that server ID;
    both were stamped by the same server's clock. Server ID 000 (a server without
    C(olcServerID)) is ignored.
  - Gives a verdict, RV(healthy), with the reasons in RV(problems). A master that does not
    answer is always a problem of its own; it can never make the others look in sync.
  - With O(canary), writes a marker on each master in turn and measures, in milliseconds, when
    each other master sees that master's write. The first master adds one marker entry, each
    next master rewrites it, and it is deleted at the end and its deletion awaited everywhere
    (then a sweep deletes it wherever it came back). The writes are reported, not counted as
    a change.
  - With O(audit), compares the entries of all masters (C(entryUUID) and C(entryCSN) of every
    entry, paged) and reports entries missing on a master or different between masters, with
    counts and the first differences.
author:
  - zimbra_geo maintainers (@mailops)
extends_documentation_fragment:
  - mailops.zimbra_geo.ldap
attributes:
  check_mode:
    support: full
    description: Everything runs except the canary, which writes.
  diff_mode:
    support: none
    description: It changes nothing, so there is nothing to show.
options:
  masters:
    description:
      - Every master of the set.
    type: list
    elements: dict
    required: true
    suboptions:
      uri:
        description:
          - URI of the master, for example C(ldap://ldap1.example.com/).
        type: str
        required: true
      name:
        description:
          - Name of the master in results and messages. Defaults to O(masters[].uri).
        type: str
      server_id:
        description:
          - The master's server ID, reported with its results (it is not read from
            C(cn=config), which needs other credentials).
        type: int
  suffix:
    description:
      - Suffix of the replicated database. The bind identity must read its entries and their
        operational attributes (C(contextCSN), C(entryUUID), C(entryCSN)); the canary also
        adds and deletes entries.
    type: str
    required: true
  max_lag:
    description:
      - Largest lag, in seconds, of any master for any server ID that still counts as healthy.
    type: float
    default: 5.0
  canary:
    description:
      - Write a marker on each reachable master in turn and time its arrival on the others.
    type: bool
    default: false
  canary_base:
    description:
      - Entry under which the markers (C(objectClass device)) are created. Defaults to O(suffix).
    type: str
  canary_timeout:
    description:
      - Seconds to wait for a marker (and its deletion) to reach every other master.
    type: float
    default: 10.0
  audit:
    description:
      - Compare C(entryUUID)/C(entryCSN) of every entry across all masters.
    type: bool
    default: false
  audit_engine:
    description:
      - V(ldapsearch) runs OpenLDAP's C(ldapsearch) (package C(ldap-utils)) on the controller,
        one per master in parallel, asking only for the two attributes. On 100,000 entries per
        master it is many times faster than pulling entries through the pure-Python C(ldap3)
        (see C(bench/ldap_audit.py)); the password goes through a private temporary file,
        never the command line.
      - V(ldap3) needs nothing but the Python library.
      - V(auto) uses C(ldapsearch) when it is installed.
    type: str
    default: auto
    choices: [auto, ldapsearch, ldap3]
  audit_page_size:
    description:
      - Entries per page of the paged searches of the audit.
    type: int
    default: 1000
  audit_max_differences:
    description:
      - How many differences the audit lists (all are counted).
    type: int
    default: 20
seealso:
  - module: mailops.zimbra_geo.ldap_mmr
"""

EXAMPLES = r"""
- name: Check that the four masters converge, with a canary
  mailops.zimbra_geo.ldap_replication_info:
    masters:
      - {name: dc1-ldap1, uri: "ldap://ldap1.dc1.example.com/", server_id: 1}
      - {name: dc1-ldap2, uri: "ldap://ldap2.dc1.example.com/", server_id: 2}
      - {name: dc2-ldap1, uri: "ldap://ldap1.dc2.example.com/", server_id: 3}
      - {name: dc2-ldap2, uri: "ldap://ldap2.dc2.example.com/", server_id: 4}
    suffix: dc=example,dc=com
    bind_dn: cn=admin,dc=example,dc=com
    bind_pw: "{{ ldap_admin_password }}"
    ca_path: /etc/ssl/certs/example-ca.pem
    max_lag: 2
    canary: true
  register: ldap_replication
  delegate_to: localhost

- name: Stop here unless the directory is in sync
  ansible.builtin.assert:
    that: ldap_replication.healthy
    fail_msg: "{{ ldap_replication.problems }}"

- name: Compare every entry of every master
  mailops.zimbra_geo.ldap_replication_info:
    masters: "{{ ldap_masters }}"
    suffix: dc=example,dc=com
    bind_dn: cn=admin,dc=example,dc=com
    bind_pw: "{{ ldap_admin_password }}"
    audit: true
  delegate_to: localhost
"""

RETURN = r"""
healthy:
  description: Every master answered, every lag is within O(max_lag), and the canary and the
    audit (when run) found nothing wrong.
  returned: always
  type: bool
  sample: false
problems:
  description: Why RV(healthy) is false, one sentence per problem, naming the master.
  returned: always
  type: list
  elements: str
  sample: ["dc2-ldap2 is down: ldap://127.10.2.12/: cannot connect: socket connection error"]
masters:
  description: One entry per master, in the order of O(masters).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the master.
      type: str
    uri:
      description: Its URI.
      type: str
    server_id:
      description: Its server ID when given.
      type: int
    reachable:
      description: Whether it answered (a master that answers without the suffix entry, such as
        a fresh master before its first refresh, is reachable with RV(masters[].error) set).
      type: bool
    error:
      description: Why it did not answer, or what it lacks.
      type: str
    reason:
      description: Short cause (C(unreachable), C(tls), C(invalid_credentials), ...).
      type: str
    context_csn:
      description: Its C(contextCSN) values.
      type: list
      elements: str
    lag:
      description: Its lag in seconds per server ID (three hex digits), null when it has no
        change of that server ID.
      type: dict
    max_lag:
      description: Its largest known lag, in seconds.
      type: float
    in_sync:
      description: Whether it holds the newest CSN of every server ID.
      type: bool
    read_ms:
      description: Milliseconds to connect, bind and read.
      type: float
  sample:
    - name: dc1-ldap1
      uri: ldap://127.10.1.11/
      server_id: 1
      reachable: true
      error: null
      reason: null
      context_csn: ["20261130015535.983916Z#000000#001#000000"]
      lag: {"001": 0.0}
      max_lag: 0.0
      in_sync: true
      read_ms: 4.1
server_ids:
  description: Per server ID (three hex digits), its newest CSN anywhere and each reachable
    master's lag in seconds.
  returned: always
  type: dict
  sample: {"001": {"newest": "20261130015535.983916Z#000000#001#000000", "lag": {"dc1-ldap1": 0.0}}}
canary:
  description: The canary rounds, or C(ran=false) when not asked or in check mode.
  returned: always
  type: dict
  contains:
    ran:
      description: Whether markers were written.
      type: bool
    complete:
      description: Every marker reached every other reachable master in time.
      type: bool
    cleaned_up:
      description: Every marker was deleted and, at the final sweep, no master had any.
      type: bool
    swept:
      description: Markers found again after their deletion had been seen (an add relayed
        late by a third master brings a deleted entry back with plain syncrepl), with the
        masters they were deleted from in the final sweep.
      type: list
      elements: dict
    max_ms:
      description: Slowest propagation, in milliseconds.
      type: float
    dn:
      description: The marker entry (added by the first master, rewritten by each next one,
        deleted at the end).
      type: str
    rounds:
      description: Per writer, C(propagation_ms) per other master (null when its write did not
        arrive within O(canary_timeout)), C(max_ms), C(complete) and C(error).
      type: list
      elements: dict
audit:
  description: The entry-level comparison, or C(ran=false).
  returned: always
  type: dict
  contains:
    ran:
      description: Whether the audit ran.
      type: bool
    engine:
      description: C(ldapsearch) or C(ldap3).
      type: str
    entries:
      description: Number of entries per master.
      type: dict
    missing:
      description: Per master, how many entries (present elsewhere) it lacks.
      type: dict
    different:
      description: How many entries have different C(entryCSN) values across masters.
      type: int
    differences_total:
      description: How many entries are missing somewhere or different.
      type: int
    differences:
      description: The first O(audit_max_differences) of them, by DN, each with C(kind)
        (C(missing), C(different) or C(missing_and_different)) and C(entry_uuid), C(entry_csn)
        and C(dn_per_master) per master (null where missing). An entry re-created on a master
        under the same DN (another entryUUID) is one different entry, not two missing ones.
      type: list
      elements: dict
    errors:
      description: Masters that could not be read, with the reason.
      type: dict
    in_sync:
      description: No difference and no error.
      type: bool
    seconds:
      description: How long the audit took.
      type: float
"""

import shutil
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ldap import (
    HAS_LDAP3,
    LDAP3_IMPORT_ERROR,
    LdapClient,
    LdapError,
    audit_masters,
    concurrently,
    connection_params,
    csn_by_sid,
    format_sid,
    lag_table,
    ldap_argument_spec,
    read_context_csn,
    replication_verdict,
    run_canary,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings


def argument_spec() -> dict[str, Any]:
    spec = ldap_argument_spec()
    spec.update(
        masters={"type": "list", "elements": "dict", "required": True, "options": {
            "uri": {"type": "str", "required": True},
            "name": {"type": "str"},
            "server_id": {"type": "int"},
        }},
        suffix={"type": "str", "required": True},
        max_lag={"type": "float", "default": 5.0},
        canary={"type": "bool", "default": False},
        canary_base={"type": "str"},
        canary_timeout={"type": "float", "default": 10.0},
        audit={"type": "bool", "default": False},
        audit_engine={"type": "str", "default": "auto", "choices": ["auto", "ldapsearch", "ldap3"]},
        audit_page_size={"type": "int", "default": 1000},
        audit_max_differences={"type": "int", "default": 20},
    )
    return spec


def probe(master: dict[str, Any], params: dict[str, Any], factory: Callable[..., Any]) -> dict[str, Any]:
    """Connect, bind and read contextCSN on one master; failures become data, not errors."""
    started = time.monotonic()
    report: dict[str, Any] = {"name": master["name"], "uri": master["uri"],
                              "server_id": master.get("server_id"), "reachable": False,
                              "error": None, "reason": None, "context_csn": [], "client": None}
    client = None
    try:
        client = factory(master["uri"], **connection_params(params))
        client.open()
        report["reachable"] = True
        report["context_csn"] = read_context_csn(client, params["suffix"])
        report["csns"] = csn_by_sid(report["context_csn"])
        report["client"] = client
    except LdapError as exc:
        if client is not None:
            client.close()
        report["error"] = str(exc)
        report["reason"] = exc.reason
        if exc.reason == "no_suffix":
            # it answers but holds nothing yet (a fresh master before its first refresh)
            report["csns"] = {}
        else:
            report["reachable"] = False
    report["read_ms"] = round((time.monotonic() - started) * 1000.0, 3)
    return report


def run(module: AnsibleModule, factory: Callable[..., Any] = LdapClient,
        ldapsearch: Any = None) -> dict[str, Any]:
    p = module.params
    masters = [dict(m, name=m.get("name") or m["uri"]) for m in p["masters"]]
    names = [m["name"] for m in masters]
    if len(set(names)) != len(names):
        raise LdapError(f"master names must be unique: {names}", reason="bad_input")
    reports = concurrently(lambda m: probe(m, p, factory), masters)
    try:
        table = lag_table({r["name"]: (r.get("csns") if r["reachable"] else None) for r in reports})
        problems = replication_verdict(reports, table, p["max_lag"])[1]
        problems[:0] = [f"{r['name']} answers but {r['error']}" for r in reports if r["reachable"] and r["error"]]
        for report in reports:
            lags = {format_sid(sid): row["lag"][report["name"]]
                    for sid, row in table.items() if report["name"] in row["lag"]}
            known = [v for v in lags.values() if v is not None]
            report["lag"] = lags if report["reachable"] else {}
            report["max_lag"] = max(known) if known else (0.0 if report["reachable"] else None)
            report["in_sync"] = report["reachable"] and all(
                report["csns"].get(sid) == row["newest"] for sid, row in table.items())
        canary: dict[str, Any] = {"ran": False}
        if p["canary"] and not module.check_mode:
            clients = {r["name"]: r["client"] for r in reports if r["reachable"]}
            canary = run_canary(clients, p["canary_base"] or p["suffix"], p["canary_timeout"])
            for rnd in canary["rounds"]:
                if rnd.get("error"):
                    problems.append(f"canary written on {rnd['writer']} failed: {rnd['error']}")
                late = sorted(n for n, ms in rnd["propagation_ms"].items() if ms is None)
                if late:
                    problems.append(f"canary written on {rnd['writer']} did not reach {', '.join(late)} "
                                    f"within {p['canary_timeout']} s")
            if not canary["cleaned_up"]:
                problems.append(f"canary {canary['dn']} could not be removed from every master")
        audit: dict[str, Any] = {"ran": False}
        if p["audit"]:
            binary = ldapsearch if ldapsearch is not None else shutil.which("ldapsearch")
            audit = audit_masters(masters, connection_params(p), p["suffix"], p["audit_engine"],
                                  p["audit_page_size"], p["audit_max_differences"], binary)
            audit["ran"] = True
            for name, error in sorted(audit["errors"].items()):
                problems.append(f"audit could not read {name}: {error}")
            for name, count in sorted(audit["missing"].items()):
                if count:
                    problems.append(f"audit: {name} lacks {count} entries")
            if audit["different"]:
                problems.append(f"audit: {audit['different']} entries differ between masters")
    finally:
        for report in reports:
            client = report.pop("client", None)
            report.pop("csns", None)
            if client is not None:
                client.close()
    server_ids = {format_sid(sid): {"newest": row["newest"].raw, "lag": row["lag"]}
                  for sid, row in table.items()}
    return {"changed": False, "healthy": not problems, "problems": problems, "masters": reports,
            "server_ids": server_ids, "canary": canary, "audit": audit}


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
