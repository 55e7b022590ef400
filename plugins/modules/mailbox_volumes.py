# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: mailbox_volumes
short_description: Mount or unmount all the mailbox volumes of a Zimbra mailbox server in one run
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Mounts (O(state=mounted)) or unmounts (O(state=unmounted)) every volume of one mailbox
    server (its Zimbra DB and index LUNs) in a single run, so a failover spends one round trip
    per server, not one per volume plus one to read the mount table.
  - Mounts are never written to C(/etc/fstab) (the same as M(ansible.posix.mount) with
    C(state=ephemeral)). The active site is the one whose volumes are mounted, and a reboot of a
    standby server must not mount a SnapMirror destination.
  - Reads the mount table first (C(findmnt)). A volume already mounted from its own source is
    left alone, so a second run changes nothing (M(ansible.posix.mount) would remount it). A
    mount point that holds another source fails the task B(before any mount) on this server and
    names what it holds.
  - O(state=unmounted) unmounts each mount point that holds anything; one that is not mounted
    is no change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the mount table and predicts what would be mounted or unmounted.
  diff_mode:
    support: full
    details: The volumes' mount points and what each holds, before and after.
  platform:
    platforms: posix
options:
  volumes:
    description:
      - The server's volumes, as in the inventory's C(zimbra_geo_mailbox_volumes).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Mount point.
        type: path
        required: true
      src:
        description: Device (or, for a bind mount, directory) to mount. Needed for O(state=mounted).
        type: str
      fstype:
        description: Filesystem type, C(none) for a bind mount. Needed for O(state=mounted).
        type: str
      opts:
        description: Mount options (C(mount -o)).
        type: str
      name:
        description:
          - The volume's name in the inventory (C(db), C(index)). Not used, so an inventory
            entry can be passed as it is.
        type: str
      volume:
        description: The ONTAP volume behind it. Not used either.
        type: str
  state:
    description:
      - V(mounted) mounts every volume that is not mounted; V(unmounted) unmounts every one that is.
    type: str
    choices: [mounted, unmounted]
    default: mounted
notes:
  - Run it as root on the mailbox server (delegated to it in the failover).
seealso:
  - module: ansible.posix.mount
"""

EXAMPLES = r"""
- name: Mount the mailbox volumes of each new mailbox server
  mailops.zimbra_geo.mailbox_volumes:
    volumes: "{{ hostvars[item].zimbra_geo_mailbox_volumes }}"
    state: mounted
  delegate_to: "{{ item }}"
  loop: "{{ groups['dc2'] | intersect(groups['mailbox']) }}"

- name: Unmount them on the old site
  mailops.zimbra_geo.mailbox_volumes:
    volumes: "{{ hostvars[item].zimbra_geo_mailbox_volumes }}"
    state: unmounted
  delegate_to: "{{ item }}"
  loop: "{{ groups['dc1'] | intersect(groups['mailbox']) }}"
"""

RETURN = r"""
mounted:
  description: Mount points this run mounted (would mount, in check mode).
  returned: always
  type: list
  elements: str
unmounted:
  description: Mount points this run unmounted (would unmount, in check mode).
  returned: always
  type: list
  elements: str
mounts:
  description: What each of the volumes' mount points holds after the run (before it, in check mode); null when nothing.
  returned: always
  type: dict
  sample: {"/opt/zimbra/db": "/dev/mapper/mbox1_db", "/opt/zimbra/index": null}
"""

import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def argument_spec() -> dict[str, Any]:
    return {
        "volumes": {"type": "list", "elements": "dict", "required": True, "options": {
            "path": {"type": "path", "required": True},
            "src": {"type": "str"},
            "fstype": {"type": "str"},
            "opts": {"type": "str"},
            "name": {"type": "str"},
            "volume": {"type": "str"},
        }},
        "state": {"type": "str", "default": "mounted", "choices": ["mounted", "unmounted"]},
    }


def parse_findmnt(text: str) -> dict[str, str]:
    """`findmnt --raw --noheadings --output TARGET,SOURCE`: mount point -> source (the last
    mount on a point wins, as it is the one visible)."""
    table: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(" ", 1)
        if fields and fields[0]:
            table[_unescape(fields[0])] = _unescape(fields[1]) if len(fields) > 1 else ""
    return table


def _unescape(value: str) -> str:
    """findmnt --raw writes spaces and other unsafe bytes as \\xNN."""
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value.encode("utf-8"))
    return raw.decode("utf-8", "replace")


def same_source(held: str, src: str) -> bool:
    """A mount point holds `src` itself, or (bind mount) the filesystem's `[src]` subtree."""
    return held == src or held.endswith(f"[{src}]")


