"""Unit tests of the zmcontrol module: its decision table and whole runs of main() against a
scripted zmcontrol (every command line it runs is recorded)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.module_utils import _zimbra
from ansible_collections.mailops.zimbra_geo.plugins.module_utils._zimbra import (
    parse_status,
)
from ansible_collections.mailops.zimbra_geo.plugins.modules import zmcontrol

RUNNING = ("Host dc1-mbox1.example.test\n"
           "\tmailbox                 Running\n"
           "\tstats                   Running\n"
           "\tzimbra webapp           Running\n"
           "\tzmconfigd               Running\n")
STOPPED = ("Host dc1-mbox1.example.test\n"
           "\tmailbox                 Stopped\n"
           "\t\tmysql.server is not running.\n"
           "\t\tzmmailboxdctl is not running.\n"
           "\tstats                   Stopped\n"
           "\t\tzmstat is not running.\n"
           "\tzimbra webapp           Stopped\n"
           "\t\tmysql.server is not running.\n"
           "\t\tzmmailboxdctl is not running.\n"
           "\tzmconfigd               Stopped\n"
           "\t\tzmconfigd is not running.\n")
PARTIAL = ("Host dc1-mbox1.example.test\n"
           "\tmailbox                 Stopped\n"
           "\t\tzmmailboxdctl is not running.\n"
           "\tstats                   Running\n"
           "\tzimbra webapp           Stopped\n"
           "\t\tzmmailboxdctl is not running.\n"
           "\tzmconfigd               Running\n")
NO_SERVICES = "Unable to determine enabled services. Cache is out of date or doesn't exist.\n"
MOUNT_REFUSED = ("Host dc1-mbox1.example.test\n\tStarting zmconfigd...Done.\n"
                 "\tStarting mailbox...Failed.\nStarting mysql...failed.\n"
                 "mysql cannot start: /opt/zimbra/db (db volume) is not mounted\n\n\n")


@pytest.mark.parametrize(
    ("state", "before", "command"),
    [
        ("started", RUNNING, None),
        ("started", STOPPED, "start"),
        ("started", PARTIAL, "start"),
        ("stopped", STOPPED, None),
        ("stopped", RUNNING, "stop"),
        ("stopped", PARTIAL, "stop"),
        ("stopped", None, "stop"),
        ("restarted", RUNNING, "restart"),
        ("restarted", STOPPED, "restart"),
        ("status", PARTIAL, None),
    ],
)
def test_decide(state: str, before: str | None, command: str | None) -> None:
    status = parse_status(before, "", 0) if before else None
    assert zmcontrol.decide(state, status, []) == command


def test_ignored_services_do_not_count() -> None:
    status = parse_status(RUNNING.replace("stats                   Running",
                                          "stats                   Stopped"), "", 0)
    assert zmcontrol.decide("started", status, []) == "start"
    assert zmcontrol.decide("started", status, ["stats"]) is None


class Script:
    """zmcontrol as the module sees it: status replies in order, and the action's reply."""

    def __init__(self, statuses: list[tuple[int, str, str]], action: tuple[int, str, str] = (
            0, "Host dc1-mbox1.example.test\n", "")) -> None:
        self.statuses = list(statuses)
        self.action = action
        self.calls: list[str] = []

    def __call__(self, module: Any, argv: list[str], **_kw: Any) -> tuple[int, str, str]:
        command = argv[-1].split()[-1]
        self.calls.append(command)
        if command == "status":
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return self.action


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, script: Script,
             **params: Any) -> tuple[dict, bool]:
    def run_command(self: AnsibleModule, argv: Any, **kw: Any) -> Any:
        return script(self, argv, **kw)

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(_zimbra, "current_user", lambda: "root")
    monkeypatch.setattr(_zimbra.time, "sleep", lambda _s: None)
    with patch_module_args(params), pytest.raises(SystemExit) as info:
        zmcontrol.main()
    return json.loads(capsys.readouterr().out), info.value.code != 0


def test_start_then_idempotent(monkeypatch, capsys) -> None:
    script = Script([(1, STOPPED, ""), (0, RUNNING, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="started")
    assert not failed and result["changed"] and result["command"] == "start"
    assert script.calls == ["status", "start", "status"]
    assert result["status"]["stopped"] == []

    script = Script([(0, RUNNING, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="started")
    assert not failed and not result["changed"]
    assert script.calls == ["status"]


def test_stop_of_a_stopped_host_runs_no_stop(monkeypatch, capsys) -> None:
    script = Script([(1, STOPPED, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="stopped")
    assert not failed and not result["changed"]
    assert script.calls == ["status"]
    assert result["status"]["services"][0]["details"] == [
        "mysql.server is not running.", "zmmailboxdctl is not running."]


def test_check_mode_predicts_and_runs_only_status(monkeypatch, capsys) -> None:
    script = Script([(0, RUNNING, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="stopped",
                              _ansible_check_mode=True, _ansible_diff=True)
    assert not failed and result["changed"]
    assert script.calls == ["status"]
    assert result["diff"]["before"]["services"]["mailbox"] == "Running"
    assert set(result["diff"]["after"]["services"].values()) == {"Stopped"}


def test_restart_always_changes(monkeypatch, capsys) -> None:
    script = Script([(0, RUNNING, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="restarted")
    assert not failed and result["changed"]
    assert script.calls == ["status", "restart", "status"]


def test_mailbox_refusing_to_start_fails_with_the_status(monkeypatch, capsys) -> None:
    script = Script([(1, STOPPED, ""), (1, PARTIAL, "")], action=(1, MOUNT_REFUSED, ""))
    result, failed = run_main(monkeypatch, capsys, script, state="started")
    assert failed
    assert "mailbox" in result["msg"] and "zimbra" in result["msg"]
    assert "not mounted" in result["stdout"]
    assert result["status"]["stopped"] == ["mailbox", "zimbra"]
    # The start failed outright: one status read, no polling for the settle timeout.
    assert script.calls == ["status", "start", "status"]


def test_stop_without_ldap_or_cache_still_stops(monkeypatch, capsys) -> None:
    script = Script([(1, NO_SERVICES, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="stopped")
    assert not failed and result["changed"]
    assert script.calls == ["status", "stop", "status"]
    assert result["status"] == {}
    assert "enabled services" in json.dumps(result["warnings"])


def test_start_without_ldap_or_cache_fails_before_acting(monkeypatch, capsys) -> None:
    script = Script([(1, NO_SERVICES, "")])
    result, failed = run_main(monkeypatch, capsys, script, state="started")
    assert failed and "cache" in result["msg"]
    assert script.calls == ["status"]


def test_status_is_the_default_and_never_acts(monkeypatch, capsys) -> None:
    script = Script([(1, PARTIAL, "")])
    result, failed = run_main(monkeypatch, capsys, script)
    assert not failed and not result["changed"]
    assert result["status"]["running"] == ["stats", "zmconfigd"]
    assert script.calls == ["status"]
