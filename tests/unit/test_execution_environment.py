"""The execution environment definition produces a complete ansible-builder build context,
and the collection's own dependency metadata is what ansible-builder's introspection reads.

No image can be built here: `ansible-builder create` writes the context (Containerfile and the
files it copies), and the test checks that context: the Python, system and Galaxy
requirements copied, the collection artifact included and installed by the Containerfile, and
the pins agreeing with the ones the tests run with. `ansible-builder introspect` over the
installed artifact shows what any other image that installs the collection gets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE_FILE = REPO / "execution-environment" / "execution-environment.yml"


def versions(path: Path, operator: str = "==") -> dict[str, str]:
    """``{name: version}`` of the ``name<operator>version`` lines of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)" + re.escape(operator) + r"([^\s;#,]+)$", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def pins(path: Path) -> dict[str, str]:
    return versions(path, "==")


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the collection artifact and the EE build context from a copy of the files the
    definition names (same layout, so its relative paths hold), away from the working tree."""
    if shutil.which("ansible-builder", path=str(BIN)) is None:
        pytest.fail("ansible-builder is not installed (requirements-dev.txt)")
    work = tmp_path_factory.mktemp("ee")
    definition = yaml.safe_load(EE_FILE.read_text())
    (work / EE_FILE.parent.name).mkdir()
    shutil.copy(EE_FILE, work / EE_FILE.parent.name / EE_FILE.name)
    for key in ("galaxy", "python", "system"):
        source = (EE_FILE.parent / definition["dependencies"][key]).resolve()
        target = work / source.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    build = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(work / ".build")],
        capture_output=True, text=True, check=False,
    )
    assert build.returncode == 0, build.stderr
    create = subprocess.run(
        [str(BIN / "ansible-builder"), "create", "-f", str(work / EE_FILE.parent.name / EE_FILE.name),
         "-c", str(work / "context"), "--output-filename", "Containerfile"],
        capture_output=True, text=True, cwd=work, check=False,
    )
    assert create.returncode == 0, create.stdout + create.stderr
    return work / "context"


def test_definition_is_version_3_with_pinned_ansible() -> None:
    definition = yaml.safe_load(EE_FILE.read_text())
    assert definition["version"] == 3
    dev = pins(REPO / "requirements-dev.txt") | pins(REPO / "requirements.txt")
    assert definition["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={dev['ansible-core']}"
    assert definition["dependencies"]["ansible_runner"]["package_pip"] == f"ansible-runner=={dev['ansible-runner']}"


def requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_runtime_libraries_have_lower_bounds_and_tested_pins() -> None:
    """requirements.txt (what the collection needs, for an operator's Ansible and any EE) has
    lower bounds only and no Ansible; constraints.txt pins each at a version that satisfies it;
    the development requirements bring Ansible and use the constraints."""
    from packaging.version import Version

    lines = requirement_lines(REPO / "requirements.txt")
    bounds = versions(REPO / "requirements.txt", ">=")
    assert len(bounds) == len(lines), f"every line of requirements.txt is name>=version: {lines}"
    assert not {"ansible", "ansible-core"} & set(bounds)
    # Every third-party library the modules import is declared (urllib3: Scality retries).
    assert {"netapp-ontap", "ldap3", "dnspython", "requests", "urllib3"} <= set(bounds)
    exact = pins(REPO / "constraints.txt")
    assert set(exact) == set(bounds)
    for name, floor in bounds.items():
        assert Version(exact[name]) >= Version(floor), name
    dev = requirement_lines(REPO / "requirements-dev.txt")
    assert "-r requirements.txt" in dev and "-c constraints.txt" in dev
    assert {"ansible-core", "ansible"} <= set(pins(REPO / "requirements-dev.txt"))
    # The collection's metadata for ansible-builder names the lower bounds, the project's own
    # image the tested pins.
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"]["python"] == "requirements.txt"
    definition = yaml.safe_load(EE_FILE.read_text())
    assert (EE_FILE.parent / definition["dependencies"]["python"]).resolve() == REPO / "constraints.txt"


def test_context_has_containerfile_and_requirements(context: Path) -> None:
    containerfile = (context / "Containerfile").read_text()
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (REPO / "constraints.txt").read_text()
    assert (build / "bindep.txt").read_text() == (REPO / "bindep.txt").read_text()
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert {c["name"] for c in galaxy["collections"]} == set(
        yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"])
    # The stages use what was copied: pip and bindep requirements through introspection,
    # the Galaxy requirements through ansible-galaxy.
    assert "COPY _build/requirements.txt requirements.txt" in containerfile
    assert "COPY _build/bindep.txt bindep.txt" in containerfile
    assert "--user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "ansible-core==" in (context / "Containerfile").read_text()


def test_context_includes_the_collection(context: Path) -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    artifact = context / "_build" / "zimbra_geo" / f"mailops-zimbra_geo-{galaxy['version']}.tar.gz"
    assert artifact.is_file(), sorted(p.name for p in (context / "_build").iterdir())
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
    for role in ("site_build", "replication_verify", "site_failover", "site_failback"):
        assert f"roles/{role}/tasks/main.yml" in names
    assert "plugins/modules/snapmirror.py" in names
    containerfile = (context / "Containerfile").read_text()
    final = containerfile[containerfile.index("FROM base AS final"):]
    # Installed in the final image, where jobs look for collections whatever the project's
    # ansible.cfg says.
    assert "COPY _build/zimbra_geo/ /tmp/zimbra_geo/" in final
    assert re.search(r"ansible-galaxy collection install --offline --no-deps\s+"
                     r"--collections-path /usr/share/ansible/collections /tmp/zimbra_geo/mailops-zimbra_geo-", final)
    # The installed collection keeps its dependency metadata.
    assert "meta/execution-environment.yml" not in final
    assert "ENV ANSIBLE_COLLECTIONS_PATH=/runner/requirements_collections:/usr/share/ansible/collections" in final


def test_bindep_parses_and_names_the_controller_tools() -> None:
    """bindep reads the file and, on this Debian machine, asks for the Debian packages."""
    from bindep.depends import Depends

    depends = Depends((REPO / "bindep.txt").read_text())
    profiles = depends.platform_profiles() + ["default"]
    wanted = {rule[0] for rule in depends.active_rules(profiles)}
    assert {"ldap-utils", "openssh-client", "hostname"} <= wanted
    assert not wanted & {"openldap-clients", "openssh-clients"}


def test_installed_collection_declares_its_dependencies_to_introspection(context: Path, tmp_path: Path) -> None:
    """What ansible-builder's introspection finds in the installed artifact: the client
    libraries of requirements.txt (lower bounds) and the tools of bindep.txt, nothing of the
    developer pins (ansible-core, pytest...), and no build definition inside the collection."""
    artifact = next((context / "_build" / "zimbra_geo").glob("mailops-zimbra_geo-*.tar.gz"))
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
    assert "meta/execution-environment.yml" in names
    assert not any(n.startswith("execution-environment/") for n in names)
    install = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
         "--force", "-p", str(tmp_path), str(artifact)], capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    found = subprocess.run(
        [str(BIN / "ansible-builder"), "introspect", "--sanitize", str(tmp_path)],
        capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stdout + found.stderr
    data = yaml.safe_load(found.stdout)
    assert all(entry.endswith("# from collection mailops.zimbra_geo") for entry in data["python"] + data["system"])
    python = {entry.split("#")[0].strip() for entry in data["python"]}
    assert python == set(requirement_lines(REPO / "requirements.txt"))
    system = {entry.split()[0] for entry in data["system"]}
    assert {"ldap-utils", "openldap-clients", "openssh-client", "hostname"} <= system, found.stdout
