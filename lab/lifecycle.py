"""Bringing a lab up and down, its status, reset and faults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import yaml

from lab import services
from lab.core import REPO, Host, Lab, LabError, sh
from lab.dns import Named

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def up(lab: Lab, progress: Progress = _quiet) -> dict[str, float]:
    """Clear away any stale lab of this name, then build a new one. Returns phase timings."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    if lab.exists():
        progress(f"clearing away the stale lab {lab.name!r}")
        for note in lab.teardown():
            progress(f"  {note}")
    timings["clear"] = time.monotonic() - t0

    t = time.monotonic()
    lab.dir.mkdir(parents=True, exist_ok=True)
    lab.dir.chmod(0o700)
    # The topology this lab is built from (profile, time scale, size): every later command on
    # this lab (reset, status, tests) reads it instead of the file's defaults.
    (lab.dir / "topology.yml").write_text(yaml.safe_dump(lab.topology, sort_keys=False))
    (lab.dir / "state.json").write_text(json.dumps({"status": "starting", "pid": os.getpid()}))
    lab.ca.create()
    _make_ssh_keys(lab)
    progress(f"network: {len(lab.hosts)} hosts on {len(lab.sites)} sites")
    lab.create_network()
    lab.create_host_filesystems()
    timings["network"] = time.monotonic() - t

    t = time.monotonic()
    progress("services: " + ", ".join(sorted({s for h in lab.hosts.values() for s in h.services})))
    jobs = [(h, services.get(name)) for h in lab.hosts.values() for name in h.services]
    for host, svc in jobs:
        svc.prepare(lab, host)

    def start(job: tuple[Host, services.Service]) -> None:
        job[1].start(lab, job[0])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(start, jobs))
    timings["services"] = time.monotonic() - t

    t = time.monotonic()
    inventory = write_inventory(lab)
    progress(f"inventory: {inventory}")
    (lab.dir / "state.json").write_text(json.dumps({"status": "up", "faults": []}))
    timings["inventory"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    return timings


def down(lab: Lab) -> list[str]:
    notes = lab.teardown()
    inv = inventory_dir(lab)
    if lab.name != "zg" and inv.exists():
        shutil.rmtree(inv, ignore_errors=True)
    return notes


def _make_ssh_keys(lab: Lab) -> None:
    ssh = lab.dir / "ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    key = ssh / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-{lab.name}", "-f", str(key)],
                   check=True)
    (ssh / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())


def inventory_dir(lab: Lab) -> Path:
    """The default lab's inventory is the repository's inventories/lab/; others' their own."""
    return REPO / "inventories" / "lab" if lab.name == "zg" else lab.dir / "inventory"


