#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) zimbra_geo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: inventory_check
short_description: Check that the inventory describes a two-site Zimbra platform
version_added: 0.1.0
description:
  - Runs on the controller (action plugin) before anything else in every playbook of the
    collection, and fails, before any change, with one line per problem when the inventory does
    not describe exactly two sites, two LDAP masters per site with unique server IDs, a mailbox
    server peer on the other site for every mailbox server (naming it back, deriving the same
    service name, with the same volumes), an MTA and a proxy on each site, a Zimbra server name
    on every mailbox server and MTA, a public address on every MTA and proxy, a distinct SVM
    per site, and the endpoints that the later steps need.
  - Every inventory variable the roles read is known to the check (its module_utils lists them
    with what is required; a test fails when a role reads one it does not know).
  - "The inventory model: C(zimbra_geo_sites) names the two site groups; the role groups are
    C(ldap_masters), C(mailbox), C(mta) and C(proxy); LDAP masters carry
    C(zimbra_geo_ldap_server_id) and C(zimbra_geo_ldap_uri); mailbox servers carry
    C(zimbra_geo_mailbox_peer); C(zimbra_geo_active_site) names the active site."
author:
  - zimbra_geo maintainers (@mailops)
options:
  require:
    description:
      - Which backends' endpoints must be described.
    type: list
    elements: str
    choices: [ldap, ontap, scality, dns]
    default: [ldap, ontap, scality, dns]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  platform:
    platforms: all
notes:
  - Never changes anything; runs once on the controller.
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
"""

EXAMPLES = r"""
- name: Check the inventory before anything else
  mailops.zimbra_geo.inventory_check:
  run_once: true

- name: Check only what a replication check needs
  mailops.zimbra_geo.inventory_check:
    require: [ldap, dns]
  run_once: true
"""

RETURN = r"""
problems:
  description: One line per problem found; empty when the inventory is valid.
  returned: always
  type: list
  elements: str
sites:
  description: The hosts of each site.
  returned: success
  type: dict
  sample: {"dc1": ["dc1-ldap1", "dc1-mbox1"], "dc2": ["dc2-ldap1", "dc2-mbox1"]}
"""
