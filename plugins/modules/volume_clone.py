# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_clone
short_description: FlexClones of SnapMirror destination volumes, many at once (DR tests)
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Creates (O(state=present)) or destroys (O(state=absent)) read-write FlexClone volumes of
    the volumes of one SVM, all at once; the non-disruptive way to test a failover on the
    standby site, as the SnapMirror relationships of the parents keep running.
  - A clone is made from the B(newest SnapMirror snapshot) of its parent (the newest snapshot
    whose name starts with O(snapshot_prefix)), unless O(snapshot) names one. The module
    reports the snapshot and its creation time, the point in time the clone shows.
  - Idempotent. An existing clone of the same parent is left as it is (and its snapshot is
    reported); a volume of the clone's name that is not a FlexClone of that parent fails the
    task before any change. O(state=absent) deletes only FlexClones of the given parents, never
    any other volume, and is a no-op for clones that are gone.
  - Every refusal comes before any change. The clones are created or deleted concurrently,
    then each job and each volume is polled until done or O(wait_timeout).
extends_documentation_fragment:
  - mailops.zimbra_geo.ontap
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the volumes and snapshots and predicts the snapshot each clone would start from.
  diff_mode:
    support: full
    details: The clones present before and after, with the snapshot each was made from.
  platform:
    platforms: posix
options:
  svm:
    description:
      - SVM of the parent volumes; the clones are created in it.
    type: str
    required: true
  volumes:
    description:
      - Names of the parent volumes (typically SnapMirror destinations, type C(dp)).
    type: list
    elements: str
    required: true
  clone_suffix:
    description:
      - The clone of volume C(V) is named C(V) followed by this suffix.
    type: str
    default: _drtest
  state:
    description:
      - V(present) creates the missing clones; V(absent) deletes the clones that exist.
    type: str
    choices: [present, absent]
    default: present
  snapshot:
    description:
      - Clone every parent as of this snapshot instead of its newest SnapMirror snapshot.
    type: str
  snapshot_prefix:
    description:
      - The snapshots SnapMirror transfers to a destination start with this (ONTAP names them
        C(snapmirror.<uuid>_<id>.<time>)).
    type: str
    default: snapmirror.
  wait_timeout:
    description:
      - Seconds to wait for all clones to be created or deleted.
    type: float
    default: 300.0
  max_workers:
    description:
      - How many API calls run at the same time.
    type: int
    default: 16
notes:
  - The clones show the data of the snapshot, not of the live destination; to test with the
    newest data, run a SnapMirror update (M(mailops.zimbra_geo.snapmirror) with
    C(state=updated)) first.
  - Deletion goes through ONTAP's recovery queue as C(DELETE /api/storage/volumes/{uuid}) does
    by default; ONTAP takes the clone offline first. Unmount it from every host before.
seealso:
  - module: mailops.zimbra_geo.snapmirror
  - module: mailops.zimbra_geo.snapmirror_info
"""

EXAMPLES = r"""
- name: Clone the standby's DB and index volumes as of their newest SnapMirror snapshot
  mailops.zimbra_geo.volume_clone:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    svm: svm_dc2
    volumes: [mbox1_db, mbox1_index]
  register: clones

- name: Say which point in time the test shows
  ansible.builtin.debug:
    msg: "{{ clones.clones | map(attribute='snapshot_time') | list }}"

- name: Destroy the clones after the test
  mailops.zimbra_geo.volume_clone:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    svm: svm_dc2
    volumes: [mbox1_db, mbox1_index]
    state: absent
"""

RETURN = r"""
cluster:
  description: Name of the cluster.
  returned: always
  type: str