def write_inventory(lab: Lab) -> Path:
    inv = inventory_dir(lab)
    inv.mkdir(parents=True, exist_ok=True)
    for stale in ("hosts.yml", "group_vars"):
        p = inv / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    ssh = lab.dir / "ssh"
    known = []
    for h in lab.ssh_hosts():
        known.append(f"{h.address},{h.name} {services.Sshd.host_key(h)}")
    (ssh / "known_hosts").write_text("\n".join(known) + "\n")

    roles = ["ldap_masters", "mailbox", "mta", "proxy"]
    children: dict[str, Any] = {}
    for site in lab.sites:
        site_hosts = {}
        for h in lab.ssh_hosts():
            if h.site != site:
                continue
            # Per host, not in group_vars/all: the implicit localhost (where API modules
            # run) must keep the controller's Python, which has the client libraries.
            hv: dict[str, Any] = {"ansible_host": h.address, "ansible_python_interpreter": "/usr/bin/python3"}
            for name in h.services:
                hv.update(services.get(name).inventory_vars(lab, h))
            if "mailbox" in h.roles:
                other = [s for s in lab.sites if s != site][0]
                hv["zimbra_geo_mailbox_peer"] = h.name.replace(site, other, 1)
                hv["zimbra_geo_mailbox_volumes"] = mailbox_volumes(lab, h)
            site_hosts[h.name] = hv
        children[site] = {"hosts": site_hosts}
    for role in roles:
        children[role] = {"hosts": {h.name: None for h in lab.ssh_hosts() if role in h.roles}}
    (inv / "hosts.yml").write_text(
        "# Written by `python -m lab up` for the lab it describes; regenerated every time.\n"
        + yaml.safe_dump({"all": {"children": children}}, sort_keys=False)
    )

    gv = inv / "group_vars"
    (gv / "all").mkdir(parents=True)
    domain = lab.topology["domain"]
    suffix = lab.topology["ldap_suffix"]
    connection = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(ssh / "id_ed25519"),
        # ServerAlive: with ControlPersist, a cut link would otherwise hang a run forever.
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={ssh / 'known_hosts'} -o StrictHostKeyChecking=yes "
            "-o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ConnectTimeout=5 "
            f"-o ControlMaster=auto -o ControlPersist=120s -o ControlPath={ssh}/cp-%C"
        ),
    }
    platform: dict[str, Any] = {
        "zimbra_geo_sites": lab.sites,
        "zimbra_geo_active_site": lab.topology["active_site"],
        "zimbra_geo_domain": domain,
        "zimbra_geo_ca_path": str(lab.ca.cert_path),
        "zimbra_geo_ldap_suffix": suffix,
        "zimbra_geo_ldap_admin_dn": f"cn=admin,{suffix}",
        "zimbra_geo_ldap_admin_password": lab.secret("ldap_admin_password"),
        "zimbra_geo_ldap_config_password": lab.secret("ldap_config_password"),
        "zimbra_geo_dns_views": Named.views(lab),
        "zimbra_geo_lab_name": lab.name,
        "zimbra_geo_lab_dir": str(lab.dir),
    }
    # Appliance endpoints are global, keyed by site where they belong to one (so every host,
    # whatever its site, can address either site's appliances).
    for host in lab.hosts.values():
        for name in host.services:
            if host.site == "core" or "appliance" in host.roles:
                platform.update(services.get(name).inventory_vars(lab, host))
    _dump(gv / "all" / "connection.yml", connection, "How Ansible reaches the lab's hosts.")
    _dump(gv / "all" / "platform.yml", platform, "The lab platform: endpoints and credentials (lab only).")
    for site in lab.sites:
        _dump(gv / f"{site}.yml", site_vars(lab, site), f"Site {site}.")
    for f in gv.rglob("*.yml"):
        f.chmod(0o600)
    return inv


def mailbox_volumes(lab: Lab, host: Host) -> list[dict[str, Any]]:
    """The SAN volumes of a mailbox server and where it mounts them.

    In the lab a volume is a directory of the ONTAP emulator, bind-mounted; on a real platform
    ``src`` is the LUN's multipath device and ``fstype`` its file system.
    """
    short = host.name.split("-", 1)[1]
    clusters: dict[str, Any] = {}
    for h in lab.hosts.values():
        if "ontap" in h.services:
            clusters.update(services.get("ontap").inventory_vars(lab, h).get("zimbra_geo_ontap_clusters", {}))
    data_dir = clusters.get(host.site, {}).get("data_dir", str(lab.dir / "san" / f"{host.site}-ontap"))
    return [
        {"name": name, "volume": f"{short}_{name}", "path": f"/opt/zimbra/{name}",
         "src": f"{data_dir}/{short}_{name}", "fstype": "none", "opts": "bind"}
        for name in ("db", "index")
    ]


def site_vars(lab: Lab, site: str) -> dict[str, Any]:
    result: dict[str, Any] = {"zimbra_geo_site": site}
    # Outgoing mail leaves each site through its own MTAs to the site's relay; the lab has one
    # relay outside both sites (lab.smtp_sink), which records which MTA handed each message.
    from lab.smtp_sink import SmtpSink

    relays = [h for h in lab.hosts.values() if "smtp_sink" in h.services]
    if relays:
        result["zimbra_geo_outbound_relay"] = SmtpSink.relay(relays[0])
    return result


