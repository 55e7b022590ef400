"""Benchmark: planned failover, replication-verify and the peer playbook at several platform sizes.

    python bench/bench_failover.py [--lab zgb] [--sizes 1,5,20] [--profiles fast,realistic]
                                   [--time-scale 1.0] [--peer-sizes 1,5,20] [--no-peer]
                                   [--realistic-sizes 1,5] [--out reports/bench]

For each profile and size (mailbox servers per site, two volumes each) it brings the lab up
(`python -m lab up --profile P --time-scale T --mailbox-servers N`), builds the platform,
then times, each as one `ansible-playbook` run:

* ``replication-verify`` on the built platform;
* ``failover -l dc2`` (planned), with the time of each step from the run record;
* the peer (bench/peer/failover.yml: the same failover with netapp.ontap, community.general,
  ansible.posix and ansible.builtin only), after a lab reset and a new build.

After each failover it reads the platform's end state (SnapMirror relationships on both
clusters, every service name in both DNS views, zmcontrol status and the volume mounts of
every Zimbra host) and compares the two: the peer must end where the collection ends.

Reported: wall time of each run, total ÷ critical path (lab/profiles.py) under `realistic`,
the automation's own seconds (total − critical path) under `fast`, peer ÷ collection, the
controller's peak memory (the whole ansible-playbook process tree, summed RSS sampled every
0.2 s from /proc, and the largest single process), the CPU seconds of the controller (the
playbook's process tree) and of the whole machine (the lab's hosts and emulators too: on this
machine they share the controller's cores, on a real platform each server has its own), and the
load average around each run.
Tables on stdout, everything as JSON and a plot (PNG, if matplotlib is installed:
``pip install -r bench/requirements.txt``) under --out. Numbers only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import profiles  # noqa: E402 - after the path set-up
from lab.core import Lab, in_netns  # noqa: E402

PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")
CORES = os.cpu_count() or 1


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the process tree's memory
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                out += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self.peak_one_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            todo, total = [self.pid], 0
            while todo:
                pid = todo.pop()
                rss = _rss_kib(pid)
                total += rss
                self.peak_one_kib = max(self.peak_one_kib, rss)
                todo += _children(pid)
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------ running things
def lab_cli(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "lab", "--name", name, *args], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"lab {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def run_playbook(lab: Lab, inventory: str, playbook: str, args: list[str], logfile: Path) -> dict[str, Any]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    argv = ["ip", "netns", "exec", lab.ctl_ns, PLAYBOOK, "-i", inventory, str(ROOT / playbook), *args]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    # CPU: the playbook's whole process tree (workers, ssh clients) is reaped into this process's
    # children's usage; the machine's busy time (/proc/stat) also holds the lab's hosts and
    # emulators, which on a real platform run on servers of their own.
    children_before, busy_before = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    with open(logfile, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        memory = TreeMemory(proc.pid)
        rc = proc.wait()
        memory.stop()
    seconds = time.monotonic() - started
    children_after, busy_after = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    controller_cpu = (children_after.ru_utime + children_after.ru_stime
                      - children_before.ru_utime - children_before.ru_stime)
    result = {"playbook": playbook, "args": args, "rc": rc, "seconds": round(seconds, 1),
              "controller_cpu_s": round(controller_cpu, 1),
              "machine_cpu_s": round(busy_after - busy_before, 1),
              "peak_tree_mib": round(memory.peak_kib / 1024, 1),
              "peak_process_mib": round(memory.peak_one_kib / 1024, 1),
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2), "log": str(logfile)}
    log(f"  {playbook} {' '.join(args)}: rc {rc} in {seconds:.1f} s, peak {result['peak_tree_mib']} MiB "
        f"(load {result['load_before']} -> {result['load_after']})")
    if rc != 0:
        raise SystemExit(f"{playbook} failed (exit {rc}); see {logfile}")
    return result


def machine_busy_seconds() -> float:
    """CPU seconds the machine has spent busy (every CPU, every process) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_record_steps(report_dir: Path) -> dict[str, float]:
    records = sorted(report_dir.glob("failover-dc2-*.json"), key=lambda p: p.stat().st_mtime)
    if not records:
        return {}
    record = json.loads(records[-1].read_text())
    steps = {s["name"]: round(s["ended"] - s["started"], 2) for s in record.get("steps", [])}
    steps["_run_record_total"] = round(float(record.get("duration_seconds", 0.0)), 2)
    return steps


