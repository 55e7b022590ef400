# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapmirror_info
short_description: State, health and lag of every SnapMirror relationship of a cluster
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Reads, in one call, every SnapMirror relationship whose destination is on the cluster
    (optionally only those of one SVM, or named ones) and returns state, health, unhealthy
    reasons, lag in seconds and transfer state of each, plus a summary.
  - With O(max_lag), relationships whose lag exceeds it (or whose lag is unknown, as for an
    uninitialized relationship) are listed in RV(lagging); with O(fail_on_lag) the task then
    fails, which makes an RPO check a single task. O(require_healthy) does the same for
    unhealthy relationships.
extends_documentation_fragment:
  - mailops.zimbra_geo.ontap
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
  svm:
    description:
      - Only relationships whose destination is in this SVM.
    type: str
  relationships:
    description:
      - Only these destination paths (C(svm:volume)); a path that has no relationship fails the task.
    type: list
    elements: str
  max_lag:
    description:
      - RPO in seconds. Relationships lagging more are listed in RV(lagging).
    type: int
  fail_on_lag:
    description:
      - Fail when RV(lagging) is not empty.
    type: bool
    default: true
  require_healthy:
    description:
      - Fail when a selected relationship is not healthy.
    type: bool
    default: false
  source_side:
    description:
      - List the relationships whose B(source) is on this cluster instead (ONTAP's
        C(list_destinations_only)); after a reverse resync this is where the original
        destination sees them.
    type: bool
    default: false
seealso:
  - module: mailops.zimbra_geo.snapmirror
"""

EXAMPLES = r"""
- name: Fail if any mailbox volume lags more than 15 minutes behind
  mailops.zimbra_geo.snapmirror_info:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    svm: svm_dc2
    max_lag: 900
    require_healthy: true
  register: mirrors

- name: Report the worst lag
  ansible.builtin.debug:
    msg: "worst lag {{ mirrors.summary.max_lag_seconds }} s over {{ mirrors.summary.total }} relationships"
"""

RETURN = r"""
cluster:
  description: Name of the cluster read.
  returned: always
  type: str
  sample: dc2-ontap
relationships:
  description: Every selected relationship.
  returned: always
  type: list
  elements: dict
  contains:
    uuid:
      description: Relationship UUID.
      type: str
    source:
      description: Source path C(svm:volume).
      type: str
    destination:
      description: Destination path C(svm:volume).
      type: str
    state:
      description: C(snapmirrored), C(paused), C(broken_off), C(uninitialized), ...
      type: str
    healthy:
      description: ONTAP's health flag.
      type: bool
    unhealthy_reasons:
      description: Messages of ONTAP's C(unhealthy_reason) list.
      type: list
      elements: str
    lag_time:
      description: Lag as ONTAP writes it (ISO-8601 duration).
      type: str
      sample: PT0H5M12S
    lag_seconds:
      description: Lag in seconds; C(null) when ONTAP reports none.
      type: int
    exported_snapshot:
      description: Snapshot the destination was last updated from.
      type: str
    transfer_state:
      description: State of the current or last transfer (C(transferring), C(success), C(failed), ...).
      type: str
    transfer_uuid:
      description: UUID of the current or last transfer.
      type: str
    transfer_bytes:
      description: Bytes moved by the current or last transfer.
      type: int
    last_transfer_type:
      description: C(initialize), C(update), C(resync), ...
      type: str
    policy:
      description: SnapMirror policy name.
      type: str
summary:
  description: Counts and the worst lag.
  returned: always
  type: dict
  contains:
    total:
      description: Number of relationships selected.
      type: int
    healthy:
      description: How many are healthy.
      type: int
    unhealthy:
      description: How many are not.
      type: int
    transferring:
      description: How many have a transfer queued or running.
      type: int
    by_state:
      description: Count per state.
      type: dict
    max_lag_seconds:
      description: The largest known lag, C(null) if none is known.
      type: int
lagging:
  description: Destination paths over O(max_lag) (empty without O(max_lag)).
  returned: always
  type: list
  elements: str
unhealthy:
  description: Destination paths of relationships that are not healthy.
  returned: always
  type: list
  elements: str
"""

from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import (
    HAS_NETAPP_ONTAP,
    NETAPP_ONTAP_IMPORT_ERROR,
    RUNNING,
    OntapClient,
    OntapError,
    ontap_argument_spec,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings


def argument_spec() -> dict:
    spec = ontap_argument_spec()
    spec.update(
        svm={"type": "str"},
        relationships={"type": "list", "elements": "str"},
        max_lag={"type": "int"},
        fail_on_lag={"type": "bool", "default": True},
        require_healthy={"type": "bool", "default": False},
        source_side={"type": "bool", "default": False},
    )
    return spec


def gather(params: dict, client: OntapClient) -> dict[str, Any]:
    cluster = client.cluster().get("name", params["hostname"])
    rels = client.relationships(source_side=params["source_side"])
    key = "source" if params["source_side"] else "destination"
    if params["svm"]:
        rels = [r for r in rels if (r[key] or "").split(":", 1)[0] == params["svm"]]
    if params["relationships"]:
        by_path = {r[key]: r for r in rels}
        missing = [p for p in params["relationships"] if p not in by_path]
        if missing:
            raise OntapError(f"no SnapMirror relationship with {key} {', '.join(missing)} on cluster {cluster}")
        rels = [by_path[p] for p in dict.fromkeys(params["relationships"])]
    lags = [r["lag_seconds"] for r in rels if r["lag_seconds"] is not None]
    by_state: dict[str, int] = {}
    for r in rels:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    max_lag = params["max_lag"]
    lagging = (
        [] if max_lag is None else [r[key] for r in rels if r["lag_seconds"] is None or r["lag_seconds"] > max_lag]
    )
    unhealthy = [r[key] for r in rels if r["healthy"] is False]
    return {
        "changed": False,
        "cluster": cluster,
        "relationships": rels,
        "summary": {
            "total": len(rels),
            "healthy": sum(1 for r in rels if r["healthy"]),
            "unhealthy": len(unhealthy),
            "transferring": sum(1 for r in rels if r["transfer_state"] in RUNNING),
            "by_state": by_state,
            "max_lag_seconds": max(lags) if lags else None,
        },
        "lagging": lagging,
        "unhealthy": unhealthy,
    }


def verdict(params: dict, result: dict) -> str | None:
    """The failure message, if the caller's thresholds are not met."""
    problems = []
    if params["fail_on_lag"] and result["lagging"]:
        problems.append(
            f"{len(result['lagging'])} relationships lag more than {params['max_lag']} s: "
            + ", ".join(result["lagging"])
        )
    if params["require_healthy"] and result["unhealthy"]:
        problems.append(
            f"{len(result['unhealthy'])} relationships are unhealthy: "
            + ", ".join(
                f"{r['destination']} ({'; '.join(r['unhealthy_reasons']) or 'no reason given'})"
                for r in result["relationships"]
                if r["healthy"] is False
            )
        )
    return "; ".join(problems) or None


def run(params: dict,
        client_factory: Callable[[dict], OntapClient] = OntapClient.from_params) -> tuple[dict, str | None]:
    client = client_factory(params)
    try:
        result = gather(params, client)
    finally:
        client.close()
    return result, verdict(params, result)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    if not HAS_NETAPP_ONTAP:
        module.fail_json(msg=missing_required_lib("netapp-ontap"), exception=NETAPP_ONTAP_IMPORT_ERROR)
    try:
        result, problem = run(module.params)
    except OntapError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    if problem:
        module.fail_json(msg=problem, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
