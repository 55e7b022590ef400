"""The versions the collection claims, each tried: ansible-core from the oldest release the
collection claims (meta/runtime.yml `requires_ansible`) to the one every other test runs.

The other tests run the ansible-core of requirements-dev.txt. Here the claimed floor gets a
virtualenv of its own (kept under .cache/ between runs): that ansible-core, the runtime
libraries (requirements.txt, at the tested versions of constraints.txt) and the unit-test tools.
It runs the plugins' unit tests (every module's main(), the filters, the action plugins through
ansible-playbook on localhost), then loads the built artifact the way a user's controller does:
install it, document every plugin, syntax-check every playbook by FQCN, and run the inventory
check against inventories/example. The oldest Python of the managed hosts (3.8) is checked
statically by vermin in the lint step, since no 3.8 interpreter is part of the project's set-up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def claimed_floor() -> str:
    spec = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]
    found = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)", spec.strip())
    assert found, f"requires_ansible {spec!r}: a lower bound (>=X.Y.Z) is expected"
    return found.group(1)


def version_tested() -> str:
    pins = (REPO / "requirements-dev.txt").read_text()
    return re.search(r"^ansible-core==(\S+)", pins, re.M).group(1)


def floor_venv(version: str, outside_the_lab: Any) -> Path:
    """A virtualenv with ansible-core `version`, made once and kept under .cache/ (from the
    machine's own network namespace: the package index is not reachable from a lab's)."""
    venv = REPO / ".cache" / "version-matrix" / f"ansible-core-{version}"
    marker = venv / "installed"
    dev = (REPO / "requirements-dev.txt").read_text()
    tools = [re.search(rf"^{name}==\S+", dev, re.M).group(0) for name in ("pytest", "pytest-xdist", "responses")]
    wanted = "\n".join([f"ansible-core=={version}", *tools, (REPO / "constraints.txt").read_text()])
    if not marker.exists() or marker.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                              f"ansible-core=={version}", *tools, "-r", str(REPO / "requirements.txt"),
                              "-c", str(REPO / "constraints.txt")], capture_output=True, text=True,
                             preexec_fn=outside_the_lab)
        assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
        marker.write_text(wanted)
    return venv


def test_the_claimed_floor_is_the_oldest_release_tested():
    floor, tested = claimed_floor(), version_tested()
    key = [int(p) for p in floor.split(".")]
    assert key <= [int(p) for p in tested.split(".")], (floor, tested)


def test_the_oldest_claimed_ansible_core_loads_and_runs_the_collection(tmp_path, outside_the_lab):
    version = claimed_floor()
    if version == version_tested():
        pytest.skip("the floor is the version every other test runs")
    venv = floor_venv(version, outside_the_lab)
    vbin = venv / "bin"
    out = tmp_path / "build"
    # ansible.posix (site_build's mount module) from the project's own Ansible package.
    site = next((BIN.parent / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": f"{tmp_path / 'collections'}:{site}",
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{vbin}:{os.environ.get('PATH', '')}"}
    env.pop("ANSIBLE_CONFIG", None)

    def run(*argv: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(vbin / argv[0]), *argv[1:]], capture_output=True, text=True, env=env,
                              cwd=tmp_path, preexec_fn=outside_the_lab)
        assert proc.returncode == 0, f"{' '.join(argv)} ({version}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        return proc

    assert version in run("ansible", "--version").stdout
    # The plugins' unit tests, under the floor (outside the lab: no lab test among them).
    unit = subprocess.run([str(vbin / "python"), "-m", "pytest", "tests/unit/plugins", "-q", "-n", "0"],
                          capture_output=True, text=True, cwd=REPO, preexec_fn=outside_the_lab,
                          env={**os.environ, "PATH": f"{vbin}:{os.environ.get('PATH', '')}"})
    assert unit.returncode == 0, f"unit tests under ansible-core {version}:\n{unit.stdout[-6000:]}{unit.stderr[-3000:]}"
    assert re.search(r"\d+ passed", unit.stdout), unit.stdout[-2000:]
    # Built as the project releases it (the tested ansible-galaxy, distlib for the manifest),
    # installed and run by the floor, as a user's controller gets it.
    build = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(out)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    artifact = next(out.glob("mailops-zimbra_geo-*.tar.gz"))
    run("ansible-galaxy", "collection", "install", "--offline", "--no-deps", "-p", str(tmp_path / "collections"),
        str(artifact))
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    modules = json.loads(run("ansible-doc", "-l", "mailops.zimbra_geo", "--json").stdout)
    for name in ["inventory_check", *runtime["action_groups"]["zimbra_geo"]]:
        assert f"mailops.zimbra_geo.{name}" in modules, name
        doc = json.loads(run("ansible-doc", f"mailops.zimbra_geo.{name}", "--json").stdout)
        assert doc[f"mailops.zimbra_geo.{name}"]["doc"]["options"] is not None, name
    filters = json.loads(run("ansible-doc", "-t", "filter", "-l", "mailops.zimbra_geo", "--json").stdout)
    assert filters, "no filter of the collection documented"
    for playbook in sorted((REPO / "playbooks").glob("*.yml")):
        run("ansible-playbook", f"mailops.zimbra_geo.{playbook.stem}", "--syntax-check", "-i", "localhost,")
    # The inventory check on the controller (action plugin + module_utils), on the example.
    play = tmp_path / "check.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Check the example inventory", "hosts": "all", "gather_facts": False,
        "roles": [{"role": "mailops.zimbra_geo.inventory_check", "vars": {"inventory_check_access": False}}],
    }]))
    example = tmp_path / "collections" / "ansible_collections" / "mailops" / "zimbra_geo" / "inventories" / "example"
    checked = run("ansible-playbook", "-i", str(example), str(play))
    assert "failed=0" in checked.stdout and "ok=" in checked.stdout, checked.stdout[-3000:]
