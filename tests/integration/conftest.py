"""Integration tests run against the lab: the `lab` fixture lives in tests/conftest.py.

`installed`: the collection as a user gets it, the artifact built from this checkout and
installed into an empty collections path (built once per test process, on first use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Installed:
    """The built artifact, installed into an empty collections path."""

    artifact: Path
    names: list[str]
    collections: Path
    env: dict[str, str]  # away from the repository's ansible.cfg, which points at the working tree


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    tmp_path = tmp_path_factory.mktemp("artifact")
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    build = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    artifact = tmp_path / f"mailops-zimbra_geo-{galaxy['version']}.tar.gz"
    assert artifact.exists()
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    dest = tmp_path / "collections"
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(dest), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env.pop("ANSIBLE_CONFIG", None)
    install = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "-p", str(dest),
         str(artifact)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    assert (dest / "ansible_collections" / "mailops" / "zimbra_geo" / "MANIFEST.json").exists(), install.stdout
    return Installed(artifact, names, dest, env)
