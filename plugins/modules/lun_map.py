# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lun_map
short_description: Map or unmap the LUNs of many volumes to one host's initiator group at once
version_added: 0.2.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Makes every LUN of the given O(volumes) of one SVM mapped (O(state=present)) or not mapped
    (O(state=absent)) to one initiator group, the igroup of one host, in one task.
  - The LUNs of all the volumes are read in one listing (by the volume that holds them), and the
    igroup with its LUN maps in another; the volumes themselves are read only when some volume
    shows no LUN, to say whether it is missing or only has no LUN.
  - Every problem is found before any change, and the task then fails with one message naming
    each - a volume that does not exist in O(svm), a volume without a LUN, an igroup that does
    not exist, and, with O(read_only_ok=false), a LUN that is read-only. Nothing is changed.
  - A LUN is mapped with one C(POST /api/protocols/san/lun-maps) (ONTAP picks the lowest free
    logical unit number of the igroup) and unmapped with one C(DELETE) of that LUN's map to this
    igroup only; the maps of the same LUN to other igroups are left alone. The changes are sent
    one after the other, in the order of O(volumes), so the logical unit numbers ONTAP assigns
    follow that order.
  - Idempotent - a LUN already mapped to the igroup (whatever its logical unit number) is left
    as it is, and an unmapped one is not unmapped again.
  - A host sees a newly mapped LUN only after a rescan of its SCSI bus (iSCSI session rescan or
    FC host scan) and, with multipath, a reload of the maps; this module does not touch hosts.
extends_documentation_fragment:
  - mailops.zimbra_geo.ontap
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the LUNs and the igroup and returns the maps the task would make or remove; sends no change.
  diff_mode:
    support: full
    details: Every LUN of the volumes, mapped to the igroup or not (with its logical unit number), before and after.
  platform:
    platforms: posix
options:
  svm:
    description:
      - SVM (vserver) that holds the volumes, their LUNs and the igroup.
    type: str
    required: true
  igroup:
    description:
      - Name of the initiator group of the host, as it exists in O(svm).
    type: str
    required: true
  volumes:
    description:
      - Names of the volumes whose LUNs are concerned (at least one). Every LUN of each volume is
        mapped or unmapped, whatever its name.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(present) maps every LUN of the volumes to the igroup; V(absent) removes every map of
        those LUNs to the igroup.
    type: str
    choices: [present, absent]
    default: present
  read_only_ok:
    description:
      - With O(state=present), whether a read-only LUN may be mapped.
      - ONTAP maps a read-only LUN - a LUN of a SnapMirror destination volume is read-only until
        the relationship is broken - and the host then sees a read-only disk. That is how a
        standby host is given its LUNs ahead of a failover, so it is allowed by default.
      - Set to V(false) where the host must get writable LUNs (after the break of a failover);
        any read-only LUN among the volumes, mapped already or not, then fails the task before
        any change.
    type: bool
    default: true
notes:
  - ONTAP refuses to map a LUN to an igroup that shares an initiator with an igroup the LUN is
    already mapped to; the task then fails at that LUN, naming it, and says which maps it made
    before.
  - The igroup's maps are read from its C(lun_maps) field, which ONTAP does not fill for an
    igroup of a remote MetroCluster SVM; run the module against the cluster that owns the SVM.
seealso:
  - module: mailops.zimbra_geo.snapmirror
  - module: mailops.zimbra_geo.volume_clone
"""

EXAMPLES = r"""
- name: Give the standby mailbox server its DB and index LUNs (read-only until the break)
  mailops.zimbra_geo.lun_map:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    ca_path: /etc/pki/ontap-ca.pem
    svm: svm_dc2
    igroup: dc2-mbox1
    volumes: [mbox1_db, mbox1_index]
  register: luns

- name: Show the LUN ID and serial number the host will see for each LUN
  ansible.builtin.debug:
    msg: "{{ item.name }}: LUN ID {{ item.logical_unit_number }}, serial {{ item.serial_number }}"
  loop: "{{ luns.maps }}"
  loop_control:
    label: "{{ item.name }}"

- name: After the break, make sure the host gets writable LUNs
  mailops.zimbra_geo.lun_map:
    hostname: dc2-ontap.example.com
    password: "{{ ontap_password }}"
    svm: svm_dc2
    igroup: dc2-mbox1
    volumes: [mbox1_db, mbox1_index]
    read_only_ok: false

- name: Take the LUNs away from the old primary host (its other maps stay)
  mailops.zimbra_geo.lun_map:
    hostname: dc1-ontap.example.com
    password: "{{ ontap_password }}"
    svm: svm_dc1
    igroup: dc1-mbox1
    volumes: [mbox1_db, mbox1_index]
    state: absent
"""

RETURN = r"""
igroup:
  description: The initiator group.
  returned: always
  type: str
  sample: dc2-mbox1
svm:
  description: The SVM.
  returned: always
  type: str
  sample: svm_dc2