# ------------------------------------------------------------------ the platform's end state
def end_state(lab: Lab, inventory: Path) -> dict[str, Any]:
    """What a failover leaves: mirrors, DNS in each view, Zimbra status and mounts per host."""
    import dns.message
    import dns.query
    import dns.tsigkeyring
    import requests

    gv = yaml.safe_load((inventory / "group_vars" / "all" / "platform.yml").read_text())
    sites = gv["zimbra_geo_sites"]
    mailboxes = sorted(h.name for h in lab.hosts_with("mailbox"))

    def remote() -> dict[str, Any]:
        state: dict[str, Any] = {"mirrors": {}, "dns": {}}
        for site, cl in gv["zimbra_geo_ontap_clusters"].items():
            reply = requests.get(
                f"https://{cl['hostname']}:{cl.get('port', 443)}/api/snapmirror/relationships",
                params={"fields": "source.path,destination.path,state,healthy"},
                auth=(gv["zimbra_geo_ontap_username"], gv["zimbra_geo_ontap_password"]),
                verify=gv["zimbra_geo_ca_path"], timeout=30)
            reply.raise_for_status()
            state["mirrors"][site] = sorted(
                f"{r['source']['path']} -> {r['destination']['path']} {r['state']} "
                f"{'healthy' if r.get('healthy') else 'unhealthy'}" for r in reply.json()["records"])
        names = ["mail", "smtp", "webmail", "imap"] + sorted({m.split("-", 1)[1] for m in mailboxes})
        for view, v in gv["zimbra_geo_dns_views"].items():
            ring = dns.tsigkeyring.from_text({v["key_name"]: (v["key_algorithm"], v["key_secret"])})
            for name in names:
                query = dns.message.make_query(f"{name}.{v['zone']}", "A")
                query.use_tsig(ring, keyname=v["key_name"], algorithm=v["key_algorithm"])
                answer = dns.query.tcp(query, v["server"], port=int(v.get("port", 53)), timeout=10)
                state["dns"][f"{name}/{view}"] = sorted(str(rd) for rrset in answer.answer for rd in rrset)
        return state

    state = in_netns(lab.ctl_ns, remote)
    state["zimbra"], state["mounts"] = {}, {}
    for site in sites:
        for h in lab.hosts.values():
            if h.site != site or not {"mailbox", "mta", "proxy"} & set(h.roles):
                continue
            rc = h.run(["su", "-", "zimbra", "-c", "/opt/zimbra/bin/zmcontrol status"], check=False,
                       capture_output=True, text=True).returncode
            state["zimbra"][h.name] = "running" if rc == 0 else "stopped"
            if "mailbox" in h.roles:
                state["mounts"][h.name] = [
                    path for path in ("/opt/zimbra/db", "/opt/zimbra/index")
                    if h.run(["findmnt", "--mountpoint", path], check=False, capture_output=True).returncode == 0]
    return state