clones:
  description: One entry per parent volume, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the clone.
      type: str
    parent:
      description: Name of the parent volume.
      type: str
    svm:
      description: SVM of both.
      type: str
    uuid:
      description: UUID of the clone (none when absent, or only predicted).
      type: str
    snapshot:
      description: The parent's snapshot the clone was (or would be) made from.
      type: str
    snapshot_time:
      description: Creation time of that snapshot, as ONTAP gives it (ISO 8601).
      type: str
    present:
      description: Whether the clone exists after the task (predicted in check mode).
      type: bool
    changed:
      description: Whether this clone was (or would be) created or deleted.
      type: bool
  sample:
    - name: mbox1_db_drtest
      parent: mbox1_db
      svm: svm_dc2
      uuid: 5c3e8c3b-4a6e-4ad5-8e39-1b5b2e0b6c11
      snapshot: snapmirror.0b9b3f5e-1c8d-11ef-9d6e-005056bb1d2c_2148504322.2026-11-30_041500
      snapshot_time: "2026-11-30T04:15:00+00:00"
      present: true
      changed: true
leftovers:
  description: With O(state=absent), the clones that still exist after the task (the task then fails).
  returned: always
  type: list
  elements: str
duration_seconds:
  description: Wall time of the task.
  returned: always
  type: float
