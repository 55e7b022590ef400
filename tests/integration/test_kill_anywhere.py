"""Kill anywhere: a failover or failback killed (SIGKILL of ansible-playbook and its whole
process group) at any step boundary converges when it is simply run again.

The steps are read from the roles themselves (roles/site_failover/tasks/main.yml and
roles/site_failback/tasks/main.yml), so a new step is a new kill point without touching this
file. A boundary is seen in the run's own output: the task that appends step N to the run
record has finished.

Which boundaries (``ZG_KILL_MATRIX``), as a chain per playbook: run 1 is killed at the first
kill point, its re-run at the next, ..., the last re-run runs to the end, so every re-run
starts from a killed run.

- default: every step's boundary once; the last re-run of each chain is limited to one host
  of the site (``-l dc2-mbox1``), the run's only worker. The failover chain kills after its
  odd-numbered steps; the failback chain after its own steps and after the even-numbered
  steps of the failover it nests (the same step files, run in the failback's context).
- ``chain``: every boundary of both playbooks.
- ``full``: ``chain``, plus the exhaustive variant: for each boundary of each playbook, a
  killed run then a full re-run, failover and failback alternating.

Throughout, a monitor thread reads both sites' mailbox processes (the stand-in's pid files,
checked against /proc) every 50 ms and records any moment when both sites run one. Before
every run a message goes through every MTA that accepts it and an LDAP entry is written;
after convergence every acknowledged message is in the active site's mailbox and every entry
on all four masters.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import smtplib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ldap3
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "molecule" / "failover_shared"
sys.path.insert(0, str(SHARED))
import checks  # noqa: E402  (the failover scenarios' out-of-band checks)

MATRIX = os.environ.get("ZG_KILL_MATRIX", "")
SITES = ("dc1", "dc2")
BOUNDARY = "Append the step to the run record - "
RUN_TIMEOUT = 900  # seconds: a hung run is killed and fails the test


# --------------------------------------------------------------------- the steps
def role_steps(role: str) -> list[str]:
    """The recorded steps of a role, in order, as its tasks/main.yml lists them."""
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())

    def walk(items: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        for task in items:
            if "block" in task:
                out += walk(task["block"])  # not rescue/always: they record no step
                continue
            step = (task.get("vars") or {}).get("site_failover_step")
            include = task.get("ansible.builtin.include_role") or task.get("ansible.builtin.import_role") or {}
            if step:
                out.append(step)
            elif include.get("name") == "mailops.zimbra_geo.site_failover" and "tasks_from" not in include:
                out += role_steps("site_failover")  # the whole failover, nested
        return out

    return walk(tasks)


STEPS = {"failover.yml": role_steps("site_failover"), "failback.yml": role_steps("site_failback")}
TARGET = {"failover.yml": "dc2", "failback.yml": "dc1"}


def test_steps_are_read_from_the_roles():
    failover, failback = STEPS["failover.yml"], STEPS["failback.yml"]
    assert failover[0] == "platform_state" and failover[-1] == "post_checks", failover
    assert len(set(failover)) == len(failover), failover
    # The failback nests the whole failover between its own steps.
    start = failback.index(failover[0])
    assert failback[start:start + len(failover)] == failover, failback
    assert len(failback) > len(failover)
    for step in failover:
        assert (REPO / "roles" / "site_failover" / "tasks" / f"{step}.yml").is_file(), step


# --------------------------------------------------------------------- the monitor
class MailboxMonitor(threading.Thread):
    """Polls both sites' mailbox processes (mysqld, mailboxd) every 50 ms; records overlaps."""

    PROCESSES = ("mysqld", "mailboxd")

    def __init__(self, lab: Any) -> None:
        super().__init__(daemon=True)
        self.logs = {site: [h.dir / "opt-zimbra" / "log" for h in lab.core.hosts_with("mailbox", site)]
                     for site in SITES}
        self.samples = 0
        self.overlaps: list[tuple[float, dict[str, list[str]]]] = []
        self.done = threading.Event()

    @staticmethod
    def _alive(log: Path, process: str) -> bool:
        try:
            pid = int((log / f"{process}.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        return f"zmstandin-{process}".encode() in cmdline

    def running(self) -> dict[str, list[str]]:
        return {site: [f"{log.parent.parent.name}/{p}" for log in logs for p in self.PROCESSES if self._alive(log, p)]
                for site, logs in self.logs.items()}

    def run(self) -> None:
        while not self.done.is_set():
            now = self.running()
            self.samples += 1
            if all(now.values()):
                self.overlaps.append((time.time(), now))
            self.done.wait(0.05)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)


# --------------------------------------------------------------------- runs
@dataclass
class Run:
    argv: list[str]
    rc: int | None = None
    killed_after: str | None = None
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def recorded(self) -> list[str]:
        return [line.split(BOUNDARY, 1)[1].rstrip(" *]\n") for line in self.lines
                if line.startswith("TASK [") and BOUNDARY in line]

    def tail(self, count: int = 60) -> str:
        return "".join(self.lines[-count:])


class Platform:
    """The lab as the test drives it: runs, traffic, end state."""

    def __init__(self, lab: Any, report_dir: Path) -> None:
        self.lab = lab
        self.report_dir = report_dir
        self.variables = lab.inventory_vars()
        self.mail: list[str] = []
        self.entries: list[str] = []
        self.writes = 0

    def argv(self, playbook: str, limit: str | None) -> list[str]:
        argv = [str(Path(sys.executable).parent / "ansible-playbook"),
                "-i", str(self.lab.inventory), "-i", str(SHARED / "inventory" / "dns-records.yml"),
                "-e", f"zimbra_geo_report_dir={self.report_dir}", str(REPO / "playbooks" / playbook)]
        return argv + (["-l", limit] if limit else [])

    def run(self, playbook: str, limit: str | None = None, kill_at: int | None = None) -> Run:
        """Run a playbook; with kill_at=N, SIGKILL its process group once step N is recorded."""
        run = Run(self.argv(playbook, limit))
        # Unbuffered: each line arrives as printed, so the kill lands at the boundary itself,
        # not at the next block of output.
        proc = subprocess.Popen(run.argv, cwd=REPO, env=dict(self.lab.env(), PYTHONUNBUFFERED="1"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        watchdog = threading.Timer(RUN_TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        armed = False
        started = time.monotonic()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                run.lines.append(line)
                if armed and line.startswith(("ok: [", "changed: [")):
                    os.killpg(proc.pid, signal.SIGKILL)
                    run.killed_after = run.recorded[-1]
                    break
                if kill_at is not None and line.startswith("TASK [") and BOUNDARY in line:
                    armed = len(run.recorded) == kill_at
            run.rc = proc.wait()
            run.seconds = time.monotonic() - started
        finally:
            watchdog.cancel()
            if proc.stdout is not None:
                proc.stdout.close()
        if kill_at is not None:
            assert run.killed_after, f"no boundary {kill_at} in the run (rc {run.rc}):\n{run.tail()}"
        else:
            assert run.rc == 0, f"{' '.join(run.argv[-3:])} failed ({run.rc}):\n{run.tail()}"
        return run

    # ----------------------------------------------------------------- traffic
    def write(self) -> None:
        """One message through every MTA that accepts it, one LDAP entry on one master."""
        self.writes += 1
        tag = f"kill-{os.getpid()}-{self.writes}"
        for site in SITES:
            mta = self.lab.core.hosts[f"{site}-mta1"].address
            subject = f"{tag}-via-{site}"
            try:
                with smtplib.SMTP(mta, 25, timeout=10) as smtp:
                    smtp.sendmail("probe@example.org", ["user01@example.test"],
                                  f"Subject: {subject}\r\n\r\nkill-anywhere test\r\n")
            except (smtplib.SMTPException, OSError):
                continue  # not acknowledged: nothing is promised for it
            self.mail.append(subject)
        dn = f"cn={tag},{self.variables['zimbra_geo_ldap_suffix']}"
        # The masters in turn, so that writes land on both sites.
        masters = ["dc1-ldap1", "dc2-ldap1", "dc1-ldap2", "dc2-ldap2"]
        shift = self.writes % len(masters)
        for master in masters[shift:] + masters[:shift]:
            try:
                conn = self.ldap(master)
            except ldap3.core.exceptions.LDAPException:
                continue
            try:
                if conn.add(dn, ["device"], {"cn": tag, "description": "kill-anywhere test"}):
                    self.entries.append(dn)
                    break
            finally:
                conn.unbind()

    def ldap(self, master: str) -> ldap3.Connection:
        tls = ldap3.Tls(ca_certs_file=self.variables["zimbra_geo_ca_path"])
        server = ldap3.Server(self.lab.core.hosts[master].address, port=389, tls=tls, connect_timeout=5)
        conn = ldap3.Connection(server, self.variables["zimbra_geo_ldap_admin_dn"],
                                self.variables["zimbra_geo_ldap_admin_password"], receive_timeout=10)
        conn.open()
        conn.start_tls()
        conn.bind()
        return conn

    # ----------------------------------------------------------------- end state
    def host(self, name: str) -> LabHost:
        return LabHost(self.lab, name)

    def active_site(self) -> str | None:
        """The site whose volumes are the sources of healthy mirrors (None: neither cleanly)."""
        for site in SITES:
            standby = next(s for s in SITES if s != site)
            if self.mirrors_ok(site, standby) is None:
                return site
        return None

    def mirrors_ok(self, active: str, standby: str) -> str | None:
        count = sum(len(kinds) for kinds in self.variables["zimbra_geo_ontap_volumes"].values())
        into_standby = checks.relationships(self.variables, standby)
        into_active = checks.relationships(self.variables, active)
        if into_active:
            return f"{active}'s volumes are still destinations: {into_active}"
        if len(into_standby) != count or any(r["state"] != "snapmirrored" or not r["healthy"] for r in into_standby):
            return f"mirrors into {standby} not all healthy and snapmirrored: {into_standby}"
        return None

    def check_end_state(self, active: str) -> None:
        standby = next(s for s in SITES if s != active)
        problem = self.mirrors_ok(active, standby)
        assert problem is None, problem
        for name, host in self.lab.core.hosts.items():
            if "mailbox" in host.roles:
                checks.check_volumes(self.host(name), name, active)
            if {"mailbox", "mta", "proxy"} & set(host.roles):
                checks.check_services(self.host(name), name, active)
        checks.check_dns(self.variables, active)

    def check_nothing_lost(self, active: str, timeout: float = 120.0) -> None:
        """Every acknowledged message in the active mailbox, every entry on every master."""
        mailbox = self.host(f"{active}-mbox1")
        deadline = time.monotonic() + timeout
        while True:
            found = checks.subjects(mailbox)
            missing = [s for s in self.mail if s not in found]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not missing, f"acknowledged mail missing on {active}-mbox1: {missing}\n{found}"
        for master in ("dc1-ldap1", "dc1-ldap2", "dc2-ldap1", "dc2-ldap2"):
            while True:
                conn = self.ldap(master)
                try:
                    absent = [dn for dn in self.entries if not conn.search(dn, "(objectClass=*)", "BASE")]
                finally:
                    conn.unbind()
                if not absent or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert not absent, f"LDAP entries missing on {master}: {absent}"

    def records(self, kind: str, target: str) -> list[dict[str, Any]]:
        files = sorted(self.report_dir.glob(f"{kind}-{target}-*.json"))
        return [json.loads(f.read_text()) for f in files]


class LabHost:
    """What checks.py needs of a testinfra host: run(command, *args) inside a lab host."""

    def __init__(self, lab: Any, name: str) -> None:
        self.lab, self.name = lab, name

    def run(self, command: str, *args: Any) -> Any:
        if args:
            command = command % tuple(shlex.quote(str(a)) for a in args)
        proc = self.lab.host_run(self.name, ["sh", "-c", command], check=False)
        return SimpleNamespace(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def platform(lab, tmp_path_factory):
    """A reset lab, built (dc1 active), with the mailbox monitor running for the module."""
    lab.reset()
    plat = Platform(lab, tmp_path_factory.mktemp("kill-anywhere-reports"))
    plat.run("site_build.yml")
    plat.monitor = MailboxMonitor(lab)
    plat.monitor.start()
    yield plat
    plat.monitor.stop()
    lab.reset()  # the next module on this worker starts from the lab's initial state


@pytest.fixture(name="no_overlap")
def fixture_no_overlap(platform):
    """Fails the test if both sites ran a mailbox process at any sample taken during it."""
    before = len(platform.monitor.overlaps)
    yield
    overlaps = platform.monitor.overlaps[before:]
    assert platform.monitor.is_alive(), "the mailbox monitor stopped"
    assert not overlaps, f"both sites ran mailbox processes ({len(overlaps)} samples), first: {overlaps[0]}"


def make_active(platform: Platform, site: str) -> None:
    """Bring the platform to `site` active by a plain run, if it is not already."""
    if platform.active_site() != site:
        platform.run("failback.yml" if site == "dc1" else "failover.yml", limit=site)


def kill_points(playbook: str) -> list[int]:
    """The boundaries (1 = after the first step) the chain kills a run at."""
    steps, failover = STEPS[playbook], STEPS["failover.yml"]
    if MATRIX in ("chain", "full"):
        return list(range(1, len(steps) + 1))
    if playbook == "failover.yml":
        return [n for n in range(1, len(steps) + 1) if n % 2 == 1]
    return [n for n, step in enumerate(steps, 1) if step not in failover or (failover.index(step) + 1) % 2 == 0]


def test_every_step_is_a_kill_point():
    failover, failback = STEPS["failover.yml"], STEPS["failback.yml"]
    killed = {failover[n - 1] for n in kill_points("failover.yml")}
    killed |= {failback[n - 1] for n in kill_points("failback.yml")}
    assert killed == set(failover) | set(failback)


def killed_chain(platform: Platform, playbook: str) -> list[str]:
    """Kill a run at each kill point in turn, each re-run starting from the killed one."""
    steps, target = STEPS[playbook], TARGET[playbook]
    killed: list[str] = []
    for boundary in kill_points(playbook):
        platform.write()
        run = platform.run(playbook, limit=target, kill_at=boundary)
        print(f"{playbook} killed after {run.killed_after}: {run.seconds:.1f} s")
        assert run.recorded == steps[:boundary], "the run's steps differ from the role's list"
        killed.append(run.killed_after or "")
    platform.write()
    # The last re-run names one host of the site, as an operator may (-l dc2-mbox1): that one
    # host is then the only worker and does every server of every step itself.
    final = platform.run(playbook, limit=f"{target}-mbox1")
    print(f"{playbook} re-run to the end, limited to {target}-mbox1: {final.seconds:.1f} s")
    assert final.recorded == steps, final.recorded
    return killed


# --------------------------------------------------------------------- tests
@pytest.mark.parametrize("playbook", ["failover.yml", "failback.yml"])
def test_killed_at_every_boundary_converges(platform, no_overlap, playbook):
    target = TARGET[playbook]
    other = next(s for s in SITES if s != target)
    make_active(platform, other)
    killed = killed_chain(platform, playbook)
    assert killed == [STEPS[playbook][n - 1] for n in kill_points(playbook)]
    platform.check_end_state(target)
    platform.check_nothing_lost(target)
    kind = playbook.split(".")[0]
    record = platform.records(kind, target)[-1]
    assert record["result"] in ("done", "no change"), record
    assert [s["name"] for s in record["steps"]] == STEPS[playbook]
    assert platform.monitor.samples > 100, "the monitor hardly ran"


def matrix() -> list[tuple[str, int]]:
    """Failover and failback boundaries alternating, so each run starts where the last left."""
    out: list[tuple[str, int]] = []
    for index in range(max(len(s) for s in STEPS.values())):
        for playbook in ("failover.yml", "failback.yml"):
            if index < len(STEPS[playbook]):
                out.append((playbook, index + 1))
    return out


@pytest.mark.skipif(MATRIX != "full", reason="exhaustive kill matrix: ZG_KILL_MATRIX=full")
@pytest.mark.parametrize(("playbook", "boundary"), matrix(),
                         ids=[f"{p.split('.')[0]}-after-{STEPS[p][b - 1]}" for p, b in matrix()])
def test_killed_at_one_boundary_then_rerun(platform, no_overlap, playbook, boundary):
    target = TARGET[playbook]
    make_active(platform, next(s for s in SITES if s != target))
    platform.write()
    run = platform.run(playbook, limit=target, kill_at=boundary)
    assert run.killed_after == STEPS[playbook][boundary - 1]
    platform.write()
    platform.run(playbook, limit=target)
    platform.check_end_state(target)
    platform.check_nothing_lost(target)


def test_a_stopped_old_site_mta_counts_as_drained(platform, no_overlap):
    """An MTA of the old site already stopped (by an operator, or by an earlier run that made the
    site the standby) answers postqueue as Postfix does: "mail system is down" on stderr, status
    69. The planned failover's drain wait and queue flush take that as nothing left to deliver
    there, and the failover completes, the MTA left stopped."""
    make_active(platform, "dc1")
    stop = platform.lab.host_run("dc1-mta1", ["su", "-", "zimbra", "-c", "/opt/zimbra/bin/zmcontrol stop"],
                                 check=False)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    down = platform.lab.host_run("dc1-mta1", ["su", "-", "zimbra", "-c", "/opt/zimbra/common/sbin/postqueue -f"],
                                 check=False)
    assert down.returncode == 69 and "mail system is down" in down.stderr, down
    platform.write()
    run = platform.run("failover.yml", limit="dc2")
    assert run.recorded == STEPS["failover.yml"]
    platform.check_end_state("dc2")
    platform.check_nothing_lost("dc2")