class MailboxVolumes:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.volumes = module.params["volumes"]
        self.state = module.params["state"]

    def read_table(self) -> dict[str, str]:
        rc, out, err = self.module.run_command(["findmnt", "--raw", "--noheadings", "--output", "TARGET,SOURCE"])
        # findmnt exits 1 when it lists nothing at all.
        if rc not in (0, 1):
            self.module.fail_json(msg=f"findmnt failed (exit {rc}): {err.strip() or out.strip()}")
        return parse_findmnt(out)

    def run(self) -> dict[str, Any]:
        if self.state == "mounted":
            missing = [v["path"] for v in self.volumes if not v.get("src") or not v.get("fstype")]
            if missing:
                self.module.fail_json(msg="state=mounted needs src and fstype for every volume; "
                                          f"missing for {', '.join(missing)}")
        table = self.read_table()
        before = {v["path"]: table.get(v["path"]) for v in self.volumes}
        to_mount: list[dict[str, Any]] = []
        to_unmount: list[str] = []
        if self.state == "mounted":
            wrong = [f"{v['path']} holds {before[v['path']]}, not {v['src']}" for v in self.volumes
                     if before[v["path"]] is not None and not same_source(before[v["path"]], v["src"])]
            if wrong:
                self.module.fail_json(msg=f"Mount points in the way: {'; '.join(wrong)}. Nothing was mounted here.",
                                      mounts=before, mounted=[], unmounted=[])
            to_mount = [v for v in self.volumes if before[v["path"]] is None]
        else:
            to_unmount = [v["path"] for v in self.volumes if before[v["path"]] is not None]

        after = dict(before)
        after.update({v["path"]: v["src"] for v in to_mount})
        after.update({p: None for p in to_unmount})
        if not self.module.check_mode:
            done: list[str] = []
            for volume in to_mount:
                self.mount(volume, done)
                done.append(volume["path"])
            for path in to_unmount:
                self.unmount(path, done)
                done.append(path)

        result: dict[str, Any] = {
            "changed": bool(to_mount or to_unmount),
            "mounted": [v["path"] for v in to_mount],
            "unmounted": to_unmount,
            "mounts": after,
        }
        if self.module._diff:
            result["diff"] = {"before": _describe(before), "after": _describe(after)}
        return result

    def mount(self, volume: dict[str, Any], done: list[str]) -> None:
        """Mount one volume; a failure names the ones this run mounted before it."""
        path = volume["path"]
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            self.module.fail_json(msg=f"Cannot create the mount point {path}: {exc}", mounted=done)
        argv = ["mount", "-t", volume["fstype"]]
        if volume.get("opts"):
            argv += ["-o", volume["opts"]]
        rc, out, err = self.module.run_command([*argv, volume["src"], path])
        if rc != 0:
            detail = err.strip() or out.strip()
            self.module.fail_json(msg=f"Mounting {volume['src']} on {path} failed (exit {rc}): {detail}",
                                  mounted=done, unmounted=[])

    def unmount(self, path: str, done: list[str]) -> None:
        """Unmount one mount point; a failure names the ones this run unmounted before it."""
        rc, out, err = self.module.run_command(["umount", path])
        if rc != 0:
            self.module.fail_json(msg=f"Unmounting {path} failed (exit {rc}): {err.strip() or out.strip()}",
                                  mounted=[], unmounted=done)


def _describe(mounts: dict[str, str | None]) -> str:
    return "".join(f"{path}: {held or '(not mounted)'}\n" for path, held in sorted(mounts.items()))


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.exit_json(**MailboxVolumes(module).run())


if __name__ == "__main__":
    main()
