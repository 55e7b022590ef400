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

# Every inventory variable a role or playbook of the collection reads, with what the check
# makes of it. tests/unit/plugins/module_utils/test_inventory.py fails when a role reads one
# that is not listed here, so the check and the example inventory cannot fall behind the roles.
INVENTORY_VARIABLES = {
    "zimbra_geo_sites": "required: the two site groups",
    "zimbra_geo_site": "set per site group (group_vars/<site>.yml): the host's site",
    "zimbra_geo_active_site": "required: the site active after site_build",
    "zimbra_geo_ldap_server_id": "required on LDAP masters: unique, 1-4095",
    "zimbra_geo_ldap_uri": "required on LDAP masters",
    "zimbra_geo_ldap_suffix": "required for LDAP",
    "zimbra_geo_ldap_admin_dn": "required for LDAP",
    "zimbra_geo_ldap_admin_password": "required for LDAP",
    "zimbra_geo_ldap_config_password": "optional: cn=config access for site_build (else SASL EXTERNAL)",
    "zimbra_geo_mailbox_peer": "required on mailbox servers: the standby on the other site, naming it back",
    "zimbra_geo_mailbox_volumes": "required on mailbox servers: the volumes, the same names and paths as the peer's",
    "zimbra_geo_mailbox_service_name": "optional: the mailbox's DNS name (default: the host name's last '-' part)",
    "zimbra_geo_zimbra_hostname": "required on mailbox servers and MTAs: the server's name in Zimbra",
    "zimbra_geo_address": "optional: internal address (default: ansible_host)",
    "zimbra_geo_public_address": "required on MTAs and proxies (with DNS): the address the external view publishes",
    "zimbra_geo_outbound_relay": "optional, per site: the relay for outgoing mail (zimbraMtaRelayHost)",
    "zimbra_geo_ontap_clusters": "required for SnapMirror: per site, hostname and a distinct svm",
    "zimbra_geo_ontap_username": "required for SnapMirror",
    "zimbra_geo_ontap_password": "required for SnapMirror",
    "zimbra_geo_scality_sproxyd": "required for Scality: an sproxyd URL per site",
    "zimbra_geo_scality_supervisor_url": "required for Scality",
    "zimbra_geo_scality_supervisor_username": "optional: supervisor credentials",
    "zimbra_geo_scality_supervisor_password": "optional: supervisor credentials",
    "zimbra_geo_scality_supervisor_site": "optional: the site of the supervisor",
    "zimbra_geo_scality_ring": "optional: the RING's name",
    "zimbra_geo_scality_replication_class": "optional: the RING's class of service",
    "zimbra_geo_dns_views": "required for DNS: internal and external (server, zone, TSIG key)",
    "zimbra_geo_dns_records": "optional: the records per site and view (default: derived from the groups)",
    "zimbra_geo_ca_path": "optional: the CA bundle the backends' TLS is verified against",
    "zimbra_geo_report_dir": "optional: where reports go (default: reports/ where ansible-playbook runs)",
}


def mailbox_service_name(host: str, hostvars: Mapping[str, Any]) -> str:
    """The mailbox's DNS service name, as the roles derive it (shared by the two peers)."""
    name = hostvars.get("zimbra_geo_mailbox_service_name")
    if not _missing(name):
        return str(name)
    return host.split(".")[0].split("-")[-1]


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
    for role in ("mailbox", "mta"):
        for host in groups.get(role, []):
            if _missing(hostvars(host).get("zimbra_geo_zimbra_hostname")):
                problems.append("%s %s needs zimbra_geo_zimbra_hostname: its server name in Zimbra (zmhostname)"
                                % ("mailbox server" if role == "mailbox" else "MTA", host))
    for role in ("mta", "proxy"):
        for site in sites:
            if not [h for h in groups.get(role, []) if site_of.get(h) == site]:
                problems.append("site %s has no host in group %s" % (site, role))
    problems += _check_endpoints(sites, groups, hostvars, platform, endpoints)
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
            continue
        if host > peer:
            continue  # each pair once
        names = (mailbox_service_name(host, hostvars(host)), mailbox_service_name(peer, hostvars(peer)))
        if names[0] != names[1]:
            problems.append("mailbox peers %s and %s derive different service names (%s, %s): set the same "
                            "zimbra_geo_mailbox_service_name on both" % (host, peer, names[0], names[1]))
        volumes = [_volume_pairs(hostvars(h).get("zimbra_geo_mailbox_volumes")) for h in (host, peer)]
        if volumes[0] is None or volumes[1] is None:
            for index, h in enumerate((host, peer)):
                if volumes[index] is None:
                    problems.append("mailbox server %s needs zimbra_geo_mailbox_volumes: a list of {name, volume, "
                                    "path, src, fstype}" % h)
        elif volumes[0] != volumes[1]:
            problems.append("mailbox peers %s and %s must have the same volumes (name: path): %s has %s, %s has %s"
                            % (host, peer, host, _show(volumes[0]), peer, _show(volumes[1])))
    return problems


def _volume_pairs(volumes: Any) -> Any:
    """{name: path} of a mailbox's volumes, or None when they are missing or malformed."""
    if not isinstance(volumes, list) or not volumes:
        return None
    pairs = {}
    for vol in volumes:
        if not isinstance(vol, Mapping) or _missing(vol.get("name")) or _missing(vol.get("path")):
            return None
        pairs[str(vol["name"])] = str(vol["path"])
    return pairs


def _show(pairs: Mapping[str, str]) -> str:
    return ", ".join("%s: %s" % item for item in sorted(pairs.items())) or "none"


def _check_endpoints(sites: List[str], groups: Mapping[str, List[str]], hostvars: HostVars,
                     platform: Mapping[str, Any], endpoints: List[str]) -> List[str]:
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
        svms = [(clusters.get(site) or {}).get("svm") if isinstance(clusters, Mapping) else None for site in sites]
        if not _missing(svms[0]) and svms[0] == svms[1]:
            problems.append("zimbra_geo_ontap_clusters: sites %s and %s both name SVM %r; each site's SVM needs its "
                            "own name (the active site is told by which SVM holds the writable volumes)"
                            % (sites[0], sites[1], svms[0]))
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
        for role in ("mta", "proxy"):
            for host in groups.get(role, []):
                if _missing(hostvars(host).get("zimbra_geo_public_address")):
                    problems.append("%s %s needs zimbra_geo_public_address: the address the external DNS view "
                                    "publishes for it (without it the internal address would be published)"
                                    % ("MTA" if role == "mta" else "proxy", host))
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
