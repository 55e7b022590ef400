"""The collection builds into an artifact that installs, and whose modules resolve by FQCN."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_build_install_and_resolve(installed, tmp_path):
    names, dest, env = installed.names, installed.collections, installed.env
    # What the lab and the tests need stays out of the artifact.
    assert not [n for n in names if n.startswith(("lab/", "bench/", "tests/integration", "molecule/", ".venv"))]
    assert "plugins/action/inventory_check.py" in names

    listed = subprocess.run([str(BIN / "ansible-doc"), "-l", "mailops.zimbra_geo", "--json"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    modules = json.loads(listed.stdout)
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    group = runtime["action_groups"]["zimbra_geo"]
    for name in ["inventory_check", *group]:
        assert f"mailops.zimbra_geo.{name}" in modules, name
    # The installed copy is the one resolved, not the working tree.
    doc = subprocess.run([str(BIN / "ansible-doc"), "mailops.zimbra_geo.inventory_check", "--json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert doc.returncode == 0, doc.stderr
    assert str(dest) in json.loads(doc.stdout)["mailops.zimbra_geo.inventory_check"]["doc"]["filename"]
    # Every playbook of the collection runs by FQCN from the installed copy (a name with a
    # hyphen is not a valid collection playbook name and would not resolve).
    playbooks = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
    assert {"site_build", "replication_verify", "failover", "failback", "dr_test"} <= set(playbooks)
    for name in playbooks:
        assert f"playbooks/{name}.yml" in names, name
        check = subprocess.run([str(BIN / "ansible-playbook"), f"mailops.zimbra_geo.{name}", "--syntax-check",
                                "-i", "localhost,"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert check.returncode == 0, f"{name}: {check.stdout[-2000:]}{check.stderr[-2000:]}"


def test_only_the_collections_own_content_ships(tmp_path):
    """galaxy.yml builds from an allow-list: what an operator adds to a checkout stays out."""
    copy = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in files.stdout.split("\0"):
        if name and (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    # What the guides tell an operator to create beside the collection's files.
    added = {
        "secrets.yml": "zimbra_geo_awx_secrets: {ldap_admin_password: not-to-ship}\n",
        "awx/secrets.yml": "zimbra_geo_awx_secrets: {ontap_password: not-to-ship}\n",
        "inventories/prod/hosts.yml": "all: {children: {dc1: {hosts: {zmbx01-par: {}}}}}\n",
        "inventories/prod/group_vars/all/vault.yml": "zimbra_geo_ontap_password: not-to-ship\n",
        "reports/failover-dc2-20261207T000000Z.json": "{}\n",
        ".venv/lib/site.py": "\n",
        "plugins/modules/__pycache__/snapmirror.cpython-311.pyc": "\n",
    }
    for name, text in added.items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text(text)
    build = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(copy), "--output-path",
                            str(tmp_path)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    with tarfile.open(tmp_path / f"mailops-zimbra_geo-{galaxy['version']}.tar.gz") as tar:
        names = set(tar.getnames())
        shipped = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert not [n for n in added if n in names], sorted(names)
    assert not [n for n in names if n.startswith(("inventories/prod", "reports", ".venv", "lab/", "molecule/",
                                                  "tests/integration", "scripts/", "bench/"))]
    assert b"not-to-ship" not in shipped
    # The collection's own content does ship.
    for needed in ("meta/runtime.yml", "plugins/modules/snapmirror.py", "plugins/module_utils/_ontap.py",
                   "plugins/action/write_report.py", "roles/site_failover/tasks/main.yml",
                   "roles/replication_verify/templates/report.html.j2", "playbooks/failover.yml",
                   "inventories/example/hosts.yml", "docs/operator-guide.md", "awx/configs/job_templates.yml",
                   "README.md", "COPYING"):
        assert needed in names, needed

