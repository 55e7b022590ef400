"""`python -m lab demo`: the playbooks in order, stopping at the first failure, reports listed.

ansible-playbook is replaced by a recorder: these tests check the demo's sequencing and its
messages, not the playbooks (the molecule scenarios run those on a lab).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import lab.__main__ as lab_cli

PLAYBOOKS = ["site_build.yml", "replication_verify.yml", "failover.yml", "failback.yml"]
EXPECTED = [
    ("site_build.yml", []),
    ("replication_verify.yml", []),
    ("failover.yml", ["-l", "dc2"]),
    ("replication_verify.yml", []),
    ("failback.yml", ["-l", "dc1"]),
    ("replication_verify.yml", []),
]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab CLI runs as root")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "playbooks").mkdir()
    for name in PLAYBOOKS:
        (tmp_path / "playbooks" / name).write_text("---\n")
    monkeypatch.setattr(lab_cli, "REPO", tmp_path)
    monkeypatch.setattr(lab_cli.lifecycle, "ensure_up", lambda lab: None)
    monkeypatch.setattr(lab_cli.lifecycle, "inventory_dir", lambda lab: tmp_path / "inventory")
    return tmp_path


def recorder(monkeypatch: pytest.MonkeyPatch, repo: Path, fail_at: int | None = None) -> list[tuple[str, list[str]]]:
    """Replace ansible-playbook: record each call, write a report, fail call number ``fail_at``."""
    calls: list[tuple[str, list[str]]] = []

    def run_ansible(lab, argv: list[str]) -> int:
        calls.append((Path(argv[1]).name, argv[2:]))
        if len(calls) == fail_at:
            return 2
        (repo / "reports").mkdir(exist_ok=True)
        (repo / "reports" / f"run-{len(calls)}.json").write_text("{}")
        return 0

    monkeypatch.setattr(lab_cli.lifecycle, "run_ansible", run_ansible)
    return calls


def invoke(*args: str):
    return CliRunner().invoke(lab_cli.cli, ["--name", "zgunit", "demo", *args])


def test_runs_the_six_steps_in_order_and_lists_the_reports(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recorder(monkeypatch, repo)
    result = invoke("-v")
    assert result.exit_code == 0, result.output
    assert calls == [(pb, [*limit, "-v"]) for pb, limit in EXPECTED]
    for n in range(1, 7):
        assert str(repo / "reports" / f"run-{n}.json") in result.output


def test_stops_at_the_first_failure_and_says_which_step(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recorder(monkeypatch, repo, fail_at=3)
    result = invoke()
    assert result.exit_code == 1
    assert [pb for pb, _ in calls] == ["site_build.yml", "replication_verify.yml", "failover.yml"]
    assert "demo stopped at step 3/6 (planned failover to dc2): playbooks/failover.yml failed (exit 2)" in result.output
    # The reports of the steps that ran are listed even so.
    assert str(repo / "reports" / "run-2.json") in result.output


def test_a_missing_playbook_fails_before_anything_runs(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recorder(monkeypatch, repo)
    (repo / "playbooks" / "failback.yml").unlink()
    result = invoke()
    assert result.exit_code == 1
    assert calls == []
    assert "these playbooks do not exist: playbooks/failback.yml" in result.output


def test_success_without_any_report_is_a_failure(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(lab_cli.lifecycle, "run_ansible", lambda lab, argv: calls.append(argv[1]) or 0)
    result = invoke()
    assert len(calls) == 6
    assert result.exit_code == 1
    assert "wrote no report" in result.output
