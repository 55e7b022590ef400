"""A SnapMirror transfer keeps the owners of a volume's files (the emulator's copies)."""

from __future__ import annotations

import os

import pytest

from lab.ontap.data import copy_snapshot, sync_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")


def _tree(root):
    (root / "data").mkdir(parents=True)
    (root / "data" / "mailbox.sqlite").write_text("rows")
    for path in (root, root / "data", root / "data" / "mailbox.sqlite"):
        os.chown(path, 4990, 4990)


def test_snapshot_and_sync_keep_owners(tmp_path):
    src, snap, dst = tmp_path / "src", tmp_path / "snap", tmp_path / "dst"
    _tree(src)
    copy_snapshot(src, snap)
    dst.mkdir()
    sync_tree(snap, dst)
    for rel in (".", "data", "data/mailbox.sqlite"):
        assert os.stat(snap / rel).st_uid == 4990, rel
        assert os.stat(dst / rel).st_uid == 4990, rel
        assert os.stat(dst / rel).st_gid == 4990, rel


def test_sync_fixes_owner_of_unchanged_file(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    sync_tree(src, dst)
    os.chown(dst / "data" / "mailbox.sqlite", 0, 0)
    sync_tree(src, dst)
    assert os.stat(dst / "data" / "mailbox.sqlite").st_uid == 4990
