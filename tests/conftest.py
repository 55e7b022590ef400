"""Test-wide set-up.

- The collection is importable as ``ansible_collections.mailops.zimbra_geo``.
- The ``lab`` fixture: one lab per test session, with the test process inside its
  controller. The lab is named from ``ZG_LAB_NAME`` (default ``zgt``), so a test run never
  touches the demo lab (``zg``); under pytest-xdist each worker has a lab of its own
  (``zgt0``, ``zgt1``, ...), so the workers never share a platform. Once it is up, this
  process joins the controller's network namespace: Python clients (ldap3, requests,
  dnspython, netapp-ontap) and the subprocesses it starts (ansible-playbook, ldapsearch, dig)
  reach lab addresses directly. At the end of the session the lab goes down and the process
  returns to the machine's own namespace; unit tests always run in the machine's namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / ".collections"
PYTHON = sys.executable

link = COLLECTIONS / "ansible_collections" / "mailops" / "zimbra_geo"
if not link.exists():
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("../../..")
for path in (str(COLLECTIONS), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

# The machine's own network namespace, as this process found it: a test process that has
# joined a lab's controller still starts the commands that need the outside world (package
# registries: ansible-test's requirements) from here.
HOME_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY)


def _enter_home_netns() -> None:
    from lab.core import enter_netns_fd

    enter_netns_fd(HOME_NETNS)


@pytest.fixture
def outside_the_lab() -> Any:
    """A subprocess ``preexec_fn``: the command runs in the machine's own network namespace."""
    return _enter_home_netns


# The controller namespace this process joined with its lab (None before the lab is up).
_joined: dict[str, str | None] = {"ns": None}


@pytest.fixture(autouse=True)
def _unit_tests_outside_the_lab(request: pytest.FixtureRequest) -> Any:
    """A unit test runs in the machine's own network namespace, as in a run without a lab,
    even on a worker that has joined its lab's controller for earlier tests (its emulators
    bind addresses such as 127.0.0.2, which only the machine's loopback has)."""
    rel = request.node.path.relative_to(REPO).as_posix()
    if _joined["ns"] is None or not rel.startswith("tests/unit/"):
        yield
        return
    from lab.core import enter_netns

    _enter_home_netns()
    try:
        yield
    finally:
        enter_netns(_joined["ns"])


def lab_name() -> str:
    """This process's lab: one per pytest-xdist worker (``gw0`` -> ``zgt0``)."""
    base = os.environ.get("ZG_LAB_NAME", "zgt")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"{base}{worker.removeprefix('gw')}" if worker else base


# Work that builds a platform on a lab is dealt out to the xdist workers whole: an
# integration module (its module-scoped fixtures build a platform once for all its tests,
# which may also build on each other) or one molecule scenario. Unit tests are dealt out one
# by one and fill the gaps. The longest groups go first, so that the workers finish together;
# the figures are the seconds each took in a serial run (the --durations table of a CI log),
# a guide to the order only.
LONGEST_FIRST = {
    "tests/integration/test_fault_matrix.py": 610,
    "lint:tests/lint/test_lint_and_sanity.py::test_static_checks_pass[sanity]": 330,
    "tests/integration/test_kill_anywhere.py": 290,
    "tests/integration/test_split_brain.py": 250,
    "tests/integration/test_secrets_and_load.py": 240,
    "molecule:dr_test": 152, "molecule:build": 147, "molecule:failback": 145, "molecule:failover_disaster": 135,
    "tests/integration/test_awx_templates.py": 130,
    "molecule:failover_planned": 113, "molecule:failover_interrupted": 106,
}


def work_group(nodeid: str) -> str | None:
    """The group a test is dealt out with (None: on its own)."""
    path, _, name = nodeid.partition("::")
    if path.startswith("tests/molecule/") and "[" in name:
        return "molecule:" + name[name.index("[") + 1:name.rindex("]")]
    if path.startswith("tests/integration/"):
        return path
    if path.startswith("tests/lint/"):
        return "lint:" + nodeid
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> tuple[int, float]:
        group = work_group(item.nodeid)
        if group is None:
            return (2, 0.0)
        return (0, -LONGEST_FIRST[group]) if group in LONGEST_FIRST else (1, 0.0)

    items.sort(key=order)  # stable: the collection order within each rank


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduler, with work_group() as the scope and the collection's order
    (longest first) kept."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_group(nodeid) or nodeid

    config.option.loadscopereorder = False
    return WorkGroupScheduling(config, log)


