"""Volume data on the shared file system: in-place tree sync, snapshots, read-only marks.

A volume is a plain directory ``<san>/<cluster>/<volume>/``; a lab host bind-mounts it.
A ``dp`` volume is made immutable (``chattr -R +i``) so that nothing, root included,
can write into it while it is a SnapMirror destination; the emulator lifts the mark only
for the duration of a transfer and for good on break. Trees are synced in place (never
replaced by a rename) so that a bind mount taken on the directory keeps seeing it.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
import subprocess
from pathlib import Path

LOG = logging.getLogger(__name__)


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _same_owner(src: str | Path, dst: str | Path) -> None:
    """Give ``dst`` the owner of ``src``: SnapMirror copies blocks, so a volume keeps the
    owners of its files (a mailbox's files stay the zimbra user's on the other site)."""
    st = os.lstat(src)
    try:
        os.lchown(dst, st.st_uid, st.st_gid)
    except PermissionError:  # not root (unit tests): owners cannot be given away
        pass


def sync_tree(src: Path, dst: Path) -> int:
    """Make ``dst`` an exact copy of ``src`` in place, owners included; return the bytes written."""
    dst.mkdir(parents=True, exist_ok=True)
    if src.exists():
        _same_owner(src, dst)
    written = 0
    src_entries = {e.name: e for e in os.scandir(src)} if src.exists() else {}
    for entry in os.scandir(dst):
        if entry.name not in src_entries or (
            entry.is_dir(follow_symlinks=False) != src_entries[entry.name].is_dir(follow_symlinks=False)
        ):
            target = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(target)
            else:
                target.unlink()
    for name, entry in src_entries.items():
        target = dst / name
        if entry.is_dir(follow_symlinks=False):
            written += sync_tree(Path(entry.path), target)
        elif entry.is_symlink():
            if target.is_symlink() and os.readlink(target) == os.readlink(entry.path):
                continue
            if target.exists() or target.is_symlink():
                target.unlink()
            os.symlink(os.readlink(entry.path), target)
            _same_owner(entry.path, target)
        else:
            if target.exists() and filecmp.cmp(entry.path, target, shallow=False):
                _same_owner(entry.path, target)
                continue
            shutil.copy2(entry.path, target)
            _same_owner(entry.path, target)
            written += entry.stat(follow_symlinks=False).st_size
    return written


def copy_snapshot(src: Path, snap_dir: Path) -> None:
    """A snapshot is a full copy (the lab's volumes are small)."""
    if snap_dir.exists():
        shutil.rmtree(snap_dir)
    snap_dir.parent.mkdir(parents=True, exist_ok=True)
    if src.exists():
        shutil.copytree(src, snap_dir, symlinks=True)
        for root, dirs, files in os.walk(src):
            for name in [".", *dirs, *files]:
                path = os.path.normpath(os.path.join(root, name))
                _same_owner(path, snap_dir / os.path.relpath(path, src))
    else:
        snap_dir.mkdir()


class ReadOnlyMarker:
    """Applies or lifts the immutable flag on a whole tree; best effort.

    On file systems without the flag (tmpfs, some overlays) it logs once and becomes a
    no-op: the emulator still refuses API writes, and hosts should bind-mount ``ro``.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and shutil.which("chattr") is not None

    def set(self, path: Path, read_only: bool) -> None:
        if not self.enabled or not path.exists():
            return
        flag = "+i" if read_only else "-i"
        res = subprocess.run(["chattr", "-R", "-f", flag, str(path)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            LOG.warning("chattr %s %s failed (%s); read-only marks disabled", flag, path, res.stderr.strip())
            self.enabled = False