def _dump(path: Path, data: dict[str, Any], title: str) -> None:
    path.write_text(f"---\n# {title} Written by `python -m lab up`.\n" + yaml.safe_dump(data, sort_keys=False))


def ensure_up(lab: Lab) -> None:
    try:
        state = json.loads((lab.dir / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("status") != "up" or not lab.namespaces():
        raise LabError(f"the lab {lab.name!r} is not up: run `python -m lab up`")


def status(lab: Lab) -> list[dict[str, Any]]:
    """One row per component: host, service, address, up, detail."""
    rows: list[dict[str, Any]] = []
    for site in lab.sites:
        up_ = lab.site_link_up(site)
        rows.append({"component": f"link {site}", "host": "controller", "address": lab.site_router(site),
                     "ok": up_, "detail": "up" if up_ else "cut"})

    def check(job: tuple[Host, str]) -> dict[str, Any]:
        host, name = job
        ok, detail = services.get(name).check(lab, host)
        if not lab.host_link_up(host):
            ok, detail = False, f"host stopped (link down); {detail}"
        return {"component": name, "host": host.name, "address": host.address, "ok": ok, "detail": detail}

    jobs = [(h, s) for h in lab.hosts.values() for s in h.services]
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows.extend(pool.map(check, jobs))
    return rows


def reset(lab: Lab, progress: Progress = _quiet) -> None:
    """Back to the initial state: links up, every service reset (zones, directories, emulators)."""
    heal(lab)
    # Volumes a playbook mounted on the mailbox servers come off before the storage resets.
    for h in lab.hosts_with("mailbox"):
        for vol in mailbox_volumes(lab, h):
            # Mounts may be stacked: unmount until nothing is mounted there.
            for _attempt in range(10):
                if h.run(["findmnt", "--mountpoint", vol["path"]], check=False).returncode != 0:
                    break
                h.run(["umount", "-l", vol["path"]], check=False)
    jobs = [(h, services.get(n)) for h in lab.hosts.values() for n in h.services]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda j: j[1].reset(lab, j[0]), jobs))
    for h in lab.ssh_hosts():
        # Private files of the hosts back to their initial content.
        (h.dir / "etc" / "fstab").write_text("# lab host's private fstab\n")
    progress("reset done")


def heal(lab: Lab) -> None:
    for site in lab.sites:
        lab.set_site_link(site, True)
    for host in lab.hosts.values():
        if not lab.host_link_up(host):
            lab.set_host_link(host, True)
        for name in host.services:
            services.get(name).heal(lab, host)


def resolve_target(lab: Lab, target: str) -> tuple[Host, str | None]:
    """``HOST`` or ``HOST/SERVICE`` -> (host, service or None)."""
    hname, _, sname = target.partition("/")
    if hname not in lab.hosts:
        raise LabError(f"unknown host {hname!r}; hosts: {', '.join(lab.hosts)}")
    host = lab.hosts[hname]
    if sname and sname not in host.services:
        raise LabError(f"{hname} runs no {sname!r}; it runs: {', '.join(host.services) or 'nothing'}")
    return host, sname or None


def fault_stop(lab: Lab, target: str) -> str:
    host, sname = resolve_target(lab, target)
    if sname:
        services.get(sname).stop(lab, host)
        return f"{sname} stopped on {host.name}"
    lab.set_host_link(host, False)
    return f"{host.name} stopped (unreachable)"


def fault_start(lab: Lab, target: str) -> str:
    host, sname = resolve_target(lab, target)
    if sname:
        svc = services.get(sname)
        if not svc.running(lab, host):
            svc.start(lab, host)
        return f"{sname} started on {host.name}"
    lab.set_host_link(host, True)
    return f"{host.name} started"


def run_ansible(lab: Lab, argv: list[str]) -> int:
    """Run an Ansible command in the controller namespace against this lab's inventory."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    return subprocess.call(["ip", "netns", "exec", lab.ctl_ns] + argv + ["-i", str(inventory_dir(lab))],
                           env=env, cwd=REPO)


__all__ = ["up", "down", "status", "reset", "heal", "fault_stop", "fault_start", "ensure_up", "sh"]
