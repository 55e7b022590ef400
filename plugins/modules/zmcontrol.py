# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: zmcontrol
short_description: Start, stop, restart Zimbra on a host and report every service's status
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Drives Zimbra's C(zmcontrol) on the managed host and returns the parsed
    C(zmcontrol status) - every service, Running or Stopped, with the detail lines Zimbra
    prints under a stopped one.
  - Reads the status first and acts only when the host is not already in the requested
    state, so a stopped host is not stopped again and C(changed) is true only when something
    changed. The decision rests on the status lines, never on C(zmcontrol)'s exit code alone
    (it exits 0 with some services stopped and 1 when it cannot read the enabled services).
  - After acting it reads the status again and fails, with that status, unless every
    service is in the requested state.
  - Check mode runs only C(zmcontrol status) and predicts the result.
  - C(zmcontrol status) and C(start) read the host's enabled services from an LDAP master,
    else from a cache under a day old. When neither is available the status is unknown;
    O(state=stopped) still runs C(zmcontrol stop), which needs no LDAP, and reports a
    change.
  - Stopping a mailbox can take many minutes (database flush), hence the long default
    timeouts.
extends_documentation_fragment:
  - mailops.zimbra_geo.zimbra
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
      - V(started) - every enabled service running; runs C(zmcontrol start) unless they all are.
      - V(stopped) - every service stopped; runs C(zmcontrol stop) unless they all are.
      - V(restarted) - always runs C(zmcontrol restart), then expects every service running.
      - V(status) - only reads and returns the status; never changes anything.
    type: str
    choices: [started, stopped, restarted, status]
    default: status
  timeout:
    description:
      - Seconds C(zmcontrol start), C(stop) or C(restart) may take before the task fails.
    type: int
    default: 1800
  status_timeout:
    description:
      - Seconds one C(zmcontrol status) may take (Zimbra's own limit is 180).
    type: int
    default: 300
  settle_timeout:
    description:
      - After a successful start, stop or restart, seconds to keep polling the status until
        every service is in the requested state.
    type: int
    default: 60
  ignore_services:
    description:
      - Services left out of the decision and of the final check (for example V(stats)).
        They are still returned.
    type: list
    elements: str
    default: []
notes:
  - Runs on the Zimbra host itself. Run it as root (it calls C(su - zimbra -c)) or with
    C(become_user) set to the Zimbra user.
  - Never uses C(zmcontrol -H), which exits 0 whatever happened on the other host.
seealso:
  - name: zmcontrol in the Zimbra wiki
    description: Zimbra's command to start, stop and check the services of a host.
    link: https://wiki.zimbra.com/wiki/Zmcontrol
"""

EXAMPLES = r"""
- name: Stop Zimbra on the old site's mailbox before unmounting its volumes
  mailops.zimbra_geo.zmcontrol:
    state: stopped
  delegate_to: dc1-mbox1

- name: Start Zimbra on the new site's mailbox
  mailops.zimbra_geo.zmcontrol:
    state: started
    timeout: 3600
  register: zimbra_geo_zmcontrol_started

- name: Read the status only
  mailops.zimbra_geo.zmcontrol:
  register: zimbra_geo_zmcontrol_status

- name: Fail when the mailbox service is stopped
  ansible.builtin.assert:
    that: "'mailbox' in zimbra_geo_zmcontrol_status.status.running"
"""

RETURN = r"""
status:
  description:
    - The parsed C(zmcontrol status) after the task (before it in check mode).
    - Empty when the status could not be read after O(state=stopped) with LDAP and cache
      unavailable.
  returned: always
  type: dict
  contains:
    host:
      description: The host name C(zmcontrol) printed.
      type: str
      sample: dc1-mbox1.example.test
    services:
      description: Every service line, in Zimbra's (alphabetical) order.
      type: list
      elements: dict
      contains:
        name:
          description: The service, without the C( webapp) suffix.
          type: str
          sample: mailbox
        state:
          description: C(Running) or C(Stopped).
          type: str
          sample: Stopped
        running:
          description: Whether the state is C(Running).
          type: bool
        webapp:
          description: Whether Zimbra printed it as a webapp.
          type: bool
        details:
          description: The lines Zimbra printed under a stopped service (control script output).
          type: list
          elements: str
          sample: ["mysql.server is not running.", "zmmailboxdctl is not running."]
    running:
      description: Names of the running services.
      type: list
      elements: str
    stopped:
      description: Names of the stopped services.
      type: list
      elements: str
    from_cache:
      description: Whether zmcontrol read the enabled services from its cache (LDAP unreachable).
      type: bool
    rc:
      description: Exit code of C(zmcontrol status) (informational only).
      type: int
  sample:
    host: dc1-mbox1.example.test
    services:
      - {name: mailbox, state: Running, running: true, webapp: false, details: []}
    running: [mailbox]
    stopped: []
    from_cache: false
    rc: 0
output:
  description: What C(zmcontrol start), C(stop) or C(restart) printed; empty when nothing ran.
  returned: always
  type: str
  sample: "Host dc1-mbox1.example.test\n\tStarting zmconfigd...Done.\n"
command:
  description: The C(zmcontrol) command run (V(start), V(stop), V(restart)), or null.
  returned: always
  type: str
  sample: start
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._zimbra import (
    RUNNING,
    STOPPED,
    HostStatus,
    ZimbraControl,
    ZimbraError,
    zimbra_argument_spec,
)


def argument_spec() -> dict[str, Any]:
    spec = zimbra_argument_spec()
    spec.update(
        state={"type": "str", "default": "status",
               "choices": ["started", "stopped", "restarted", "status"]},
        timeout={"type": "int", "default": 1800},
        status_timeout={"type": "int", "default": 300},
        settle_timeout={"type": "int", "default": 60},
        ignore_services={"type": "list", "elements": "str", "default": []},
    )
    return spec


def decide(state: str, before: HostStatus | None, ignore: list[str]) -> str | None:
    """The zmcontrol command that brings the host to `state`, or None when it is there.
    `before` is None when the status could not be read."""
    if state == "status":
        return None
    if state == "restarted":
        return "restart"
    if state == "started":
        return None if before is not None and before.all_running(ignore) else "start"
    return None if before is not None and before.all_stopped(ignore) else "stop"


def predicted(before: HostStatus | None, command: str | None) -> dict[str, str]:
    if before is None:
        return {}
    if command is None:
        return before.states()
    state = STOPPED if command == "stop" else RUNNING
    return {name: state for name in before.states()}


class Zmcontrol:
    def __init__(self, module: AnsibleModule, client: ZimbraControl) -> None:
        self.module = module
        self.client = client
        self.params = module.params

    def read_before(self) -> HostStatus | None:
        try:
            return self.client.status(self.params["status_timeout"])
        except ZimbraError:
            # Without LDAP and cache only a stop can still proceed (it needs neither).
            if self.params["state"] != "stopped":
                raise
            self.module.warn("zmcontrol status could not determine the enabled services; "
                             "running zmcontrol stop anyway")
            return None

    def run(self) -> dict[str, Any]:
        ignore = self.params["ignore_services"]
        before = self.read_before()
        command = decide(self.params["state"], before, ignore)
        result: dict[str, Any] = {"changed": command is not None, "command": command,
                                  "output": "", "status": before.as_dict() if before else {}}
        if self.module._diff:
            result["diff"] = {"before": {"services": before.states() if before else {}},
                              "after": {"services": predicted(before, command)}}
        if command is None or self.module.check_mode:
            return result
        rc, out, err = self.client.action(command, self.params["timeout"])
        result["output"] = out
        want_running = command != "stop"
        try:
            after = self.client.wait_for(want_running, self.params["settle_timeout"] if rc == 0
                                         else 0, self.params["status_timeout"], ignore)
        except ZimbraError:
            if want_running:
                raise
            after = None
        result["status"] = after.as_dict() if after else {}
        if self.module._diff:
            result["diff"]["after"] = {"services": after.states() if after else {}}
        reached = after is None or (after.all_running(ignore) if want_running
                                    else after.all_stopped(ignore))
        if not reached:
            wrong = [s.name for s in after.considered(ignore) if s.running != want_running]
            error = ZimbraError(f"zmcontrol {command} left {', '.join(wrong)} "
                                f"{'stopped' if want_running else 'running'}", rc, out, err)
            error.result = result
            raise error
        return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)

    def run(argv: list[str]) -> Any:
        return module.run_command(argv)

    client = ZimbraControl(run, module.params["zmcontrol_path"], module.params["run_as"])
    try:
        result = Zmcontrol(module, client).run()
    except ZimbraError as exc:
        module.fail_json(msg=str(exc), **exc.details(), **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
