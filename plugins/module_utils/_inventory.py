# -*- coding: utf-8 -*-
# Copyright (c) zimbra_geo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory model of a two-site platform, and the check every playbook runs first.

Pure functions over plain data, so the same rules serve the action plugin and the tests.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

from typing import Any, Callable, Dict, List, Mapping

ROLE_GROUPS = ("ldap_masters", "mailbox", "mta", "proxy")
LDAP_MASTERS_PER_SITE = 2
DNS_VIEWS = ("internal", "external")
DNS_VIEW_KEYS = ("server", "zone", "key_name", "key_secret")

# Endpoint checks: (what needs it, variable, how to test it for a site).
HostVars = Callable[[str], Mapping[str, Any]]


def _missing(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def check_inventory(
    sites: Any,
    groups: Mapping[str, List[str]],
    hostvars: HostVars,
    platform: Mapping[str, Any],
    endpoints: List[str],
) -> List[str]:
    """Return every problem found (empty when the inventory describes a valid platform).

    ``sites``: the value of ``zimbra_geo_sites``; ``groups``: inventory groups; ``hostvars``:
    host name -> its variables; ``platform``: the variables that apply to the whole platform;
    ``endpoints``: which backends to require (``ontap``, ``scality``, ``dns``, ``ldap``).
    """
    problems: List[str] = []
    if not isinstance(sites, list) or len(sites) != 2 or len(set(sites)) != 2:
        found = sites if isinstance(sites, list) else repr(sites)
        problems.append(
            "zimbra_geo_sites must name exactly two sites (one group per datacenter), found: %s" % (found,)
        )
        return problems
    for site in sites:
        if not groups.get(site):
            problems.append("site %s has no hosts: there is no inventory group %r with hosts" % (site, site))
    if problems:
        return problems

    site_of: Dict[str, str] = {}
    for site in sites:
        for host in groups[site]:
            if host in site_of:
                problems.append("host %s is in both sites %s and %s" % (host, site_of[host], site))
            site_of[host] = site
    for role in ROLE_GROUPS:
        for host in groups.get(role, []):
            if host not in site_of:
                problems.append(
                    "host %s (group %s) belongs to no site: put it in %s" % (host, role, " or ".join(sites))
                )

    active = platform.get("zimbra_geo_active_site")
    if active not in sites:
        problems.append("zimbra_geo_active_site must be one of %s, found: %r" % (", ".join(sites), active))

    problems += _check_ldap(sites, groups, hostvars, site_of)
    problems += _check_mailboxes(sites, groups, hostvars, site_of)
    for role in ("mta", "proxy"):
        for site in sites:
            if not [h for h in groups.get(role, []) if site_of.get(h) == site]:
                problems.append("site %s has no host in group %s" % (site, role))
    problems += _check_endpoints(sites, platform, endpoints)
    return problems


def _check_ldap(sites: List[str], groups: Mapping[str, List[str]], hostvars: HostVars,
                site_of: Mapping[str, str]) -> List[str]:
    problems: List[str] = []
    masters = list(groups.get("ldap_masters", []))
    for site in sites:
        here = [h for h in masters if site_of.get(h) == site]
        if len(here) != LDAP_MASTERS_PER_SITE:
            problems.append(
                "site %s must have exactly %d LDAP masters (group ldap_masters), found %d: %s"
                % (site, LDAP_MASTERS_PER_SITE, len(here), ", ".join(here) or "none")
            )
    seen: Dict[int, str] = {}
    for host in masters:
        raw = hostvars(host).get("zimbra_geo_ldap_server_id")
        try:
            sid = int(raw)
            valid = 1 <= sid <= 4095 and str(raw).strip().isdigit()
        except (TypeError, ValueError):
            valid = False
        if not valid:
            problems.append(
                "LDAP master %s needs zimbra_geo_ldap_server_id, a whole number from 1 to 4095, found: %r"
                % (host, raw)
            )
            continue
        if sid in seen:
            problems.append(
                "LDAP server ID %d is used by both %s and %s: server IDs must be unique" % (sid, seen[sid], host)
            )
        else:
            seen[sid] = host
        if _missing(hostvars(host).get("zimbra_geo_ldap_uri")):
            problems.append("LDAP master %s needs zimbra_geo_ldap_uri (e.g. ldap://host.example.com)" % host)
    return problems


def _check_mailboxes(sites: List[str], groups: Mapping[str, List[str]], hostvars: HostVars,
                     site_of: Mapping[str, str]) -> List[str]:
    problems: List[str] = []
    mailboxes = list(groups.get("mailbox", []))
    for site in sites:
        if not [h for h in mailboxes if site_of.get(h) == site]:
            problems.append("site %s has no mailbox server (group mailbox)" % site)
    for host in mailboxes:
        peer = hostvars(host).get("zimbra_geo_mailbox_peer")
        if _missing(peer):
            problems.append("mailbox server %s needs zimbra_geo_mailbox_peer: its standby on the other site" % host)
            continue
        if peer not in mailboxes:
            problems.append("mailbox server %s names peer %r, which is not in group mailbox" % (host, peer))
            continue
        if site_of.get(peer) == site_of.get(host):
            problems.append("mailbox server %s and its peer %s are both on site %s: the peer must be on the other site"
                            % (host, peer, site_of.get(host)))
        back = hostvars(peer).get("zimbra_geo_mailbox_peer")
        if back != host:
            problems.append("mailbox servers %s and %s must name each other as zimbra_geo_mailbox_peer (%s names %r)"
                            % (host, peer, peer, back))
    return problems


def _check_endpoints(sites: List[str], platform: Mapping[str, Any], endpoints: List[str]) -> List[str]:
    problems: List[str] = []
    if "ldap" in endpoints:
        for var in ("zimbra_geo_ldap_suffix", "zimbra_geo_ldap_admin_dn", "zimbra_geo_ldap_admin_password"):
            if _missing(platform.get(var)):
                problems.append("LDAP needs %s" % var)
    if "ontap" in endpoints:
        clusters = platform.get("zimbra_geo_ontap_clusters") or {}
        for site in sites:
            if _missing((clusters.get(site) or {}).get("hostname") if isinstance(clusters, Mapping) else None):
                problems.append("SnapMirror needs zimbra_geo_ontap_clusters.%s.hostname: the ONTAP cluster of site %s"
                                % (site, site))
        for var in ("zimbra_geo_ontap_username", "zimbra_geo_ontap_password"):
            if _missing(platform.get(var)):
                problems.append("SnapMirror needs %s" % var)
    if "scality" in endpoints:
        proxies = platform.get("zimbra_geo_scality_sproxyd") or []
        proxy_sites = {p.get("site") for p in proxies if isinstance(p, Mapping) and p.get("url")}
        for site in sites:
            if site not in proxy_sites:
                problems.append("Scality needs an sproxyd endpoint for site %s in zimbra_geo_scality_sproxyd" % site)
        if _missing(platform.get("zimbra_geo_scality_supervisor_url")):
            problems.append("Scality needs zimbra_geo_scality_supervisor_url")
    if "dns" in endpoints:
        views = platform.get("zimbra_geo_dns_views") or {}
        for view in DNS_VIEWS:
            spec = views.get(view) if isinstance(views, Mapping) else None
            if not isinstance(spec, Mapping):
                problems.append("DNS needs zimbra_geo_dns_views.%s (server, zone, key_name, key_secret)" % view)
                continue
            for key in DNS_VIEW_KEYS:
                if _missing(spec.get(key)):
                    what = "TSIG key" if key.startswith("key_") else key
                    problems.append("DNS view %s needs %s (zimbra_geo_dns_views.%s.%s)" % (view, what, view, key))
    return problems
