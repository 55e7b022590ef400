"""Test-wide set-up.

- The collection is importable as ``ansible_collections.mailops.zimbra_geo``.
- The ``lab`` fixture: one lab per test session, with the test process inside its
  controller. The lab is named from ``ZG_LAB_NAME`` (default ``zgt``), so a test run never
  touches the demo lab (``zg``). Once it is up, this process joins the controller's network
  namespace: Python clients (ldap3, requests, dnspython, netapp-ontap) and the subprocesses
  it starts (ansible-playbook, ldapsearch, dig) reach lab addresses directly. At the end of
  the session the lab goes down and the process returns to the machine's own namespace.
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
        return Path(self.cli("inventory").stdout.strip())

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
            tmp = tempfile.NamedTemporaryFile("w", suffix=".yml", dir=REPO / "tests" / "integration", delete=False)
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

    handle = LabHandle(os.environ.get("ZG_LAB_NAME", "zgt"))
    handle.cli("up")
    # The topology `up` built (saved with the lab), not one an earlier lab of this name left.
    handle.core = type(handle.core)(handle.name)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    enter_netns(handle.core.ctl_ns)
    try:
        yield handle
    finally:
        # Back to the machine's own network namespace first: `lab down` kills every
        # process left in the lab's namespaces.
        enter_netns_fd(home)
        os.close(home)
        handle.cli("down", check=False)
