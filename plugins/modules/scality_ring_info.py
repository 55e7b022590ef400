# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: scality_ring_info
short_description: Check a stretched Scality RING before and after a site failover
version_added: 0.1.0
author:
  - zimbra_geo maintainers (@mailops)
description:
  - Reads the Scality Supervisor REST API (ring status and state, servers per zone, storage
    nodes, disks, rebuild backlog, capacity) and probes each site's sproxyd connector
    (liveness through C(.conf), latency).
  - Runs a canary through one site's sproxyd, and optionally reads it back through the other
    sites' connectors. The steps are C(PUT) random bytes with user metadata, C(GET) and
    compare SHA-256 and metadata, C(HEAD), C(DELETE) (retrying while the connector answers
    C(423 Locked)), then confirm C(404).
  - Gives a verdict for the failover asked. V(planned) needs everything healthy on every
    site. V(disaster) names the lost site and needs the surviving sites whole and the lost
    site uniformly unreachable; a lost site that still partly answers is reported as a
    possible split.
  - When the Supervisor cannot be reached (for example it runs on the lost site), the
    verdict rests on the sproxyd checks alone and says so.
  - Reads only; the canary object is the only write, and it is deleted again. Check mode
    skips the canary.
extends_documentation_fragment:
  - mailops.zimbra_geo.scality
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The canary is skipped in check mode; everything else is read as usual.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  ring:
    description:
      - Name of the ring that holds the mail blobs.
    type: str
    default: DATA
  sites:
    description:
      - The sites the ring is stretched over, as the Supervisor names them in each server's
        C(zone).
    type: list
    elements: str
    required: true
  supervisor_site:
    description:
      - The site the Supervisor runs on. In disaster mode an unreachable Supervisor is then
        expected only when it sits on the lost site; if it sits on a surviving site, losing it
        fails the verdict.
      - When the Supervisor answers while it runs on the lost site, the lost site is not
        uniformly unreachable.
    type: str
  sproxyd:
    description:
      - The sproxyd connectors, at least one per site.
    type: list
    elements: dict
    required: true
    suboptions:
      site:
        description:
          - The site of the connector (one of O(sites)).
        type: str
        required: true
      url:
        description:
          - Base URL of the connector's driver, up to the alias, for example
            C(http://sproxyd1.dc1.example.com:81/proxy/chord). Objects are
            C(<url>/<40-hex key>) and the liveness probe is C(<url>/.conf).
        type: str
        required: true
  replication_class:
    description:
      - Class of service of the ring. Class N keeps N+1 copies of each object, spread evenly
        over the sites; class 3 over two sites keeps two copies on each site.
      - The placement is not visible through the API, so it is an input; a site with fewer
        healthy nodes than its share of copies fails the verdict.
    type: int
    default: 3
  mode:
    description:
      - V(planned) is a switchover with both sites up. V(disaster) is a failover away from
        O(lost_site).
    type: str
    choices: [planned, disaster]
    default: planned
  lost_site:
    description:
      - The site lost in a disaster. Required with O(mode=disaster).
    type: str
  canary:
    description:
      - Run the canary object round trip. Skipped in check mode.
    type: bool
    default: true
  canary_site:
    description:
      - The site whose sproxyd receives the canary write.
      - Defaults to the first surviving site in disaster mode, and the first of O(sites) in
        planned mode.
    type: str
  canary_cross_site:
    description:
      - Also read (and confirm the deletion of) the canary through the connectors of the other
        sites that are not lost.
    type: bool
    default: false
  canary_size:
    description:
      - Size in bytes of the canary object.
    type: int
    default: 4096
  canary_timeout:
    description:
      - Seconds the canary may spend retrying a C(DELETE) answered with C(423 Locked) and
        waiting for the object to read C(404).
    type: float
    default: 30.0
  max_backlog:
    description:
      - Largest rebuild backlog (pending tasks) accepted in planned mode.
    type: int
    default: 0
  min_free_percent:
    description:
      - Smallest free space of the ring, in percent, accepted by the verdict.
    type: float
    default: 10.0
  fail_on_unhealthy:
    description:
      - Fail the task when the verdict is not good, with the reasons as the message. By
        default the verdict is only reported, for the playbook to assert on.
    type: bool
    default: false
notes:
  - The rebuild backlog is read from C(rings/<ring>/tasks/) where the Supervisor offers it
    (the public API documents no backlog); elsewhere RV(backlog) is null.
  - Nodes and disks carry no zone in the API; they are placed on a site through the server
    whose management address or id they name.
seealso:
  - module: mailops.zimbra_geo.snapmirror_info
"""

EXAMPLES = r"""
- name: Is the RING fit for a planned switchover to dc2?
  mailops.zimbra_geo.scality_ring_info:
    supervisor_url: https://127.10.1.60
    supervisor_username: supervisor
    supervisor_password: "{{ scality_password }}"
    ca_path: /etc/zimbra_geo/ca.pem
    sites: [dc1, dc2]
    supervisor_site: dc1
    sproxyd:
      - {site: dc1, url: "http://127.10.1.61:81/proxy/chord"}
      - {site: dc2, url: "http://127.10.2.61:81/proxy/chord"}
    canary_site: dc2
    canary_cross_site: true
  register: ring

- name: Stop here unless the RING is whole
  ansible.builtin.assert:
    that: ring.verdict.ok
    fail_msg: "{{ ring.verdict.reasons | join('; ') }}"

- name: dc1 is lost; fail the task unless dc2 can carry the mail alone
  mailops.zimbra_geo.scality_ring_info:
    supervisor_url: https://127.10.1.60
    supervisor_username: supervisor
    supervisor_password: "{{ scality_password }}"
    sites: [dc1, dc2]
    supervisor_site: dc1
    sproxyd: "{{ zimbra_geo_scality_sproxyd }}"
    mode: disaster
    lost_site: dc1
    timeout: 3
    retries: 0
    fail_on_unhealthy: true
"""

RETURN = r"""
supervisor:
  description: Whether the Supervisor answered, and its status.
  returned: always
  type: dict
  contains:
    url:
      description: The Supervisor URL checked, or null.
      type: str
      sample: https://127.10.1.60
    reachable:
      description: It answered the status request.
      type: bool
      sample: true
    status:
      description: Its C(supv2_status), or null.
      type: str
      sample: Running
    error:
      description: Why it could not be read, or null.
      type: str
      sample: null
ring:
  description: The ring as the Supervisor reports it; null without a Supervisor.
  returned: always
  type: dict
  contains:
    name:
      description: Ring name.
      type: str
      sample: DATA
    status:
      description: C(OK), C(WARNING) or C(CRITICAL).
      type: str
      sample: OK
    state:
      description: The ring's states; healthy is exactly C([RUN]).
      type: list
      elements: str
      sample: [RUN]
    healthy:
      description: Status C(OK) and state C([RUN]).
      type: bool
      sample: true
    diskspace_total:
      description: Raw capacity in bytes.
      type: int
      sample: 12884901888
    diskspace_used:
      description: Raw space used in bytes.
      type: int
      sample: 1048576
    used_percent:
      description: Space used, in percent of the capacity.
      type: float
      sample: 0.01
    number_of_objects:
      description: Object count as reported (replicas included).
      type: int
      sample: 4
sites:
  description:
    - Per site, the servers, storage nodes and disks (total, healthy, names of the unhealthy
      ones; unreachable nodes) from the Supervisor, and the site's sproxyd results.
    - Servers, nodes and disks are absent when the Supervisor could not be read.
  returned: always
  type: dict
  sample:
    dc1:
      servers: {total: 3, healthy: 3, unhealthy: []}
      nodes: {total: 3, healthy: 2, unhealthy: [dc1-node2], unreachable: [dc1-node2]}
      disks: {total: 6, healthy: 6, unhealthy: []}
      sproxyd: [{url: "http://127.10.1.61:81/proxy/chord", alive: true, latency_ms: 1.9}]
backlog:
  description: Pending rebuild tasks of the ring; null when not published or unreadable.
  returned: always
  type: int
  sample: 0
sproxyd:
  description: Liveness and latency of every sproxyd endpoint.
  returned: always
  type: list
  elements: dict
  contains:
    site:
      description: The endpoint's site.
      type: str
      sample: dc1
    url:
      description: The endpoint.
      type: str
      sample: http://127.10.1.61:81/proxy/chord
    alive:
      description: Its C(.conf) answered C(200).
      type: bool
      sample: true
    latency_ms:
      description: Duration of the C(.conf) exchange in milliseconds, or null.
      type: float
      sample: 1.9
    status_code:
      description: HTTP status of a failed probe, or null.
      type: int
      sample: null
    error:
      description: Why the probe failed, or null.
      type: str
      sample: null
canary:
  description: The canary round trip.
  returned: always
  type: dict
  contains:
    performed:
      description: Whether the canary ran.
      type: bool
      sample: true
    skipped_reason:
      description: Why it did not run, or null.
      type: str
      sample: null
    site:
      description: The site written through.
      type: str
      sample: dc2
    read_sites:
      description: The sites read through (the written one first).
      type: list
      elements: str
      sample: [dc2, dc1]
    key:
      description: The canary's 40-hex key.
      type: str
      sample: 5F0C0A3D8E6B4C2A1F0E9D8C7B6A5F4E3D2C1B0A
    passed:
      description: Every step passed.
      type: bool
      sample: true
    steps:
      description: The steps done, in order, each C(ok) or the error.
      type: list
      elements: dict
      sample: [{step: put dc2, ok: true, latency_ms: 3.1}]
    delete_423_retries:
      description: How many times C(DELETE) was answered C(423 Locked) and retried.
      type: int
      sample: 0
    error:
      description: The first failure, or null.
      type: str
      sample: null
verdict:
  description: Whether the RING is fit for the failover asked, and why not.
  returned: always
  type: dict
  contains:
    mode:
      description: V(planned) or V(disaster).
      type: str
      sample: disaster
    ok:
      description: Fit for the failover.
      type: bool
      sample: true
    lost_site:
      description: The lost site in disaster mode, else null.
      type: str
      sample: dc1
    surviving_sites:
      description: The sites expected whole.
      type: list
      elements: str
      sample: [dc2]
    split_suspected:
      description: The lost site answers in part only (a network split rather than a loss).
      type: bool
      sample: false
    sproxyd_only:
      description: The Supervisor could not be read; the verdict rests on the sproxyd checks.
      type: bool
      sample: true
    reasons:
      description: Why the verdict is not good (empty when it is).
      type: list
      elements: str
      sample: []
    notes:
      description: Observations that do not change the verdict.
      type: list
      elements: str
      sample: [dc1 is uniformly unreachable (4 observed components)]
"""

import base64
import hashlib
import json
import os
import time
import uuid

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._scality import (
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    ScalityClient,
    ScalityError,
    as_list,
    scality_argument_spec,
    summarize_sites,
    verdict,
)
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._tls import unverified_tls_warnings


def argument_spec() -> dict:
    spec = scality_argument_spec()
    spec.update(
        ring={"type": "str", "default": "DATA"},
        sites={"type": "list", "elements": "str", "required": True},
        supervisor_site={"type": "str"},
        sproxyd={
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": {"site": {"type": "str", "required": True}, "url": {"type": "str", "required": True}},
        },
        replication_class={"type": "int", "default": 3},
        mode={"type": "str", "choices": ["planned", "disaster"], "default": "planned"},
        lost_site={"type": "str"},
        canary={"type": "bool", "default": True},
        canary_site={"type": "str"},
        canary_cross_site={"type": "bool", "default": False},
        canary_size={"type": "int", "default": 4096},
        canary_timeout={"type": "float", "default": 30.0},
        max_backlog={"type": "int", "default": 0},
        min_free_percent={"type": "float", "default": 10.0},
        fail_on_unhealthy={"type": "bool", "default": False},
    )
    return spec


def validate(p: dict) -> str | None:
    """A message for the first inconsistent input, before anything is contacted."""
    sites = p["sites"]
    if not sites or len(set(sites)) != len(sites):
        return "sites must name each site once"
    if (p["replication_class"] + 1) % len(sites):
        return (
            f"replication_class {p['replication_class']} keeps {p['replication_class'] + 1} copies, "
            f"which do not spread evenly over {len(sites)} sites"
        )
    for name in ("supervisor_site", "lost_site", "canary_site"):
        if p[name] is not None and p[name] not in sites:
            return f"{name} {p[name]!r} is not one of sites {sites}"
    for e in p["sproxyd"]:
        if e["site"] not in sites:
            return f"sproxyd endpoint {e['url']} names site {e['site']!r}, not one of {sites}"
        if not e["url"].startswith(("http://", "https://")):
            return f"sproxyd url {e['url']!r} must start with http:// or https://"
    if p["mode"] == "disaster":
        if p["lost_site"] is None:
            return "mode=disaster needs lost_site"
        if len(sites) < 2:
            return "mode=disaster needs at least two sites"
        if p["canary_site"] == p["lost_site"]:
            return "canary_site cannot be the lost site"
    elif p["lost_site"] is not None:
        return "lost_site is only meaningful with mode=disaster"
    if p["supervisor_url"] and (not p["supervisor_username"] or p["supervisor_password"] is None):
        return "supervisor_url needs supervisor_username and supervisor_password"
    if not 1 <= p["canary_size"] <= 64 * 1024 * 1024:
        return "canary_size must be between 1 byte and 64 MiB"
    if p["canary_timeout"] <= 0 or p["timeout"] <= 0:
        return "timeouts must be positive"
    if not 0 <= p["min_free_percent"] <= 100:
        return "min_free_percent must be between 0 and 100"
    return None


class RingInspector:
    """Reads the RING through an injected client and judges it; the module only wires it up."""

    def __init__(self, client: ScalityClient, params: dict, check_mode: bool) -> None:
        self.client = client
        self.p = params
        self.check_mode = check_mode

    def supervisor(self) -> dict:
        out = {"url": self.p["supervisor_url"], "reachable": False, "status": None, "error": None}
        if not self.p["supervisor_url"]:
            out["error"] = "no supervisor_url given"
            return out
        try:
            status = self.client.supervisor_status()
        except ScalityError as exc:
            out["error"] = str(exc)
            return out
        out.update(reachable=True, status=status.get("supv2_status"))
        return out

    def ring_state(self) -> tuple:
        """(ring, summary, backlog) from the Supervisor; raises ScalityError."""
        ring = self.client.get_item("rings", self.p["ring"])
        servers = self.client.list_items("servers")
        nodes = [n for n in self.client.list_items("storenodes") if n.get("ring", self.p["ring"]) == self.p["ring"]]
        disks = self.client.list_items("disks")
        summary = summarize_sites(self.p["sites"], servers, nodes, disks)
        tasks = self.client.ring_tasks(self.p["ring"])
        backlog = None if tasks is None else sum(int(t.get("pending", 1)) for t in tasks)
        total = ring.get("diskspace_total") or 0
        used = ring.get("diskspace_used") or 0
        state = as_list(ring.get("state"))
        ring_out = {
            "name": ring.get("name", self.p["ring"]),
            "status": ring.get("status"),
            "state": state,
            "healthy": ring.get("status") == "OK" and state == ["RUN"],
            "diskspace_total": total,
            "diskspace_used": used,
            "used_percent": round(100.0 * used / total, 3) if total else None,
            "number_of_objects": ring.get("number_of_objects"),
        }
        return ring_out, summary, backlog

    def probe_sproxyd(self) -> list:
        out = []
        for e in self.p["sproxyd"]:
            row = {
                "site": e["site"],
                "url": e["url"],
                "alive": False,
                "latency_ms": None,
                "status_code": None,
                "error": None,
            }
            try:
                conf = self.client.sproxyd_conf(e["url"])
            except ScalityError as exc:
                row.update(error=str(exc), status_code=exc.status)
            else:
                row.update(alive=True, latency_ms=conf["latency_ms"])
            out.append(row)
        return out

    def canary_sites(self) -> tuple:
        sites, lost = self.p["sites"], self.p["lost_site"]
        write = self.p["canary_site"] or next(s for s in sites if s != lost)
        reads = [write]
        if self.p["canary_cross_site"]:
            reads += [s for s in sites if s not in (write, lost)]
        return write, reads

    def canary(self) -> dict:
        write, reads = self.canary_sites()
        out = {
            "performed": False,
            "skipped_reason": None,
            "site": write,
            "read_sites": reads,
            "key": None,
            "passed": False,
            "steps": [],
            "delete_423_retries": 0,
            "error": None,
        }
        if self.check_mode:
            out["skipped_reason"] = "check mode"
            return out
        if not self.p["canary"]:
            out["skipped_reason"] = "canary=false"
            return out
        endpoint = {}
        for site in reads:
            urls = [e["url"] for e in self.p["sproxyd"] if e["site"] == site]
            if not urls:
                out["skipped_reason"] = f"no sproxyd endpoint for {site}"
                return out
            endpoint[site] = urls[0]
        out["performed"] = True
        key = uuid.uuid4().hex.upper() + os.urandom(4).hex().upper()
        data = os.urandom(self.p["canary_size"])
        digest = hashlib.sha256(data).hexdigest()
        usermd = base64.b64encode(json.dumps({"zimbra_geo_canary": key, "sha256": digest}).encode()).decode()
        out["key"] = key
        written = False

        def step(name: str, func, *args) -> object:
            start = time.monotonic()
            result = func(*args)
            out["steps"].append({"step": name, "ok": True, "latency_ms": round((time.monotonic() - start) * 1000.0, 3)})
            return result

        try:
            step(f"put {write}", self.client.sproxyd_put, endpoint[write], key, data, usermd)
            written = True
            for site in reads:
                got = step(f"get {site}", self.client.sproxyd_get, endpoint[site], key)
                if got is None:
                    raise ScalityError(f"GET through {site} answered 404 for the object just written", kind="canary")
                body, headers = got
                if hashlib.sha256(body).hexdigest() != digest:
                    raise ScalityError(f"GET through {site}: SHA-256 differs from what was written", kind="canary")
                if headers.get("x-scal-usermd") != usermd:
                    raise ScalityError(
                        f"GET through {site}: user metadata differs from what was written", kind="canary"
                    )
            headers = step(f"head {write}", self.client.sproxyd_head, endpoint[write], key)
            if headers is None:
                raise ScalityError(f"HEAD through {write} answered 404", kind="canary")
            if headers.get("x-scal-usermd") != usermd:
                raise ScalityError(f"HEAD through {write}: user metadata differs", kind="canary")
            if headers.get("Content-Length") not in (None, str(len(data))):
                raise ScalityError(
                    f"HEAD through {write}: size {headers.get('Content-Length')}, not {len(data)}", kind="canary"
                )
            self._delete(endpoint[write], key, out)
            written = False
            for site in reads:
                self._await_404(site, endpoint[site], key, out)
            out["passed"] = True
        except ScalityError as exc:
            out["steps"].append({"step": "failed", "ok": False, "error": str(exc)})
            out["error"] = str(exc)
            if written:
                try:  # leave nothing behind
                    self.client.sproxyd_delete(endpoint[write], key)
                except ScalityError:
                    pass
        return out

    def _delete(self, endpoint: str, key: str, out: dict) -> None:
        deadline = time.monotonic() + self.p["canary_timeout"]
        pause = 0.1
        start = time.monotonic()
        while True:
            status = self.client.sproxyd_delete(endpoint, key)
            if status != 423:
                out["steps"].append(
                    {
                        "step": f"delete {out['site']}",
                        "ok": True,
                        "latency_ms": round((time.monotonic() - start) * 1000.0, 3),
                        "status": status,
                    }
                )
                return
            out["delete_423_retries"] += 1
            if time.monotonic() + pause > deadline:
                raise ScalityError(
                    f"DELETE answered 423 Locked {out['delete_423_retries']} times in {self.p['canary_timeout']:g} s",
                    kind="canary",
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _await_404(self, site: str, endpoint: str, key: str, out: dict) -> None:
        deadline = time.monotonic() + self.p["canary_timeout"]
        start = time.monotonic()
        pause = 0.05
        while self.client.sproxyd_get(endpoint, key) is not None:
            if time.monotonic() + pause > deadline:
                raise ScalityError(
                    f"the deleted canary is still readable through {site} after {self.p['canary_timeout']:g} s",
                    kind="canary",
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        out["steps"].append(
            {"step": f"404 {site}", "ok": True, "latency_ms": round((time.monotonic() - start) * 1000.0, 3)}
        )

    def run(self) -> dict:
        p = self.p
        sup = self.supervisor()
        ring = summary = backlog = None
        if sup["reachable"]:
            try:
                ring, summary, backlog = self.ring_state()
            except ScalityError as exc:
                sup.update(reachable=False, error=f"status answered but the ring could not be read: {exc}")
        endpoints = self.probe_sproxyd()
        canary = self.canary()
        copies = (p["replication_class"] + 1) // len(p["sites"])
        judged = verdict(
            p["mode"],
            p["sites"],
            p["lost_site"],
            sup,
            p["supervisor_site"],
            ring,
            summary,
            backlog,
            endpoints,
            canary,
            copies,
            p["max_backlog"],
            p["min_free_percent"],
        )
        sites = {}
        for site in p["sites"]:
            sites[site] = dict(summary[site]) if summary else {}
            sites[site]["sproxyd"] = [
                {"url": e["url"], "alive": e["alive"], "latency_ms": e["latency_ms"]}
                for e in endpoints
                if e["site"] == site
            ]
        return {
            "changed": False,
            "supervisor": sup,
            "ring": ring,
            "sites": sites,
            "backlog": backlog,
            "sproxyd": endpoints,
            "canary": canary,
            "verdict": judged,
        }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    for warning in unverified_tls_warnings(module.params):
        module.warn(warning)
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    problem = validate(module.params)
    if problem:
        module.fail_json(msg=problem)
    p = module.params
    try:
        client = ScalityClient(
            p["supervisor_url"],
            p["supervisor_username"],
            p["supervisor_password"],
            p["validate_certs"],
            p["ca_path"],
            p["timeout"],
            p["retries"],
        )
        result = RingInspector(client, p, module.check_mode).run()
    except ScalityError as exc:
        module.fail_json(msg=str(exc))
    if p["fail_on_unhealthy"] and not result["verdict"]["ok"]:
        module.fail_json(
            msg="Scality RING not fit for the {} failover: {}".format(
                p["mode"], "; ".join(result["verdict"]["reasons"])
            ),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
