"""Run the molecule scenarios against the test lab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(lab, scenario):
    # Every scenario starts from the lab's initial state and builds what it needs itself.
    lab.reset()
    env = lab.env()
    env["MOLECULE_LAB_INVENTORY"] = str(lab.inventory)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "idempotence" in proc.stdout + proc.stderr
