"""Unit tests of the zmcontrol client: the status parser on real-format output, the command
lines it builds, and its handling of timeouts and failures."""

from __future__ import annotations

import pytest

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._zimbra import (
    TIMEOUT_RC,
    ZimbraControl,
    ZimbraError,
    parse_status,
)

# As Zimbra prints them: "\t%-20s %10s", webapps suffixed, control-script output under a
# stopped service on lines starting with two tabs.
MAILBOX_RUNNING = (
    "Host dc1-mbox1.example.test\n"
    "\tmailbox                 Running\n"
    "\tmemcached               Running\n"
    "\tservice webapp          Running\n"
    "\tstats                   Running\n"
    "\tzimbra webapp           Running\n"
    "\tzimbraAdmin webapp      Running\n"
    "\tzimlet webapp           Running\n"
    "\tzmconfigd               Running\n"
)
MAILBOX_STOPPED = (
    "Host dc1-mbox1.example.test\n"
    "\tmailbox                 Stopped\n"
    "\t\tmysql.server is not running.\n"
    "\t\tzmmailboxdctl is not running.\n"
    "\tservice webapp          Stopped\n"
    "\t\tmysql.server is not running.\n"
    "\t\tzmmailboxdctl is not running.\n"
    "\tstats                   Stopped\n"
    "\t\tzmstat is not running.\n"
    "\tzmconfigd               Stopped\n"
    "\t\tzmconfigd is not running.\n"
)
# stats is outside Zimbra's status list: stopped, yet zmcontrol exits 0.
STATS_STOPPED_RC0 = (
    "Host dc1-mta1.example.test\n"
    "\tamavis                  Running\n"
    "\tmta                     Running\n"
    "\tstats                   Stopped\n"
    "\t\tzmstat is not running.\n"
    "\tzmconfigd               Running\n"
)


def test_parses_every_service_and_webapp_suffix() -> None:
    status = parse_status(MAILBOX_RUNNING, "", 0)
    assert status.host == "dc1-mbox1.example.test"
    assert [s.name for s in status.services] == [
        "mailbox", "memcached", "service", "stats", "zimbra", "zimbraAdmin", "zimlet",
        "zmconfigd"]
    assert [s.name for s in status.services if s.webapp] == [
        "service", "zimbra", "zimbraAdmin", "zimlet"]
    assert status.all_running() and not status.all_stopped()
    assert status.as_dict()["stopped"] == []


def test_detail_lines_belong_to_the_service_above() -> None:
    status = parse_status(MAILBOX_STOPPED, "", 1)
    by_name = {s.name: s for s in status.services}
    assert by_name["mailbox"].details == ["mysql.server is not running.",
                                          "zmmailboxdctl is not running."]
    assert by_name["stats"].details == ["zmstat is not running."]
    assert status.all_stopped() and not status.all_running()
    assert by_name["service"].as_dict() == {
        "name": "service", "state": "Stopped", "running": False, "webapp": True,
        "details": ["mysql.server is not running.", "zmmailboxdctl is not running."]}


def test_exit_code_zero_does_not_mean_all_running() -> None:
    status = parse_status(STATS_STOPPED_RC0, "", 0)
    assert not status.all_running()
    assert status.as_dict()["stopped"] == ["stats"]
    assert status.all_running(ignore=["stats"])


def test_exit_code_one_with_parsable_lines_is_a_status_not_an_error() -> None:
    assert parse_status(MAILBOX_STOPPED, "", 1).rc == 1


def test_cache_warning_is_reported() -> None:
    status = parse_status(MAILBOX_RUNNING, "Connect: Unable to determine enabled services from "
                          "ldap.\nEnabled services read from cache. Service list may be "
                          "inaccurate.\n", 0)
    assert status.from_cache
    assert len(status.warnings) == 2


@pytest.mark.parametrize(
    ("stdout", "stderr", "message"),
    [
        ("Unable to determine enabled services. Cache is out of date or doesn't exist.\n",
         "Connect: Unable to determine enabled services from ldap.\n", "cache"),
        ("Host dc1-mbox1.example.test\n\tmailbox                 Running\nTimeout after 180 seconds\n",
         "", "180 seconds"),
        ("", "Run as the zimbra user!\n", "Zimbra user"),
        ("Cannot determine services - exiting\n", "", "no enabled services"),
        ("", "", "no host and service lines"),
        ("Host x\n", "", "no host and service lines"),
        ("\tmailbox                 Running\n", "", "no host and service lines"),
    ],
)
def test_failures_raise(stdout: str, stderr: str, message: str) -> None:
    with pytest.raises(ZimbraError, match=message) as info:
        parse_status(stdout, stderr, 1)
    assert info.value.stdout == stdout


class Recorder:
    def __init__(self, replies: list[tuple[int, str, str]]) -> None:
        self.replies = list(replies)
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        return self.replies.pop(0)


def test_root_runs_zmcontrol_through_su_under_timeout() -> None:
    run = Recorder([(0, MAILBOX_RUNNING, "")])
    ZimbraControl(run, "/opt/zimbra/bin/zmcontrol", "zimbra", user="root").status(300)
    assert run.calls == [["timeout", "--kill-after=30", "300", "su", "-", "zimbra", "-c",
                          "/opt/zimbra/bin/zmcontrol status"]]


def test_the_zimbra_user_runs_zmcontrol_directly() -> None:
    run = Recorder([(0, "", "")])
    ZimbraControl(run, "/opt/zimbra/bin/zmcontrol", "zimbra", user="zimbra").action("stop", 60)
    assert run.calls == [["timeout", "--kill-after=30", "60", "/opt/zimbra/bin/zmcontrol",
                          "stop"]]


def test_another_user_fails_before_running_anything() -> None:
    run = Recorder([])
    with pytest.raises(ZimbraError, match="become_user: zimbra"):
        ZimbraControl(run, run_as="zimbra", user="deploy").status()
    assert run.calls == []


def test_timeout_is_an_error() -> None:
    run = Recorder([(TIMEOUT_RC, "Host x\n\tStopping mailbox...", "")])
    with pytest.raises(ZimbraError, match="within 1800 seconds"):
        ZimbraControl(run, user="zimbra").action("stop", 1800)


def test_action_failing_on_enabled_services_raises() -> None:
    no_cache = "Host x\nUnable to determine enabled services. Cache is out of date or doesn't exist.\n"
    run = Recorder([(1, no_cache, "")])
    with pytest.raises(ZimbraError, match="LDAP"):
        ZimbraControl(run, user="zimbra").action("start", 60)


def test_wait_for_polls_until_running_without_real_sleeps() -> None:
    run = Recorder([(1, MAILBOX_STOPPED, ""), (0, MAILBOX_RUNNING, "")])
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = ZimbraControl(run, user="zimbra", sleep=sleep, clock=lambda: now[0])
    status = client.wait_for(True, timeout=30, status_timeout=300)
    assert status.all_running()
    assert slept == [2.0]


def test_wait_for_gives_up_at_the_deadline() -> None:
    run = Recorder([(1, MAILBOX_STOPPED, "")] * 3)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client = ZimbraControl(run, user="zimbra", sleep=sleep, clock=lambda: now[0])
    status = client.wait_for(True, timeout=4, status_timeout=300)
    assert not status.all_running()
    assert len(run.calls) == 3