def diff_states(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for section in sorted(set(a) | set(b)):
        for key in sorted(set(a.get(section, {})) | set(b.get(section, {}))):
            va, vb = a.get(section, {}).get(key), b.get(section, {}).get(key)
            if va != vb:
                out.append(f"{section}/{key}: collection {va} != peer {vb}")
    return out


# ------------------------------------------------------------------ one size under one profile
def measure(args: argparse.Namespace, profile: str, size: int, outdir: Path) -> dict[str, Any]:
    scale = args.time_scale if profile == "realistic" else 1.0
    topology = profiles.resolve(yaml.safe_load((ROOT / "lab" / "topology.yml").read_text()), profile, scale, size)
    critical = profiles.critical_path_seconds(topology)
    log(f"{profile} (time scale {scale:g}), {size} mailbox server(s) per site: critical path {critical:.1f} s")
    lab_cli(args.lab, "up", "--profile", profile, "--time-scale", str(scale), "--mailbox-servers", str(size))
    lab = Lab(args.lab)
    inventory = Path(lab_cli(args.lab, "inventory"))
    tag = f"{profile}-{size}"
    reports = outdir / f"reports-{tag}"
    reports.mkdir(parents=True, exist_ok=True)
    extra = ["-e", f"zimbra_geo_report_dir={reports}"]
    row: dict[str, Any] = {"profile": profile, "time_scale": scale, "mailbox_servers": size,
                           "volumes_per_site": 2 * size, "critical_path": round(critical, 2)}
    row["build"] = run_playbook(lab, str(inventory), "playbooks/site_build.yml", extra, outdir / f"{tag}-build.log")
    row["verify"] = run_playbook(lab, str(inventory), "playbooks/replication_verify.yml", extra,
                                 outdir / f"{tag}-verify.log")
    row["failover"] = run_playbook(lab, str(inventory), "playbooks/failover.yml", ["-l", "dc2", *extra],
                                   outdir / f"{tag}-failover.log")
    row["failover"]["steps"] = run_record_steps(reports)
    ours = end_state(lab, inventory)
    row["end_state"] = ours
    if args.verify_after:
        row["verify_after"] = run_playbook(lab, str(inventory), "playbooks/replication_verify.yml", extra,
                                           outdir / f"{tag}-verify-after.log")
    if size in args.peer_sizes and not args.no_peer:
        lab_cli(args.lab, "reset")
        run_playbook(lab, str(inventory), "playbooks/site_build.yml", extra, outdir / f"{tag}-peer-build.log")
        row["peer"] = run_playbook(lab, str(inventory), "bench/peer/failover.yml",
                                   ["-e", "peer_target=dc2", "-e", "peer_old=dc1"], outdir / f"{tag}-peer.log")
        theirs = end_state(lab, inventory)
        row["peer"]["end_state_differences"] = diff_states(ours, theirs)
        if row["peer"]["end_state_differences"]:
            log("  the peer ended elsewhere: " + "; ".join(row["peer"]["end_state_differences"]))
        else:
            log("  the peer ended in the same state as the collection")
    return row


# ------------------------------------------------------------------ output
def tables(rows: list[dict[str, Any]]) -> str:
    lines = ["", "Planned failover -l dc2 (wall seconds of ansible-playbook; load = 1-min load average before)",
             f"{'profile':<10} {'mbox/site':>9} {'crit.path':>9} {'failover':>9} {'ratio':>6} {'own s':>7} "
             f"{'peer':>8} {'peer/ours':>9} {'same end':>8} {'verify':>7} {'peak MiB':>9} {'load':>5}"]
    for r in rows:
        fo, peer = r["failover"], r.get("peer")
        # total / critical path means something only where the platform's waits are real.
        ratio = f"{fo['seconds'] / r['critical_path']:.2f}" if r["profile"] == "realistic" else "-"
        lines.append(
            f"{r['profile']:<10} {r['mailbox_servers']:>9} {r['critical_path']:>9.1f} {fo['seconds']:>9.1f} "
            f"{ratio:>6} "
            f"{fo['seconds'] - r['critical_path']:>7.1f} "
            f"{(peer['seconds'] if peer else float('nan')):>8.1f} "
            f"{(peer['seconds'] / fo['seconds'] if peer else float('nan')):>9.2f} "
            f"{('yes' if peer and not peer['end_state_differences'] else ('-' if not peer else 'NO')):>8} "
            f"{r['verify']['seconds']:>7.1f} {fo['peak_tree_mib']:>9.1f} {fo['load_before']:>5.1f}")
    steps = [s for s in rows[0]["failover"]["steps"] if not s.startswith("_")] if rows else []
    if steps:
        lines += ["", "Failover steps (seconds, from the run record)",
                  f"{'step':<20}" + "".join(f" {r['profile'][:4] + '/' + str(r['mailbox_servers']):>10}" for r in rows)]
        for s in steps:
            lines.append(f"{s:<20}" + "".join(f" {r['failover']['steps'].get(s, float('nan')):>10.1f}" for r in rows))
    lines += ["", "Peak controller memory, MiB (whole ansible-playbook tree / largest process)",
              f"{'profile':<10} {'mbox/site':>9} {'failover':>15} {'verify':>15} {'peer':>15}"]
    for r in rows:
        cells = [f"{x['peak_tree_mib']:.0f} / {x['peak_process_mib']:.0f}" if x else "-"
                 for x in (r["failover"], r["verify"], r.get("peer"))]
        lines.append(f"{r['profile']:<10} {r['mailbox_servers']:>9} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}")
    lines += ["", "CPU seconds during the failover: the controller (ansible-playbook and everything it ran) /",
              "the whole machine (the controller plus the lab's hosts: sshd, modules, the Zimbra stand-in, emulators)",
              f"(floor: the machine's CPU seconds over its {CORES} cores, the least wall time they allow; "
              "busy: the share of the cores in use)",
              f"{'profile':<10} {'mbox/site':>9} {'wall s':>8} {'controller':>11} {'machine':>9} {'lab':>7} "
              f"{'peer ctl':>9} {'floor s':>8} {'busy':>5}"]
    for r in rows:
        fo, peer = r["failover"], r.get("peer")
        ctl, machine = fo.get("controller_cpu_s", float("nan")), fo.get("machine_cpu_s", float("nan"))
        peer_ctl = peer.get("controller_cpu_s", float("nan")) if peer else float("nan")
        lines.append(f"{r['profile']:<10} {r['mailbox_servers']:>9} {fo['seconds']:>8.1f} {ctl:>11.1f} "
                     f"{machine:>9.1f} {machine - ctl:>7.1f} {peer_ctl:>9.1f} {machine / CORES:>8.1f} "
                     f"{machine / CORES / fo['seconds']:>5.0%}")
    fast = {r["mailbox_servers"]: r["failover"] for r in rows if r["profile"] == "fast"}
    if 1 in fast and len(fast) > 1:
        lines += ["", "fast: failover relative to 1 mailbox server per site: wall "
                  + ", ".join(f"{n}/site {f['seconds'] / fast[1]['seconds']:.2f}x" for n, f in sorted(fast.items()))]
        if all("machine_cpu_s" in f for f in fast.values()):
            lines.append("fast: the machine's CPU relative to 1 mailbox server per site: "
                         + ", ".join(f"{n}/site {f['machine_cpu_s'] / fast[1]['machine_cpu_s']:.2f}x"
                                     for n, f in sorted(fast.items())))
        if all("controller_cpu_s" in f for f in fast.values()):
            lines.append("fast: controller CPU relative to 1 mailbox server per site: "
                         + ", ".join(f"{n}/site {f['controller_cpu_s'] / fast[1]['controller_cpu_s']:.2f}x"
                                     for n, f in sorted(fast.items())))
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -r bench/requirements.txt): no plot")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for profile in sorted({r["profile"] for r in rows}):
        mine = sorted((r for r in rows if r["profile"] == profile), key=lambda r: r["mailbox_servers"])
        sizes = [r["mailbox_servers"] for r in mine]
        ax.plot(sizes, [r["failover"]["seconds"] for r in mine], "o-", label=f"zimbra_geo failover ({profile})")
        peers = [(r["mailbox_servers"], r["peer"]["seconds"]) for r in mine if r.get("peer")]
        if peers:
            ax.plot([n for n, _ in peers], [s for _, s in peers], "s--", label=f"peer playbook ({profile})")
        ax.plot(sizes, [r["critical_path"] for r in mine], "x:", label=f"critical path ({profile})")
    ax.set_xlabel("mailbox servers per site (2 volumes each)")
    ax.set_ylabel("planned failover, seconds")
    ax.set_title("Failover time against platform size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--lab", default=os.environ.get("ZG_LAB_NAME", "zgb"))
    parser.add_argument("--sizes", type=ints, default=[1, 5, 20])
    parser.add_argument("--realistic-sizes", type=ints, default=None,
                        help="sizes under realistic (default: --sizes)")
    parser.add_argument("--profiles", default="fast,realistic")
    parser.add_argument("--time-scale", type=float, default=1.0, help="for realistic")
    parser.add_argument("--peer-sizes", type=ints, default=None, help="sizes where the peer runs (default: all)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--verify-after", action="store_true", help="also run replication-verify after the failover")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up at the end")
    args = parser.parse_args()
    args.peer_sizes = args.peer_sizes if args.peer_sizes is not None else args.sizes
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = args.out / f"failover-{stamp}-{args.lab}"  # two labs may run side by side
    outdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        for profile in args.profiles.split(","):
            sizes = args.realistic_sizes if profile == "realistic" and args.realistic_sizes else args.sizes
            for size in sizes:
                rows.append(measure(args, profile, size, outdir))
                (outdir / "results.json").write_text(json.dumps(rows, indent=1))
    finally:
        if not args.keep_lab:
            subprocess.run([sys.executable, "-m", "lab", "--name", args.lab, "down"], cwd=ROOT, check=False)
    text = tables(rows)
    print(text)
    (outdir / "results.txt").write_text(text + "\n")
    png = plot(rows, outdir / "failover-vs-size.png")
    log(f"results in {outdir}" + (f"; plot {png}" if png else ""))


if __name__ == "__main__":
    main()
