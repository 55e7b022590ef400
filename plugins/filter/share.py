# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One worker's share of a list of items."""

from __future__ import annotations

DOCUMENTATION = r"""
name: share
short_description: One worker's share of a list of items
version_added: 0.1.0
author: zimbra_geo maintainers
description:
  - Deals the items out over the workers, as cards are dealt (the first item to the first
    worker, the second to the second, and round again), and returns the share of one worker.
    Every item lands in exactly one share; shares differ in length by at most one.
  - A task looping over C(items | share(workers, inventory_hostname)) on every worker, each
    item delegated to the host it concerns, works on up to as many hosts at once as there are
    workers (within the play's forks). P(mailops.zimbra_geo.fanned_out#filter) gathers the
    results again.
  - A host that is not one of the workers gets an empty share.
positional: _input, workers, worker
options:
  _input:
    description: The items to share out.
    type: list
    elements: raw
    required: true
  workers:
    description: The workers, in the same order on every worker.
    type: list
    elements: str
    required: true
  worker:
    description: The worker whose share to return, usually C(inventory_hostname).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Stop Zimbra on the old mailbox servers, every worker its share
  mailops.zimbra_geo.zmcontrol:
    state: stopped
  delegate_to: "{{ item }}"
  loop: "{{ old_mailboxes | mailops.zimbra_geo.share(ansible_play_hosts, inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: The worker's items, in their order in the input.
  type: list
  elements: raw
"""

from typing import Any

from ansible.errors import AnsibleFilterError


def share(items: list[Any], workers: list[str], worker: str) -> list[Any]:
    for name, value in (("items", items), ("workers", workers)):
        if not isinstance(value, (list, tuple)):
            raise AnsibleFilterError(f"share: the {name} must be a list, got {type(value).__name__}")
    if worker not in workers:
        return []
    return list(items[list(workers).index(worker)::len(workers)])


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"share": share}