# The phases of the test command, each with the wall time from its first test's start to its
# last test's end (phases overlap when workers run side by side) and the seconds of its tests.
PHASES = {"tests/lint/": "lint + sanity", "tests/unit/": "unit", "tests/integration/": "integration",
          "tests/molecule/": "molecule"}
_phase_times: dict[str, list[float]] = {}


def _phase(nodeid: str) -> str | None:
    return next((name for prefix, name in PHASES.items() if nodeid.startswith(prefix)), None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    phase = _phase(report.nodeid)
    if phase is None or not report.start:
        return
    times = _phase_times.setdefault(phase, [report.start, report.stop, 0.0])
    times[0], times[1] = min(times[0], report.start), max(times[1], report.stop)
    times[2] += report.duration


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _phase_times:
        return
    terminalreporter.write_sep("=", "time per phase")
    terminalreporter.write_line(f"{'phase':<16}{'wall (first start to last end)':>32}{'seconds of tests':>18}")
    for name in PHASES.values():
        if name in _phase_times:
            start, stop, busy = _phase_times[name]
            terminalreporter.write_line(f"{name:<16}{stop - start:>30.1f} s{busy:>16.1f} s")


class LabHandle:
    def __init__(self, name: str) -> None:
        from lab.core import Lab  # the lab package sits at the repository root

        self.name = name
        self.core = Lab(name)
        self.dir = self.core.dir

    # -------------------------------------------------------------- lab CLI
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [PYTHON, "-m", "lab", "--name", self.name, *args],
            cwd=REPO, capture_output=True, text=True,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def reset(self) -> None:
        self.cli("reset")

    @property
    def inventory(self) -> Path:
        # What `python -m lab inventory` prints, without a Python start per playbook run.
        from lab.lifecycle import inventory_dir

        return inventory_dir(self.core)

    @property
    def secrets(self) -> dict[str, str]:
        return json.loads((self.dir / "secrets.json").read_text())

    @property
    def hosts(self) -> dict[str, Any]:
        return self.core.hosts

    def host_run(self, host: str, argv: list[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
        return self.core.hosts[host].run(argv, check=check, **kw)

    # -------------------------------------------------------------- Ansible
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"),
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_NOCOLOR="1",
            PATH=f"{Path(PYTHON).parent}:{env.get('PATH', '')}",
        )
        return env

    def playbook(
        self,
        playbook: str | Path,
        extra_vars: dict[str, Any] | None = None,
        check: bool = False,
        diff: bool = False,
        limit: str | None = None,
        inventory: str | Path | None = None,
        args: list[str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a playbook (a path, or YAML text) against the lab's inventory."""
        text = str(playbook)
        tmp = None
        if "\n" in text:
            # Beside the tests (relative paths resolve as in them), under a name that git and
            # so ansible-lint ignore: the lint test may scan the tree while it exists.
            tmp = tempfile.NamedTemporaryFile("w", prefix="zg-tmp-", suffix=".yml", dir=REPO / "tests" / "integration",
                                              delete=False)
            tmp.write(text)
            tmp.close()
            text = tmp.name
        argv = [str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory or self.inventory), text]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if limit:
            argv += ["-l", limit]
        argv += args or []
        try:
            return subprocess.run(argv, cwd=REPO, env=self.env(), capture_output=True, text=True)
        finally:
            if tmp:
                os.unlink(tmp.name)

    def inventory_vars(self) -> dict[str, Any]:
        """The lab inventory's group_vars/all, merged (endpoints and credentials)."""
        merged: dict[str, Any] = {}
        for f in sorted((self.inventory / "group_vars" / "all").glob("*.yml")):
            merged.update(yaml.safe_load(f.read_text()) or {})
        return merged


@pytest.fixture(scope="session")
def lab() -> Any:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from lab.core import enter_netns, enter_netns_fd

    handle = LabHandle(lab_name())
    handle.cli("up")
    # The topology `up` built (saved with the lab), not one an earlier lab of this name left.
    handle.core = type(handle.core)(handle.name)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    enter_netns(handle.core.ctl_ns)
    _joined["ns"] = handle.core.ctl_ns
    try:
        yield handle
    finally:
        _joined["ns"] = None
        # Back to the machine's own network namespace first: `lab down` kills every
        # process left in the lab's namespaces.
        enter_netns_fd(home)
        os.close(home)
        handle.cli("down", check=False)
