# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapmirror
short_description: Drive many SnapMirror relationships to one state at once
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Takes every selected SnapMirror relationship of one destination cluster to the target
    O(state), all of them concurrently, and waits until the state is seen on each
    relationship (not merely until the ONTAP job ends). Waits poll the real state with a
    growing interval (50 ms up to 1 s) and are bounded by O(wait_timeout).
  - Every selected relationship is read and planned before anything changes; if any of them
    cannot reach the target (unknown relationship, wrong cluster, a state it cannot leave
    without O(force)), the task fails and nothing is changed.
  - To reach C(broken_off) a C(snapmirrored) relationship is quiesced first and broken once
    it is seen C(paused). A break never needs the source cluster, so it works in a disaster.
  - C(updated) starts a transfer and waits for it to succeed, so the destination holds the
    source data as of a snapshot taken during this task. A transfer already running is waited
    on first, then a new one is started (the running one may predate the caller's last write).
    Idempotence rule for C(updated) a re-run is reported C(changed) only when its transfer
    moved data; with O(update_max_lag) greater than 0, relationships whose lag is at most that
    many seconds are not transferred at all (the re-run of an interrupted failover then makes no
    call). Real ONTAP moves a few KB even for an idle volume, so set O(update_max_lag) where a
    strict no-change re-run matters.
  - C(reversed) is the reverse resync of failback. Select the relationships by their current
    destination (connect to that cluster); ONTAP swaps source and destination, the relationship
    then lives on the other cluster and the original destination's newer data becomes the
    source. A re-run finds the reversed relationship on the source side and changes nothing.
  - Check mode reads and plans only; it makes no change call. Diff mode shows the state of
    every relationship before and after.
extends_documentation_fragment:
  - mailops.zimbra_geo.ontap
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  state:
    description:
      - The target of every selected relationship.
      - C(paused) quiesces (CLI C(snapmirror quiesce)); C(broken_off) quiesces if needed, then
        breaks (the destination volume becomes writable); C(snapmirrored) initializes,
        resumes or resyncs (a resync discards destination data newer than the common snapshot);
        C(updated) transfers now; C(reversed) reverse-resyncs.
    type: str
    required: true
    choices: [paused, broken_off, snapmirrored, updated, reversed]
  relationships:
    description:
      - Destination paths (C(svm:volume)) of the relationships to drive.
      - For O(state=reversed), the destination before the reversal (a re-run still names it).
      - Mutually exclusive with O(svm).
    type: list
    elements: str
  svm:
    description:
      - Select every relationship whose destination is in this SVM and whose destination
        volume matches O(volume_pattern).
    type: str
  volume_pattern:
    description:
      - Shell-style pattern on the destination volume name, with O(svm).
    type: str
    default: '*'
  transfer_running:
    description:
      - What to do when a relationship to pause or break has a transfer running.
      - C(wait) lets it finish, C(abort) aborts it (its data is not applied), C(fail) refuses
        before any change.
    type: str
    choices: [wait, abort, fail]
    default: wait
  force:
    description:
      - Go ahead with relationships that are unhealthy, reverse a relationship that is still
        C(snapmirrored), and break with ONTAP's C(force) flag.
    type: bool
    default: false
  update_max_lag:
    description:
      - With O(state=updated), skip relationships whose lag is at most this many seconds.
        C(0) transfers every relationship.
    type: int
    default: 0
  wait_timeout:
    description:
      - Seconds to wait, in all, for every relationship to reach the target.
    type: float
    default: 600.0
  max_workers:
    description:
      - How many change calls are sent to the cluster at the same time.
    type: int
    default: 16
notes:
  - Connect to the destination cluster; the source cluster is only needed by ONTAP itself for
    transfers.
seealso:
  - module: mailops.zimbra_geo.snapmirror_info
"""

EXAMPLES = r"""
- name: Planned failover, step 1 - final update of every volume of the mailbox servers
  mailops.zimbra_geo.snapmirror:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    ca_path: /etc/pki/ontap-ca.pem
    svm: svm_dc2
    volume_pattern: "mbox*"
    state: updated

- name: Planned failover, step 2 - quiesce and break them all at once
  mailops.zimbra_geo.snapmirror:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    relationships:
      - svm_dc2:mbox1_db
      - svm_dc2:mbox1_index
    state: broken_off
    transfer_running: abort
  register: broken

- name: Show the data-loss window of each volume
  ansible.builtin.debug:
    msg: "{{ broken.relationships | map(attribute='lag_at_break_seconds') | list }}"

- name: Failback, step 1 - reverse resync (run on the cluster that is the destination today)
  mailops.zimbra_geo.snapmirror:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    svm: svm_dc2
    state: reversed
"""

RETURN = r"""
cluster:
  description: Name of the cluster the relationships were read from.
  returned: always
  type: str
  sample: dc2-ontap
duration_seconds:
  description: Wall time of the whole task, reads and waits included.
  returned: always
  type: float
  sample: 1.42
relationships:
  description: One entry per selected relationship, in the order selected.
  returned: always
  type: list
  elements: dict
  contains:
    destination:
      description: Destination path before the task.
      type: str
      sample: svm_dc2:mbox1_db
    source:
      description: Source path before the task.
      type: str
      sample: svm_dc1:mbox1_db
    uuid:
      description: Relationship UUID.
      type: str
    actions:
      description:
        - Steps taken (or, in check mode, that would be taken), in order, among C(abort),
          C(quiesce), C(break), C(resume), C(initialize), C(resync), C(update), C(reverse).
      type: list
      elements: str
      sample: [quiesce, break]
    changed:
      description: Whether this relationship was changed.
      type: bool
    state_before:
      description: State when the task started.
      type: str
    state_after:
      description: State at the end (in check mode, the predicted state).
      type: str
    healthy:
      description: ONTAP's health flag at the end.
      type: bool
    lag_seconds_before:
      description: Lag when the task started, in seconds.
      type: int
    lag_at_break_seconds:
      description:
        - Lag just before the break was sent, in seconds - the data-loss window when the source
          was not updated first. C(null) when no break was sent.
      type: int
    duration_seconds:
      description: Time from the start of the task until this relationship reached the target.
      type: float
    bytes_transferred:
      description: Bytes moved by the update transfers of this task.
      type: int
      returned: when O(state=updated)
    reversed_source:
      description: Source path after the reversal.
      type: str
      returned: when O(state=reversed) and the reversal is done
    reversed_destination:
      description: Destination path after the reversal.
      type: str
      returned: when O(state=reversed) and the reversal is done
    error:
      description: Why this relationship did not reach the target.
      type: str
      returned: on failure
failed_relationships:
  description: Destination paths of the relationships that did not reach the target.
  returned: on failure after changes were started
  type: list
  elements: str
"""

import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import (
    HAS_NETAPP_ONTAP,
    NETAPP_ONTAP_IMPORT_ERROR,
    TARGETS,
    OntapClient,
    OntapError,
    SnapmirrorDriver,
    ontap_argument_spec,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings


def argument_spec() -> dict:
    spec = ontap_argument_spec()
    spec.update(
        state={"type": "str", "required": True, "choices": list(TARGETS)},
        relationships={"type": "list", "elements": "str"},
        svm={"type": "str"},
        volume_pattern={"type": "str", "default": "*"},
        transfer_running={"type": "str", "choices": ["wait", "abort", "fail"], "default": "wait"},
        force={"type": "bool", "default": False},
        update_max_lag={"type": "int", "default": 0},
        wait_timeout={"type": "float", "default": 600.0},
        max_workers={"type": "int", "default": 16},
    )
    return spec


class SnapmirrorRunner:
    """Read, plan, apply unless in check mode, report."""

    def __init__(
        self,
        params: dict,
        check_mode: bool,
        diff: bool,
        client_factory: Callable[[dict], OntapClient] = OntapClient.from_params,
    ) -> None:
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.client_factory = client_factory

    def run(self) -> dict[str, Any]:
        p = self.params
        if p["wait_timeout"] <= 0 or p["max_workers"] < 1 or p["update_max_lag"] < 0:
            raise OntapError("wait_timeout must be positive, max_workers at least 1, update_max_lag not negative")
        client = self.client_factory(p)
        try:
            driver = SnapmirrorDriver(
                client,
                p["state"],
                transfer_running=p["transfer_running"],
                force=p["force"],
                update_max_lag=p["update_max_lag"],
                timeout=p["wait_timeout"],
            )
            start = time.monotonic()
            cluster = client.cluster().get("name", p["hostname"])
            works = driver.select(p["relationships"], p["svm"], p["volume_pattern"])
            if not self.check_mode:
                driver.run(works)
            results = [driver.result(w, self.check_mode) for w in works]
            duration = round(time.monotonic() - start, 3)
        finally:
            client.close()
        result: dict[str, Any] = {
            "changed": any(r["changed"] for r in results),
            "cluster": cluster,
            "relationships": results,
            "duration_seconds": duration,
        }
        if self.diff:
            result["diff"] = {
                "before": {r["destination"]: r["state_before"] for r in results},
                "after": {r["destination"]: r["state_after"] for r in results},
            }
        failed = [r for r in results if r.get("error")]
        if failed:
            result["failed_relationships"] = [r["destination"] for r in failed]
            result["msg"] = f"{len(failed)} of {len(results)} relationships did not reach {p['state']}: " + "; ".join(
                f"{r['destination']}: {r['error']}" for r in failed
            )
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("relationships", "svm")],
        required_one_of=[("relationships", "svm")],
    )
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    if not HAS_NETAPP_ONTAP:
        module.fail_json(msg=missing_required_lib("netapp-ontap"), exception=NETAPP_ONTAP_IMPORT_ERROR)
    try:
        result = SnapmirrorRunner(module.params, module.check_mode, module._diff).run()
    except OntapError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    if "failed_relationships" in result:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
