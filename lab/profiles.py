"""Latency profiles of the lab and the unavoidable critical path of a failover.

``lab/topology.yml`` names the profiles (``profiles:``) and the default one (``profile:``).
A profile gives the emulators' waits: the ONTAP emulator's job, state-transition and transfer
latencies, and the Zimbra stand-in's start and stop time per process, grouped by the service
role that runs the process. ``resolve`` turns the file plus the choices made at ``lab up``
(profile, time scale, mailbox servers per site) into the topology the lab is built from:
``ontap.latencies`` and ``zimbra.timings`` filled in, which is what the ONTAP emulator and the
stand-in read.

``critical_path`` lists the steps of a planned failover that cannot overlap, each at the
latency the profile gives it: a lower bound on any automation's failover time on that
platform. Steps that can run in parallel (the same step on every mailbox server, every
relationship's transition) count once, at their slowest member.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from lab.zimbra.standin import config as standin

# Durations (seconds) scaled by the time scale; transfer_rate (bytes/s) is divided by it.
_ONTAP_DURATIONS = ("job_start", "transition", "transfer_min")
MAX_MAILBOX_SERVERS = 150


class ProfileError(ValueError):
    """A profile, time scale or platform size the lab cannot build."""


def role_processes(role: str) -> list[str]:
    """The stand-in processes `zmcontrol start` brings up on a host of `role`, in order."""
    scripts: list[str] = []
    services = sorted(set(standin.ROLE_SERVICES[role]) | {"zmconfigd"},
                      key=lambda s: (standin.START_ORDER.get(s, 999), s))
    for service in services:
        script = standin.SERVICE_CTL[service]
        members = standin.GROUP_CTL[script][0] if script in standin.GROUP_CTL else [script]
        for member in members:
            if member not in scripts:
                scripts.append(member)
    return [standin.UNIT_CTL[s][0] for s in scripts]


def zimbra_timings(profile: dict[str, Any], scale: float = 1.0) -> dict[str, dict[str, float]]:
    """The stand-in's per-process ``timings`` from a profile's per-role tables."""
    out: dict[str, dict[str, float]] = {}
    for table in (profile.get("zimbra") or {}).values():
        for process, phases in (table or {}).items():
            out[process] = {phase: round(float(secs) * scale, 4) for phase, secs in phases.items()}
    return out


def ontap_latencies(profile: dict[str, Any], scale: float = 1.0) -> dict[str, float]:
    values = dict(profile.get("ontap") or {})
    for key in _ONTAP_DURATIONS:
        if key in values:
            values[key] = round(float(values[key]) * scale, 4)
    if float(values.get("transfer_rate", 0) or 0) > 0:
        # The same bytes take scale times as long: the link looks 1/scale times as fast.
        values["transfer_rate"] = float(values["transfer_rate"]) / scale
    return values


def resolve(topology: dict[str, Any], profile: str | None = None, time_scale: float | None = None,
            mailbox_servers: int | None = None) -> dict[str, Any]:
    """The topology to build: the chosen profile applied, scaled, and the platform sized."""
    topo = copy.deepcopy(topology)
    profiles = topo.get("profiles") or {}
    name = profile or topo.get("profile") or "lab"
    if name not in profiles:
        raise ProfileError(f"unknown latency profile {name!r}; profiles: {', '.join(profiles) or 'none'}")
    scale = 1.0 if time_scale is None else float(time_scale)
    if not 0 < scale <= 10:
        raise ProfileError(f"the time scale must be above 0 and at most 10, not {time_scale}")
    chosen = profiles[name]
    topo["profile"] = name
    topo["time_scale"] = scale
    topo.setdefault("ontap", {})["latencies"] = ontap_latencies(chosen, scale)
    topo.setdefault("zimbra", {})["timings"] = zimbra_timings(chosen, scale)
    if mailbox_servers is not None:
        if not 1 <= int(mailbox_servers) <= MAX_MAILBOX_SERVERS:
            raise ProfileError(f"mailbox servers per site: 1 to {MAX_MAILBOX_SERVERS}, not {mailbox_servers}")
        for site in topo["sites"].values():
            site["mailbox_servers"] = int(mailbox_servers)
    return topo


@dataclass
class Step:
    step: str  # the failover's step name (as in the run record)
    what: str
    seconds: float


def _timing(timings: dict[str, dict[str, float]], process: str, phase: str) -> float:
    value = (timings.get(process) or {}).get(phase)
    if value is None:
        value = (timings.get("default") or {}).get(phase, 0.0)
    return float(value)


def host_seconds(timings: dict[str, dict[str, float]], role: str, phase: str) -> float:
    """How long `zmcontrol start|stop` takes on a host of `role`: its processes one by one."""
    return sum(_timing(timings, p, phase) for p in role_processes(role))


def critical_path(topology: dict[str, Any]) -> list[Step]:
    """The steps of a planned failover that cannot overlap, at the resolved topology's latencies.

    Order is the failover's: stop the old mailboxes (all servers at once), final update of
    every volume (all relationships at once), quiesce then break (each a job, then the state
    lands), DNS updates, start the new site (all hosts at once, each host's processes in
    Zimbra's order), resume mail (memcached restart and proxy reload on the new proxies), stop
    the old site's MTAs and proxies, then the reverse resync that protects the new site.
    Unmounting, mounting, DNS and LDAP are milliseconds on any platform.
    """
    lat = (topology.get("ontap") or {}).get("latencies") or {}
    timings = (topology.get("zimbra") or {}).get("timings") or {}
    net = (topology.get("profiles", {}).get(topology.get("profile", ""), {}) or {}).get("network") or {}
    scale = float(topology.get("time_scale", 1.0))
    job = float(lat.get("job_start", 0.0))
    transition = float(lat.get("transition", 0.0))
    rate = float(lat.get("transfer_rate", 0.0) or 0.0)
    changed = float(lat.get("changed_bytes", 0.0) or 0.0)
    transfer = max(float(lat.get("transfer_min", 0.0)), changed / rate if rate > 0 else 0.0)
    dns = float(net.get("dns_update", 0.0)) * scale
    views = 2
    mta_proxy_stop = max(host_seconds(timings, "mta", "stop"), host_seconds(timings, "proxy", "stop"))
    start = max(host_seconds(timings, r, "start") for r in ("mailbox", "mta", "proxy"))
    memcached = _timing(timings, "memcached", "stop") + _timing(timings, "memcached", "start")
    nginx = _timing(timings, "nginx", "stop") + _timing(timings, "nginx", "start")
    return [
        Step("stop_old_mailboxes", "zmcontrol stop, every old mailbox server at once",
             host_seconds(timings, "mailbox", "stop")),
        Step("final_update", "SnapMirror update of every volume at once: job, transfer", job + transfer),
        Step("break_mirrors", "quiesce (job, state lands) then break (job, state lands)", 2 * (job + transition)),
        Step("update_dns", f"one signed update per view ({views} views)", views * dns),
        Step("start_new_site", "zmcontrol start, every new host at once", start),
        Step("resume_mail", "memcached restart, then proxy reload", memcached + nginx),
        Step("old_site_standby", "zmcontrol stop on the old MTAs and proxies at once", mta_proxy_stop),
        Step("protect_new_site", "reverse resync: job, then the resync transfer", job + transfer),
    ]


def critical_path_seconds(topology: dict[str, Any]) -> float:
    return sum(s.seconds for s in critical_path(topology))


def format_table(steps: list[Step]) -> str:
    width = max(len(s.step) for s in steps)
    lines = [f"{'step':<{width}}  {'seconds':>8}  cannot overlap because"]
    lines += [f"{s.step:<{width}}  {s.seconds:8.2f}  {s.what}" for s in steps]
    lines.append(f"{'total':<{width}}  {sum(s.seconds for s in steps):8.2f}")
    return "\n".join(lines)