maps:
  description: One entry per LUN of the volumes, in the order of O(volumes), then by LUN name.
  returned: always
  type: list
  elements: dict
  contains:
    volume:
      description: The volume that holds the LUN.
      type: str
    name:
      description: Path of the LUN (C(/vol/<volume>/<lun>)).
      type: str
    uuid:
      description: UUID of the LUN.
      type: str
    serial_number:
      description: Serial number of the LUN, as the host sees it (a SnapMirror destination's LUN has its own).
      type: str
    read_only:
      description: Whether the LUN is read-only (as a LUN of a SnapMirror destination volume is until the break).
      type: bool
    mapped:
      description: Whether the LUN is mapped to the igroup after the task (predicted in check mode).
      type: bool
    logical_unit_number:
      description:
        - The LUN ID of the map to the igroup after the task; C(null) when not mapped, and in
          check mode for a map not made yet (ONTAP picks it when the map is made).
      type: int
    changed:
      description: Whether this LUN's map to the igroup was (or would be) made or removed.
      type: bool
  sample:
    - volume: mbox1_db
      name: /vol/mbox1_db/lun0
      uuid: 6f0b7e2c-8b1c-4b3e-9a57-0c1d2e3f4a5b
      serial_number: wf0Iq+N4uck3
      read_only: true
      mapped: true
      logical_unit_number: 0
      changed: true
mapped:
  description: Names of the LUNs mapped to the igroup by this task (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/vol/mbox1_db/lun0, /vol/mbox1_index/lun0]
unmapped:
  description: Names of the LUNs unmapped from the igroup by this task (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: []
"""

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


def argument_spec() -> dict:
    spec = ontap_argument_spec()
    spec.update(
        svm={"type": "str", "required": True},
        igroup={"type": "str", "required": True},
        volumes={"type": "list", "elements": "str", "required": True},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        read_only_ok={"type": "bool", "default": True},
    )
    return spec


class LunMapRunner:
    """Read the LUNs and the igroup, plan, refuse before any change, apply, report."""

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
        volumes = list(dict.fromkeys(p["volumes"]))
        if not volumes or not all(volumes):
            raise OntapError("volumes must name at least one volume, and no name may be empty")
        client = self.client_factory(p)
        try:
            plan, igroup = self.plan(client, volumes)
            if not self.check_mode:
                self.apply(client, plan, igroup)
        finally:
            client.close()
        result: dict[str, Any] = {
            "changed": any(e["changed"] for e in plan),
            "igroup": p["igroup"],
            "svm": p["svm"],
            "maps": [{k: v for k, v in e.items() if k not in ("before", "lun_before")} for e in plan],
            "mapped": [e["name"] for e in plan if e["changed"] and e["mapped"]],
            "unmapped": [e["name"] for e in plan if e["changed"] and not e["mapped"]],
        }
        if self.diff:
            result["diff"] = {
                "before": {e["name"]: {"mapped": e["before"], "logical_unit_number": e["lun_before"]} for e in plan},
                "after": {
                    e["name"]: {"mapped": e["mapped"], "logical_unit_number": e["logical_unit_number"]} for e in plan
                },
            }
        return result

    def plan(self, client: OntapClient, volumes: list[str]) -> tuple[list[dict], dict]:
        """Every LUN of the volumes with its map to the igroup before and after; every problem
        found is refused here, before any change."""
        p = self.p
        svm, name, present = p["svm"], p["igroup"], p["state"] == "present"
        luns = client.luns(svm, volumes)
        igroup = client.igroup(svm, name)
        problems = []
        by_volume: dict[str, list[dict]] = {v: [] for v in volumes}
        for lun in luns:
            if lun["volume"] in by_volume:
                by_volume[lun["volume"]].append(lun)
        bare = [v for v in volumes if not by_volume[v]]
        if bare:
            # Read the volumes only now: a missing volume and one without a LUN need different fixes.
            found = client.volumes(svm, bare)
            problems += [
                f"volume {v} has no LUN" if v in found else f"volume {v} does not exist in SVM {svm}" for v in bare
            ]
        if igroup is None:
            problems.append(f"initiator group {name} does not exist in SVM {svm}")
        maps = (igroup or {}).get("lun_maps") or {}
        plan = []
        for volume in volumes:
            for lun in sorted(by_volume[volume], key=lambda x: x["name"] or ""):
                if present and lun["read_only"] and not p["read_only_ok"]:
                    problems.append(f"LUN {lun['name']} of volume {volume} is read-only (read_only_ok=false)")
                before = lun["uuid"] in maps
                plan.append(
                    {
                        "volume": volume,
                        "name": lun["name"],
                        "uuid": lun["uuid"],
                        "serial_number": lun["serial_number"],
                        "read_only": lun["read_only"],
                        "mapped": present,
                        # A map that stays keeps its number; a new one gets ONTAP's (known after the POST).
                        "logical_unit_number": maps.get(lun["uuid"]) if before and present else None,
                        "changed": before != present,
                        "before": before,
                        "lun_before": maps.get(lun["uuid"]) if before else None,
                    }
                )
        if problems:
            raise OntapError(
                f"Nothing was changed on {client.where}, SVM {svm}, initiator group {name}: " + "; ".join(problems)
            )
        return plan, igroup or {}

    def apply(self, client: OntapClient, plan: list[dict], igroup: dict) -> None:
        """One change call per map, one after the other (ONTAP assigns LUN IDs in this order)."""
        p = self.p
        done: list[str] = []
        for entry in plan:
            if not entry["changed"]:
                continue
            try:
                if entry["mapped"]:
                    entry["logical_unit_number"] = client.map_lun(p["svm"], entry["name"], p["igroup"])
                else:
                    client.unmap_lun(p["svm"], entry["uuid"], entry["name"], igroup["uuid"], p["igroup"])
            except OntapError as exc:
                changed = f"; changed before it: {', '.join(done)}" if done else "; nothing was changed before it"
                raise OntapError(exc.message + changed, exc.code, exc.status) from None
            done.append(entry["name"])


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    if not HAS_NETAPP_ONTAP:
        module.fail_json(msg=missing_required_lib("netapp-ontap"), exception=NETAPP_ONTAP_IMPORT_ERROR)
    try:
        result = LunMapRunner(module.params, module.check_mode, module._diff).run()
    except OntapError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
