# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Gather the results of a task fanned out over the workers of a play."""

from __future__ import annotations

DOCUMENTATION = r"""
name: fanned_out
short_description: Gather the results of a task fanned out over the workers of a play
version_added: 0.1.0
author: zimbra_geo maintainers
description:
  - A task fanned out over the workers (each worker loops over its share of the items,
    delegated to the host each item concerns) registers one result per worker. This filter
    gathers them into one result, as if a single worker had looped over every item.
  - A failed or unreachable item becomes one line of RV(_value.failures), named by its label, with its
    message, else its standard error, else the last line of its standard output.
positional: _input, hostvars, name
options:
  _input:
    description: The workers (inventory host names), in the order the shares were made.
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  name:
    description: The name every worker registered its result under.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Stop Zimbra on every old mailbox server, each worker its share
  mailops.zimbra_geo.zmcontrol:
    state: stopped
  delegate_to: "{{ item }}"
  loop: "{{ old_mailboxes[(share | int)::(stride | int)] }}"
  register: stop_part
  ignore_errors: true
  ignore_unreachable: true

- name: Fail once, for every worker, when any host failed
  vars:
    stopped: "{{ workers | mailops.zimbra_geo.fanned_out(hostvars, 'stop_part') }}"
  ansible.builtin.assert:
    that: stopped.failures | length == 0
    fail_msg: "{{ stopped.failures | join('; ') }}"
  run_once: true
"""

RETURN = r"""
_value:
  description: The gathered result.
  type: dict
  contains:
    results:
      description: Every item's result, the workers' shares one after the other.
      type: list
      elements: dict
    changed:
      description: Whether any item changed something.
      type: bool
    failures:
      description: One line per failed or unreachable item, its label then its message.
      type: list
      elements: str
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _label(result: Mapping[str, Any]) -> str:
    label = result.get("_ansible_item_label", result.get("item", "?"))
    if isinstance(label, Mapping):
        if "host" in label and "path" in label:
            return f"{label['host']}:{label['path']}"
        return str(label.get("host", label))
    return str(label)


def _reason(result: Mapping[str, Any]) -> str:
    """Why a result failed: its message, else its stderr, else the last line of its stdout (a
    command failed by its output, such as a queue listing's summary line)."""
    for key in ("msg", "stderr"):
        if str(result.get(key) or "").strip():
            return str(result[key]).strip()
    lines = [line for line in str(result.get("stdout") or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def fanned_out(workers: list[str], hostvars: Mapping[str, Any], name: str) -> dict[str, Any]:
    if not isinstance(workers, (list, tuple)):
        raise AnsibleFilterError(f"fanned_out: the workers must be a list, got {type(workers).__name__}")
    results: list[dict[str, Any]] = []
    for worker in workers:
        registered = (hostvars.get(worker) or {}).get(name)
        if not isinstance(registered, Mapping):
            continue
        if "results" in registered:
            results.extend(r for r in registered["results"] if isinstance(r, Mapping))
        elif not registered.get("skipped"):
            results.append(dict(registered))
    failures = [f"{_label(r)}: {_reason(r)}" for r in results if r.get("unreachable") or r.get("failed")]
    return {
        "results": [dict(r) for r in results],
        "changed": any(bool(r.get("changed")) for r in results),
        "failures": failures,
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fanned_out": fanned_out}
