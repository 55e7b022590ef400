"""Unit tests of the mailbox_volumes module: whole runs of main() against a scripted mount
table (every command line it runs is recorded; mount and umount change the table)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.modules import mailbox_volumes

DB = {"path": "/opt/zimbra/db", "src": "/dev/mapper/mbox1_db", "fstype": "xfs", "opts": "noatime"}
INDEX = {"path": "/opt/zimbra/index", "src": "/san/mbox1_index", "fstype": "none", "opts": "bind"}


class Host:
    """A mount table that mount and umount change, and the commands run against it."""

    def __init__(self, table: dict[str, str], fail: str | None = None) -> None:
        self.table = dict(table)
        self.fail = fail  # a mount point whose mount or umount fails
        self.calls: list[list[str]] = []

    def __call__(self, _module: AnsibleModule, argv: list[str], **_kw: Any) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        if argv[0] == "findmnt":
            text = "".join(f"{t.replace(' ', chr(92) + 'x20')} {s}\n" for t, s in self.table.items())
            return (0 if text else 1), text, ""
        if argv[-1] == self.fail:
            return 32, "", f"{argv[0]}: {argv[-1]}: special device does not exist."
        if argv[0] == "mount":
            src, path = argv[-2], argv[-1]
            # A bind mount shows as the filesystem's device with the subtree in brackets.
            self.table[path] = f"/dev/vda1[{src}]" if "bind" in argv else src
        elif argv[0] == "umount":
            self.table.pop(argv[-1])
        return 0, "", ""

    def changing(self) -> list[list[str]]:
        return [c for c in self.calls if c[0] != "findmnt"]


def _bind(host: Host) -> Any:
    def run_command(module: AnsibleModule, argv: list[str], **kw: Any) -> tuple[int, str, str]:
        return host(module, argv, **kw)
    return run_command


@pytest.fixture
def run(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(mailbox_volumes.os, "makedirs", lambda *_a, **_k: None)

    def _run(host: Host, check_mode: bool = False, diff: bool = False, **params: Any) -> tuple[dict, bool]:
        monkeypatch.setattr(AnsibleModule, "run_command", _bind(host))
        if check_mode:
            params["_ansible_check_mode"] = True
        if diff:
            params["_ansible_diff"] = True
        with patch_module_args(params), pytest.raises(SystemExit) as info:
            mailbox_volumes.main()
        return json.loads(capsys.readouterr().out), info.value.code != 0
    return _run


def test_mounts_every_volume_in_one_run_then_changes_nothing(run):
    host = Host({"/": "/dev/vda1"})
    result, failed = run(host, volumes=[DB, INDEX], state="mounted")
    assert not failed and result["changed"]
    assert result["mounted"] == ["/opt/zimbra/db", "/opt/zimbra/index"]
    assert host.changing() == [
        ["mount", "-t", "xfs", "-o", "noatime", "/dev/mapper/mbox1_db", "/opt/zimbra/db"],
        ["mount", "-t", "none", "-o", "bind", "/san/mbox1_index", "/opt/zimbra/index"],
    ]
    assert result["mounts"] == {"/opt/zimbra/db": "/dev/mapper/mbox1_db", "/opt/zimbra/index": "/san/mbox1_index"}

    host.calls.clear()
    result, failed = run(host, volumes=[DB, INDEX], state="mounted")
    assert not failed and not result["changed"] and result["mounted"] == []
    assert host.changing() == [], "a volume mounted from its own source is left alone (no remount)"


def test_a_mount_point_holding_another_source_fails_before_any_mount(run):
    host = Host({"/opt/zimbra/index": "/dev/sdz"})
    result, failed = run(host, volumes=[DB, INDEX], state="mounted")
    assert failed
    assert "Mount points in the way: /opt/zimbra/index holds /dev/sdz, not /san/mbox1_index" in result["msg"]
    assert host.changing() == []


def test_unmounts_what_is_mounted_whatever_it_holds_then_changes_nothing(run):
    host = Host({"/opt/zimbra/db": "/dev/mapper/mbox1_db", "/opt/zimbra/index": "/dev/other", "/": "/dev/vda1"})
    result, failed = run(host, volumes=[{"path": DB["path"]}, {"path": INDEX["path"]}], state="unmounted")
    assert not failed and result["changed"]
    assert host.changing() == [["umount", "/opt/zimbra/db"], ["umount", "/opt/zimbra/index"]]
    assert result["mounts"] == {"/opt/zimbra/db": None, "/opt/zimbra/index": None}
    assert host.table == {"/": "/dev/vda1"}

    host.calls.clear()
    result, failed = run(host, volumes=[DB, INDEX], state="unmounted")
    assert not failed and not result["changed"] and host.changing() == []


def test_check_mode_predicts_and_runs_only_findmnt(run):
    host = Host({"/opt/zimbra/db": "/dev/mapper/mbox1_db"})
    result, failed = run(host, check_mode=True, diff=True, volumes=[DB, INDEX], state="mounted")
    assert not failed and result["changed"] and result["mounted"] == ["/opt/zimbra/index"]
    assert host.changing() == []
    assert result["diff"]["before"] == "/opt/zimbra/db: /dev/mapper/mbox1_db\n/opt/zimbra/index: (not mounted)\n"
    assert result["diff"]["after"] == "/opt/zimbra/db: /dev/mapper/mbox1_db\n/opt/zimbra/index: /san/mbox1_index\n"


def test_a_failed_mount_names_what_this_run_mounted_before_it(run):
    host = Host({}, fail=INDEX["path"])
    result, failed = run(host, volumes=[DB, INDEX], state="mounted")
    assert failed
    assert result["msg"] == ("Mounting /san/mbox1_index on /opt/zimbra/index failed (exit 32): "
                             "mount: /opt/zimbra/index: special device does not exist.")
    assert result["mounted"] == ["/opt/zimbra/db"]


def test_a_failed_unmount_says_so(run):
    host = Host({"/opt/zimbra/db": "/dev/mapper/mbox1_db"}, fail="/opt/zimbra/db")
    result, failed = run(host, volumes=[DB], state="unmounted")
    assert failed and result["msg"].startswith("Unmounting /opt/zimbra/db failed (exit 32)")


def test_mounting_needs_src_and_fstype(run):
    host = Host({})
    result, failed = run(host, volumes=[{"path": "/opt/zimbra/db"}], state="mounted")
    assert failed and "needs src and fstype" in result["msg"] and host.calls == []


def test_findmnt_escapes_are_read_back():
    table = mailbox_volumes.parse_findmnt("/mnt/with\\x20space /dev/sdb\n/ /dev/vda1\n")
    assert table == {"/mnt/with space": "/dev/sdb", "/": "/dev/vda1"}


@pytest.mark.parametrize("held,src,same", [
    ("/dev/mapper/a", "/dev/mapper/a", True),
    ("/dev/vda1[/san/mbox1_db]", "/san/mbox1_db", True),
    ("/dev/vda1[/san/mbox2_db]", "/san/mbox1_db", False),
    ("/dev/mapper/b", "/dev/mapper/a", False),
])
def test_same_source(held, src, same):
    assert mailbox_volumes.same_source(held, src) is same