"""

import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import (
    HAS_NETAPP_ONTAP,
    NETAPP_ONTAP_IMPORT_ERROR,
    OntapClient,
    OntapError,
    ontap_argument_spec,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings

POLL_INTERVAL = 0.5


def argument_spec() -> dict:
    spec = ontap_argument_spec()
    spec.update(
        svm={"type": "str", "required": True},
        volumes={"type": "list", "elements": "str", "required": True},
        clone_suffix={"type": "str", "default": "_drtest"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        snapshot={"type": "str"},
        snapshot_prefix={"type": "str", "default": "snapmirror."},
        wait_timeout={"type": "float", "default": 300.0},
        max_workers={"type": "int", "default": 16},
    )
    return spec


def newest(snapshots: list[dict], prefix: str) -> dict | None:
    """The newest snapshot whose name starts with ``prefix`` (ISO times sort as text)."""
    mirrored = [s for s in snapshots if s.get("name", "").startswith(prefix)]
    return max(mirrored, key=lambda s: (s.get("create_time") or "", s.get("name"))) if mirrored else None


class CloneRunner:
    """Read every parent and clone, plan, refuse before any change, apply, wait, report."""

    def __init__(
        self,
        params: dict,
        check_mode: bool,
        diff: bool,
        client_factory: Callable[[dict], OntapClient] = OntapClient.from_params,
    ) -> None:
        self.p = params
        self.check_mode = check_mode
        self.diff = diff
        self.client_factory = client_factory

    def run(self) -> dict[str, Any]:
        p = self.p
        if p["wait_timeout"] <= 0 or p["max_workers"] < 1:
            raise OntapError("wait_timeout must be positive and max_workers at least 1")
        parents = list(dict.fromkeys(p["volumes"]))
        if not parents or not p["clone_suffix"]:
            raise OntapError("volumes must name at least one volume and clone_suffix must not be empty")
        start = time.monotonic()
        client = self.client_factory(p)
        try:
            cluster = client.cluster().get("name", p["hostname"])
            plan = self.plan(client, parents)
            before = {e["name"]: e["snapshot"] for e in plan if e["exists"]}
            if not self.check_mode:
                self.apply(client, plan)
        finally:
            client.close()
        clones = [
            {k: e[k] for k in ("name", "parent", "svm", "uuid", "snapshot", "snapshot_time", "present", "changed")}
            for e in plan
        ]
        result: dict[str, Any] = {
            "changed": any(e["changed"] for e in plan),
            "cluster": cluster,
            "clones": clones,
            "leftovers": [e["name"] for e in plan if p["state"] == "absent" and e["present"]],
            "duration_seconds": round(time.monotonic() - start, 3),
        }
        if self.diff:
            result["diff"] = {
                "before": before,
                "after": {e["name"]: e["snapshot"] for e in plan if e["present"]},
            }
        return result

    def plan(self, client: OntapClient, parents: list[str]) -> list[dict]:
        p = self.p
        svm = p["svm"]
        names = {parent: parent + p["clone_suffix"] for parent in parents}
        found = client.volumes(svm, parents + list(names.values()))
        plan, problems = [], []
        for parent in parents:
            name = names[parent]
            clone = found.get(name)
            entry = {
                "name": name,
                "parent": parent,
                "svm": svm,
                "uuid": None,
                "snapshot": None,
                "snapshot_time": None,
                "exists": clone is not None,
            }
            if clone is not None:
                info = clone.get("clone") or {}
                if not info.get("is_flexclone") or (info.get("parent_volume") or {}).get("name") != parent:
                    problems.append(f"{svm}:{name} exists and is not a FlexClone of {parent}")
                entry["uuid"] = clone.get("uuid")
                entry["snapshot"] = (info.get("parent_snapshot") or {}).get("name")
            elif p["state"] == "present":
                if parent not in found:
                    problems.append(f"{svm}:{parent} does not exist")
            plan.append(entry)
        if problems:
            raise OntapError("Nothing was changed: " + "; ".join(problems))
        for entry in plan:
            entry["changed"] = entry["exists"] != (p["state"] == "present")
            entry["present"] = p["state"] == "present"
        # The snapshot each clone starts from (or started from), with its time.
        wanted = [e for e in plan if e["present"] and e["parent"] in found]
        for entry, snaps, error in client.map(lambda e: client.snapshots(found[e["parent"]]["uuid"]), wanted):
            if error is not None:
                raise error
            if entry["exists"]:
                snap = next((s for s in snaps if s.get("name") == entry["snapshot"]), None)
            elif p["snapshot"]:
                snap = next((s for s in snaps if s.get("name") == p["snapshot"]), None)
                if snap is None:
                    problems.append(f"{svm}:{entry['parent']} has no snapshot {p['snapshot']}")
            else:
                snap = newest(snaps, p["snapshot_prefix"])
                if snap is None:
                    problems.append(
                        f"{svm}:{entry['parent']} has no snapshot named {p['snapshot_prefix']}* (is it a "
                        "SnapMirror destination that has received a transfer?)"
                    )
            if snap is not None:
                entry["snapshot"] = snap.get("name")
                entry["snapshot_time"] = snap.get("create_time")
        if problems:
            raise OntapError("Nothing was changed: " + "; ".join(problems))
        return plan

    def apply(self, client: OntapClient, plan: list[dict]) -> None:
        todo = [e for e in plan if e["changed"]]
        if not todo:
            return
        svm = self.p["svm"]
        if self.p["state"] == "present":
            started = client.map(lambda e: client.create_clone(svm, e["name"], e["parent"], e["snapshot"]), todo)
        else:
            started = client.map(lambda e: client.delete_volume(e["uuid"], f"{svm}:{e['name']}"), todo)
        errors = [f"{e['name']}: {err}" for e, _job, err in started if err is not None]
        jobs = {job: e for e, job, err in started if err is None and job}
        deadline = time.monotonic() + self.p["wait_timeout"]
        names = [e["name"] for e in todo]
        while True:
            states = client.jobs(list(jobs))
            for job, entry in list(jobs.items()):
                state = states.get(job, {}).get("state")
                if state == "failure":
                    errors.append(f"{entry['name']}: {states[job].get('message') or 'job failed'}")
                    jobs.pop(job)
                elif state == "success" or (state is None and job not in states):
                    jobs.pop(job)  # done, or finished and purged: the volume listing tells
            found = client.volumes(svm, names)
            for entry in todo:
                entry["present"] = entry["name"] in found
                if entry["present"]:
                    entry["uuid"] = found[entry["name"]].get("uuid")
            settled = all(e["present"] == (self.p["state"] == "present") for e in todo)
            if (settled and not jobs) or errors or time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        late = [e["name"] for e in todo if e["present"] != (self.p["state"] == "present")]
        if late and not errors:
            errors.append(
                f"not {'created' if self.p['state'] == 'present' else 'deleted'} within "
                f"{self.p['wait_timeout']} s: {', '.join(late)}"
            )
        if errors:
            raise OntapError("; ".join(errors))


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    if not HAS_NETAPP_ONTAP:
        module.fail_json(msg=missing_required_lib("netapp-ontap"), exception=NETAPP_ONTAP_IMPORT_ERROR)
    try:
        result = CloneRunner(module.params, module.check_mode, module._diff).run()
    except OntapError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
