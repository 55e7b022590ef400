# -*- coding: utf-8 -*-
# Copyright (c) zimbra_geo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: check, on the controller, that the inventory describes the platform."""

from __future__ import annotations

from typing import Any, Dict

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._inventory import check_inventory

ENDPOINTS = ("ldap", "ontap", "scality", "dns")
PLATFORM_VARS = (
    "zimbra_geo_active_site",
    "zimbra_geo_ldap_suffix",
    "zimbra_geo_ldap_admin_dn",
    "zimbra_geo_ldap_admin_password",
    "zimbra_geo_ontap_clusters",
    "zimbra_geo_ontap_username",
    "zimbra_geo_ontap_password",
    "zimbra_geo_scality_sproxyd",
    "zimbra_geo_scality_supervisor_url",
    "zimbra_geo_dns_views",
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("require",))
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Dict[str, Any] | None = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        require = self._task.args.get("require", list(ENDPOINTS))
        if not isinstance(require, list) or not set(require) <= set(ENDPOINTS):
            raise AnsibleActionFail("require must be a list drawn from: %s" % ", ".join(ENDPOINTS))

        hostvars = task_vars.get("hostvars", {})
        groups = {k: list(v) for k, v in task_vars.get("groups", {}).items()}

        def host_vars(host: str) -> Dict[str, Any]:
            return self._templar.template(hostvars.get(host, {})) if host in hostvars else {}

        platform = {name: task_vars.get(name) for name in PLATFORM_VARS}
        platform = self._templar.template(platform)
        problems = check_inventory(task_vars.get("zimbra_geo_sites"), groups, host_vars, platform, require)
        result["changed"] = False
        result["problems"] = problems
        if problems:
            result["failed"] = True
            result["msg"] = "The inventory does not describe a two-site platform; nothing was changed:\n- " + \
                "\n- ".join(problems)
            return result
        sites = task_vars["zimbra_geo_sites"]
        result["sites"] = {site: sorted(groups.get(site, [])) for site in sites}
        result["msg"] = "inventory describes sites %s" % " and ".join(sites)
        return result
