"""The fault matrix: every playbook phase under every fault the platform can throw at it.

Phases: replication-verify, planned failover (dc1 -> dc2), disaster failover (dc1 cut off,
-l dc2) and failback (dc2 -> dc1). Faults: ONTAP cluster unreachable, an ONTAP job that ends
in ``failure``, a slow job (within the deadline), a transition refused with 13303818; an LDAP
master down; the site link cut mid-run; the DNS server down; a wrong TSIG key; a Scality node
down; sproxyd failing; zmcontrol start failing (a service stays Stopped, exit 1). Each cell
must end in success where the design allows it, or in a stop whose message names the failing
component and points to a section of docs/operator-guide.md, from a state that a re-run,
once the fault is cleared, completes.

How the cross product fits in a few minutes (a failover takes ~30 s; 44 cells with a full
re-run each would take half an hour):

- **Before any change, nothing to re-run.** The platform's state (SnapMirror relationships of
  both clusters, the mailbox mounts, the answers of both DNS views, every Zimbra host's
  ``zmcontrol status``) is read before the fault and again after the run and the fault are
  cleared. A cell whose state is identical stopped before any change: its re-run is the
  ordinary run every other test proves. Such cells are run one by one from the same start.
- **After changes, one re-run for a chain of stops.** Cells that stop after changes are
  chained: the next fault is injected into the re-run of the stopped run (the operator's
  re-run meets a second fault), and the last re-run of the chain runs with the faults the
  design tolerates (slow job, one LDAP master down, one Scality node down) and must complete.
  That run is also the success cell of those three faults: success under all three at once
  implies success under each (they touch independent components). A completed failover
  leaves dc2 active: the start of the failback cells; a completed failback brings dc1 back.
- **replication-verify is read-only** and its report carries each check's verdict, so faults
  of different components share a run and each cell reads its own check (SnapMirror for the
  ONTAP faults, LDAP, Scality, DNS); a wrong key (refused by the inventory check before any
  check runs) and the site link cut (it touches every check) run alone.
- **n/a cells** say why (a disaster failover's premise is the cut link).

The default plan is 30 playbook runs plus one site-build: 12 min 20 s on the lab with the
machine's two cores shared with other labs (load 5-15); replication-verify, a refused run and a
failover there took 2-4 times their figures on an idle lab.

``ZG_FAULT_MATRIX_EXHAUSTIVE=1`` runs every cell alone from a freshly built platform, with its
own re-run after a stop (about half an hour on the lab). ``ZG_FAULT_MATRIX_DOC=1`` rewrites
docs/fault-matrix.md from the results (scripts/fault_matrix.py renders the JSON the test
always writes to reports/fault-matrix.json); tests/unit/lab/test_fault_matrix_doc.py checks the
committed table lists exactly the cells below.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operator-guide.md"
RESULTS = REPO / "reports" / "fault-matrix.json"
RUN_TIMEOUT = 900

PHASES = {
    "verify": "replication-verify",
    "planned": "planned failover -l dc2",
    "disaster": "disaster failover -l dc2 (dc1 cut off)",
    "failback": "failback -l dc1",
}
FAULTS = {
    "ontap_unreachable": "ONTAP cluster unreachable (the API drops connections)",
    "ontap_job_failure": "ONTAP job ends in failure",
    "ontap_slow_job": "ONTAP jobs slow (2 s more each, within the deadline)",
    "ontap_transition_refused": "ONTAP transition refused (13303818)",
    "ldap_master_down": "one LDAP master of four down",
    "site_link_cut": "site link cut mid-run",
    "dns_down": "DNS server down",
    "dns_wrong_key": "wrong TSIG key in the inventory",
    "scality_node_down": "one Scality node down (two copies per site)",
    "sproxyd_failing": "sproxyd answers 503",
    "zmcontrol_start_fails": "zmcontrol start fails (mailboxd stays Stopped, exit 1)",
}
NOT_APPLICABLE = {
    ("disaster", "site_link_cut"): "the cut link is the premise of a disaster failover",
    ("verify", "zmcontrol_start_fails"): "replication-verify starts no service (a stopped one is its zimbra check)",
}
# The outcome the design asks for: success, or a stop (with a message and a re-run that completes).
SUCCESS = {
    ("verify", "ontap_job_failure"), ("verify", "ontap_slow_job"), ("verify", "ontap_transition_refused"),
    ("planned", "ontap_slow_job"), ("planned", "ldap_master_down"), ("planned", "scality_node_down"),
    ("disaster", "ontap_slow_job"), ("disaster", "ldap_master_down"), ("disaster", "scality_node_down"),
    ("failback", "ontap_slow_job"), ("failback", "ldap_master_down"), ("failback", "scality_node_down"),
}
CELLS = [(phase, fault) for phase in PHASES for fault in FAULTS]
# What a stop's message must name, per fault (the failing component).
NAMES = {
    "ontap_unreachable": r"ONTAP|127\.10\.\d\.50|cluster",
    "ontap_job_failure": r"fault matrix job failure",
    "ontap_transition_refused": r"13303818|fault matrix refused",
    "ldap_master_down": r"ldap",
    "site_link_cut": r"unreachable|not answer|timed out|UNREACHABLE|Connection",
    "dns_down": r"DNS server 127\.10\.0\.53",
    "dns_wrong_key": r"TSIG|key",
    "scality_node_down": r"node",
    "sproxyd_failing": r"sproxyd|503",
    "zmcontrol_start_fails": r"mailboxd|zmcontrol|Zimbra",
}
# replication-verify: the check each fault concerns.
VERIFY_CHECK = {"ontap_unreachable": "active_site", "ontap_job_failure": "snapmirror", "ontap_slow_job": "snapmirror",
                "ontap_transition_refused": "snapmirror", "ldap_master_down": "ldap", "dns_down": "dns",
                "scality_node_down": "scality", "sproxyd_failing": "scality"}
TOLERATED = ["ontap_slow_job", "ldap_master_down", "scality_node_down"]
SITE_NUMBER = {"dc1": 1, "dc2": 2}


@dataclass
class Run:
    """One playbook run of a phase with some faults injected."""

    phase: str
    faults: list[str]
    note: str = ""
    rerun_of: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Outcome:
    rc: int
    message: str
    stopped_step: str | None
    changed: bool
    verify_checks: dict[str, dict[str, Any]]
    seconds: float


def default_plan() -> list[Any]:
    """The chained plan: see the module docstring."""
    plan: list[Any] = [
        ("start", "dc1"),
        Run("verify", ["ontap_unreachable", "ldap_master_down", "dns_down", "sproxyd_failing"],
            "one run, each fault on its own check"),
        Run("verify", ["ontap_job_failure", "ontap_slow_job", "ontap_transition_refused", "scality_node_down"],
            "one run, each fault on its own check"),
        Run("verify", ["dns_wrong_key"]),
        Run("verify", ["site_link_cut"], "dc2 cut before the run (verify changes nothing)"),
    ]
    for phase in ("planned", "failback"):
        plan += [Run(phase, [f]) for f in ("ontap_unreachable", "dns_down", "dns_wrong_key", "sproxyd_failing")]
        # In step order: the job failure meets the first ONTAP job of a clean start.
        chain = ["ontap_job_failure", "ontap_transition_refused", "site_link_cut", "zmcontrol_start_fails"]
        plan += [Run(phase, [f], "" if i == 0 else f"from the state the {chain[i - 1]} run left")
                 for i, f in enumerate(chain)]
        plan.append(Run(phase, TOLERATED, "the re-run of the chain above, faults cleared, the tolerated ones injected",
                        rerun_of=[(phase, f) for f in chain]))
    plan.append(("cut", "dc1"))
    plan += [Run("disaster", [f]) for f in ("ontap_unreachable", "ontap_job_failure", "ontap_transition_refused",
                                            "dns_down", "dns_wrong_key", "sproxyd_failing")]
    plan.append(Run("disaster", ["zmcontrol_start_fails"]))
    plan.append(Run("disaster", TOLERATED,
                    "the re-run of the zmcontrol run, fault cleared, the tolerated ones injected",
                    rerun_of=[("disaster", "zmcontrol_start_fails")]))
    return plan


def exhaustive_plan() -> list[Any]:
    """Every cell alone from a freshly built start, with its own re-run after a stop."""
    plan: list[Any] = []
    starts = {"verify": "dc1", "planned": "dc1", "disaster": "dc1", "failback": "dc2"}
    for phase, fault in CELLS:
        if (phase, fault) in NOT_APPLICABLE:
            continue
        plan.append(("start", starts[phase]))
        if phase == "disaster":
            plan.append(("cut", "dc1"))
        plan.append(Run(phase, [fault]))
        if phase != "verify" and (phase, fault) not in SUCCESS:
            plan.append(Run(phase, [], "re-run, fault cleared", rerun_of=[(phase, fault)]))
    return plan


class Matrix:
    def __init__(self, lab: Any, report_dir: Path) -> None:
        self.lab = lab
        self.report_dir = report_dir
        self.secrets = lab.secrets
        self.ca = str(lab.dir / "ca" / "ca.pem")
        self.inventory_vars = lab.inventory_vars()
        self.cut: str | None = None  # the site a disaster phase keeps cut off
        self.active = "dc1"
        self.last: dict[str, Any] | None = None  # the state after the last run, healed
        self.results: dict[tuple[str, str], dict[str, Any]] = {}
        self.problems: list[str] = []

    # ------------------------------------------------------------------ faults
    def ontap(self, site: str, method: str, body: dict | None = None) -> None:
        import requests

        url = f"https://127.10.{SITE_NUMBER[site]}.50/x-lab/faults"
        response = requests.request(method, url, json=body, verify=self.ca, timeout=10,
                                    auth=("admin", self.secrets["ontap_password"]))
        response.raise_for_status()

    def inject(self, fault: str, phase: str, target: str, old: str) -> tuple[dict[str, Any], str | None]:
        """Inject `fault`; returns extra vars for the run and the site to cut mid-run, if any."""
        sites = ("dc1", "dc2")
        reachable = [s for s in sites if s != self.cut]
        if fault == "ontap_unreachable":
            self.ontap(target, "POST", {"type": "unreachable"})
        elif fault == "ontap_job_failure":
            for site in reachable:
                self.ontap(site, "POST", {"type": "job_failure", "match": "*",
                                          "message": "fault matrix job failure (injected)"})
        elif fault == "ontap_slow_job":
            for site in reachable:
                self.ontap(site, "POST", {"type": "slow_job", "match": "*", "seconds": 2})
        elif fault == "ontap_transition_refused":
            for site in reachable:
                self.ontap(site, "POST", {"type": "refuse_transition", "match": "*", "code": "13303818",
                                          "message": "fault matrix refused: the relationship cannot change state now"})
        elif fault == "ldap_master_down":
            self.lab.cli("fault", "stop", f"{target}-ldap1/slapd" if phase != "verify" else "dc2-ldap2/slapd")
        elif fault == "site_link_cut":
            if phase == "verify":
                self.lab.cli("fault", "cut-site", "dc2")
            else:
                return {}, old
        elif fault == "dns_down":
            self.lab.cli("fault", "stop", "dns/named")
        elif fault == "dns_wrong_key":
            views = json.loads(json.dumps(self.inventory_vars["zimbra_geo_dns_views"]))
            for view in views.values():
                view["key_secret"] = base64.b64encode(b"not the key of this view!!!!!!!!").decode()
            return {"zimbra_geo_dns_views": views}, None
        elif fault == "scality_node_down":
            self.lab.cli("fault", "scality", "node-down", f"{target if phase != 'verify' else 'dc1'}-node1")
        elif fault == "sproxyd_failing":
            self.lab.cli("fault", "scality", "sproxyd-error", target if phase != "verify" else "dc2", "503")
        elif fault == "zmcontrol_start_fails":
            self.lab.cli("fault", "zimbra", "start-fail", f"{target}-mbox1", "mailboxd")
        return {}, None

    def heal(self) -> None:
        """Clear every fault but the disaster phase's cut site."""
        self.lab.cli("fault", "heal")
        for site in ("dc1", "dc2"):
            if site != self.cut:
                self.ontap(site, "DELETE")
        if self.cut:
            self.lab.cli("fault", "cut-site", self.cut)

    # ------------------------------------------------------------------ state
    def fingerprint(self) -> dict[str, Any]:
        """What a run changes: mirrors, mounts, DNS answers, Zimbra services."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            mirrors = dict(zip(("dc1", "dc2"), pool.map(self._mirrors, ("dc1", "dc2")), strict=True))
            zimbra_hosts = sorted(h for h in self.lab.hosts if re.search(r"-(mbox\d+|mta\d+|proxy\d+)$", h))
            services = dict(zip(zimbra_hosts, pool.map(self._services, zimbra_hosts), strict=True))
            mailboxes = sorted(h for h in self.lab.hosts if re.search(r"-mbox\d+$", h))
            mounts = dict(zip(mailboxes, pool.map(self._mounts, mailboxes), strict=True))
        return {"mirrors": mirrors, "mounts": mounts, "dns": self._dns(), "services": services}

    def _mirrors(self, site: str) -> Any:
        import requests

        if site == self.cut:
            return "cut off"
        url = (f"https://127.10.{SITE_NUMBER[site]}.50/api/snapmirror/relationships"
               "?fields=source.path,destination.path,state,healthy")
        response = requests.get(url, verify=self.ca, timeout=10, auth=("admin", self.secrets["ontap_password"]))
        response.raise_for_status()
        return sorted((r["source"]["path"], r["destination"]["path"], r["state"], r["healthy"])
                      for r in response.json()["records"])

    def _mounts(self, host: str) -> list[str]:
        out = self.lab.host_run(host, ["findmnt", "-rn", "-o", "TARGET,FSROOT"], capture_output=True,
                                text=True, check=False).stdout
        return sorted(line for line in out.splitlines() if line.startswith("/opt/zimbra"))

    def _services(self, host: str) -> list[str]:
        out = self.lab.host_run(host, ["su", "-", "zimbra", "-c", "/opt/zimbra/bin/zmcontrol status"],
                                capture_output=True, text=True, check=False, timeout=120).stdout
        return [" ".join(line.split()) for line in out.splitlines()
                if line.startswith("\t") and not line.startswith("\t\t")]

    def _dns(self) -> dict[str, Any]:
        import dns.message
        import dns.query
        import dns.tsigkeyring

        answers: dict[str, Any] = {}
        for name, view in sorted(self.inventory_vars["zimbra_geo_dns_views"].items()):
            keyring = dns.tsigkeyring.from_text({view["key_name"]: (view.get("key_algorithm", "hmac-sha256"),
                                                                   view["key_secret"])})
            for record, rdtype in (("mail", "A"), ("smtp", "A"), ("webmail", "A"), ("imap", "A"),
                                   ("mbox1", "A"), ("@", "MX")):
                fqdn = f"{view['zone']}." if record == "@" else f"{record}.{view['zone']}."
                query = dns.message.make_query(fqdn, rdtype)
                query.use_tsig(keyring, keyname=view["key_name"])
                response = dns.query.tcp(query, view["server"], port=int(view.get("port", 53)), timeout=5)
                answers[f"{name} {record} {rdtype}"] = sorted(
                    item.to_text() for rrset in response.answer for item in rrset)
        return answers

    # ------------------------------------------------------------------ runs
    def playbook(self, run: Run, extra: dict[str, Any], cut_mid_run: str | None) -> tuple[int, str]:
        target = "dc2" if run.phase in ("planned", "disaster") else "dc1"
        name = {"verify": "replication_verify.yml", "failback": "failback.yml"}.get(run.phase, "failover.yml")
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.lab.inventory),
                str(REPO / "playbooks" / name)]
        extra = {"zimbra_geo_report_dir": str(self.report_dir), **extra}
        if run.phase != "verify":
            argv += ["-l", target]
        if run.phase == "disaster":
            extra.update(site_failover_mode="disaster", site_failover_confirm_disaster=True,
                         site_failover_probe_timeout=1)
        argv += ["-e", json.dumps(extra)]
        proc = subprocess.Popen(argv, cwd=REPO, env=self.lab.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        killer = threading.Timer(RUN_TIMEOUT, proc.kill)
        killer.start()
        lines = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                # Mid-run: once the old site has been stopped and unmounted, before the final
                # update that needs it.
                if cut_mid_run and "Begin step final_update" in line:
                    self.lab.cli("fault", "cut-site", cut_mid_run)
                    cut_mid_run = None
            rc = proc.wait()
        finally:
            killer.cancel()
        return rc, "".join(lines)

    def execute(self, run: Run) -> Outcome:
        target, old = ("dc2", "dc1") if run.phase in ("planned", "disaster") else ("dc1", "dc2")
        # The state the previous run left once healed is this run's start: nothing ran since.
        before = self.last or self.fingerprint()
        extra: dict[str, Any] = {}
        cut_mid_run = None
        for fault in run.faults:
            more, cut = self.inject(fault, run.phase, target, old)
            extra.update(more)
            cut_mid_run = cut_mid_run or cut
        started = time.monotonic()
        records_before = set(self.report_dir.glob("*.json"))
        rc, output = self.playbook(run, extra, cut_mid_run)
        seconds = time.monotonic() - started
        self.heal()
        after = self.last = self.fingerprint()
        message = ""
        errors = re.findall(r"\[ERROR\]: Task failed: (?:[A-Za-z ]+ failed: )?(.*?)\n(?:Origin:|\n)", output, re.S)
        if errors:
            # The last error that points to the guide (a failback repeats the failed step's
            # message without it).
            pointing = [e for e in errors if "docs/operator-guide.md#" in e]
            message = " ".join((pointing or errors)[-1].split())
        elif rc:
            message = " ".join(output[-1500:].split())
        new_records = sorted(set(self.report_dir.glob("*.json")) - records_before)
        stopped, checks = None, {}
        for path in new_records:
            data = json.loads(path.read_text())
            if "checks" in data:
                checks = {c["name"]: c for c in data["checks"]}
            for step in data.get("steps", []):
                if step.get("result") == "failed":
                    stopped = step["name"]
        if rc == 0 and run.phase != "verify":
            self.active = target
        return Outcome(rc, message, stopped, before != after, checks, seconds)

    # ------------------------------------------------------------------ verdicts
    def record(self, phase: str, fault: str, outcome: str, **details: Any) -> None:
        self.results[(phase, fault)] = {"phase": phase, "fault": fault, "outcome": outcome, **details}

    def judge(self, run: Run, out: Outcome) -> None:
        anchors = set(re.findall(r"docs/operator-guide\.md#([a-z0-9-]+)", out.message))
        for fault in run.faults:
            cell = (run.phase, fault)
            expect_success = cell in SUCCESS
            where = f"{run.phase} x {fault}"
            if run.phase == "verify" and fault in VERIFY_CHECK and out.verify_checks:
                check = out.verify_checks.get(VERIFY_CHECK[fault], {})
                ok = bool(check.get("ok"))
                anchor = check.get("anchor", "").partition("#")[2]
                text = check.get("summary", "")
                if ok != expect_success:
                    self.problems.append(f"{where}: the {VERIFY_CHECK[fault]} check said ok={ok}: {text}")
                if not ok:
                    self.check_stop(where, fault, text, {anchor} if anchor else set())
                self.record(run.phase, fault, "success" if ok else "stop", message=text,
                            anchor=anchor, changed=out.changed, note=run.note, seconds=round(out.seconds, 1))
                continue
            succeeded = out.rc == 0
            if succeeded != expect_success:
                self.problems.append(f"{where}: expected {'success' if expect_success else 'a stop'}, "
                                     f"got rc={out.rc}: {out.message[:600]}")
            if not succeeded:
                self.check_stop(where, fault, out.message, anchors)
            self.record(run.phase, fault, "success" if succeeded else "stop", message=out.message,
                        anchor=sorted(anchors)[-1] if anchors else "", step=out.stopped_step,
                        changed=out.changed, note=run.note, seconds=round(out.seconds, 1))
        for phase, fault in run.rerun_of:
            cell = self.results.get((phase, fault))
            if cell is None:
                continue
            cell["rerun"] = "completed" if out.rc == 0 else f"failed: {out.message[:300]}"
            if out.rc != 0:
                self.problems.append(f"{phase} x {fault}: the re-run after the fault cleared failed: "
                                     f"{out.message[:600]}")

    def check_stop(self, where: str, fault: str, message: str, anchors: set[str]) -> None:
        if not re.search(NAMES[fault], message, re.I):
            self.problems.append(f"{where}: the message does not name the failing component "
                                 f"({NAMES[fault]}): {message[:600]}")
        guide = guide_anchors()
        if not anchors or not anchors <= guide:
            self.problems.append(f"{where}: the message points to no section of the guide "
                                 f"({sorted(anchors)}): {message[:600]}")

    def after_run(self, run: Run, out: Outcome) -> None:
        """A stop that changed nothing needs no re-run; one that changed something is re-run."""
        for fault in run.faults:
            cell = self.results[(run.phase, fault)]
            if cell["outcome"] == "stop" and not cell.get("changed") and run.phase != "verify":
                cell["rerun"] = "not needed: nothing was changed"
            if run.phase == "verify" and cell["outcome"] == "stop":
                cell["rerun"] = "not needed: replication-verify changes nothing"


def guide_anchors() -> set[str]:
    anchors = set()
    for line in GUIDE.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def bring_to(matrix: Matrix, site: str) -> None:
    """A freshly built platform (dc1 active), failed over to dc2 when `site` is dc2."""
    matrix.cut = None
    matrix.lab.reset()
    for site_path in ("site_build.yml",):
        proc = matrix.lab.playbook(REPO / "playbooks" / site_path)
        assert proc.returncode == 0, proc.stdout[-4000:]
    matrix.active = "dc1"
    if site == "dc2":
        proc = matrix.lab.playbook(REPO / "playbooks" / "failover.yml", limit="dc2",
                                   extra_vars={"zimbra_geo_report_dir": str(matrix.report_dir)})
        assert proc.returncode == 0, proc.stdout[-4000:]
        matrix.active = "dc2"


def write_results(matrix: Matrix, mode: str, seconds: float) -> None:
    cells = []
    for phase, fault in CELLS:
        if (phase, fault) in NOT_APPLICABLE:
            cells.append({"phase": phase, "fault": fault, "outcome": "n/a", "note": NOT_APPLICABLE[(phase, fault)]})
        elif (phase, fault) in matrix.results:
            cells.append(matrix.results[(phase, fault)])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"mode": mode, "seconds": round(seconds), "phases": PHASES, "faults": FAULTS,
                                   "cells": cells}, indent=1) + "\n")
    if os.environ.get("ZG_FAULT_MATRIX_DOC") == "1":
        subprocess.run([sys.executable, str(REPO / "scripts" / "fault_matrix.py"), str(RESULTS),
                        str(REPO / "docs" / "fault-matrix.md")], check=True)


def test_fault_matrix(lab, tmp_path):
    exhaustive = os.environ.get("ZG_FAULT_MATRIX_EXHAUSTIVE") == "1"
    matrix = Matrix(lab, tmp_path / "reports")
    matrix.report_dir.mkdir()
    # For working on one phase: ZG_FAULT_MATRIX_PHASES=planned,failback (the plan's start
    # states stay).
    phases = [p for p in os.environ.get("ZG_FAULT_MATRIX_PHASES", "").split(",") if p] or list(PHASES)
    plan = [i for i in (exhaustive_plan() if exhaustive else default_plan())
            if not isinstance(i, Run) or i.phase in phases]
    started = time.monotonic()
    try:
        for item in plan:
            if isinstance(item, tuple):
                action, site = item
                matrix.last = None
                if action == "start":
                    bring_to(matrix, site)
                else:
                    matrix.cut = site
                    lab.cli("fault", "cut-site", site)
                continue
            out = matrix.execute(item)
            matrix.judge(item, out)
            matrix.after_run(item, out)
    finally:
        write_results(matrix, "exhaustive" if exhaustive else "default", time.monotonic() - started)
        lab.reset()
    missing = [c for c in CELLS if c not in NOT_APPLICABLE and c not in matrix.results and c[0] in phases]
    assert not missing, f"cells the plan did not run: {missing}"
    unresolved = [c for c, r in matrix.results.items() if r["outcome"] == "stop" and not r.get("rerun")]
    assert not unresolved, f"stops without a completed re-run: {unresolved}"
    assert not matrix.problems, "\n".join(matrix.problems)


if __name__ == "__main__":  # pragma: no cover - the plan, for a reader
    pytest.main([__file__])
