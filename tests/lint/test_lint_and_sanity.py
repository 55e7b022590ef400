"""The static checks of the test command, as tests: ruff, ansible-lint (production profile)
and ansible-test sanity, each the same as `bash scripts/dev.sh lint` / `sanity` runs it.

They are tests so that pytest-xdist deals them out beside the lab-backed tests (one core
each, sharing the machine with the other workers rather than running before them), and so
that their time is in the same --durations table and phase summary as everything else.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("check", ["lint", "sanity"])
def test_static_checks_pass(check: str, outside_the_lab) -> None:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "dev.sh"), check], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          # This worker may have joined its lab: the checks run outside it.
                          preexec_fn=outside_the_lab)
    assert proc.returncode == 0, f"`scripts/dev.sh {check}` failed ({proc.returncode}):\n" + (
        proc.stdout[-8000:] + proc.stderr[-8000:])
