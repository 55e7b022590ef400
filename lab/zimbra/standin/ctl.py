"""The per-service control scripts (``zmmailboxdctl``, ``zmstorectl``, ``zmmtactl``,
``zmproxyctl``, ...): ``start|stop|restart|status`` with the messages and exit codes of
Zimbra's scripts. ``mysql.server`` refuses to start unless the DB and index volumes are
mounted and writable; ``zmmailboxdctl`` also needs mysql running."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any

from . import config, proc


def volume_problem(cfg: dict[str, Any]) -> str | None:
    """Why the mailbox volumes cannot be used, or None."""
    volumes = cfg.get("volumes") or {}
    mounts = mount_points() if cfg.get("require_mounts", True) else None
    for label in ("db", "index"):
        path = volumes.get(label)
        if not path:
            continue
        if mounts is not None and os.path.realpath(path) not in mounts:
            return f"{path} ({label} volume) is not mounted"
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".zmwrite-"):
                pass
        except OSError as exc:
            return f"{path} ({label} volume) is not writable: {exc.strerror or exc}"
    return None


def mount_points() -> set[str]:
    """Mount points of this mount namespace (bind mounts included, unlike os.path.ismount)."""
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            field = line.split()[4]
            points.add(field.encode().decode("unicode_escape"))
    return points


def _precondition(cfg: dict[str, Any], script: str) -> str | None:
    if script in ("mysql.server", "zmmailboxdctl"):
        problem = volume_problem(cfg)
        if problem:
            return problem
    if script == "zmmailboxdctl" and proc.running_pid(cfg, "mysqld") is None:
        return "mysql is not running"
    return None


def unit(cfg: dict[str, Any], script: str, action: str) -> int:
    process, label = config.UNIT_CTL[script]
    if action == "status":
        if proc.running_pid(cfg, process) is None:
            print(f"{label} is not running.")
            return 1
        print(f"{label} is running.")
        return 0
    if action in ("stop", "restart", "reload"):
        if action == "stop" or proc.running_pid(cfg, process) is not None:
            print(f"Stopping {label}...", end="", flush=True)
            print("done." if proc.stop(cfg, process) else f"{label} is not running.")
        if action == "stop":
            return 0
    if action in ("start", "restart", "reload"):
        print(f"Starting {label}...", end="", flush=True)
        if proc.running_pid(cfg, process) is not None:
            print(f"{label} is already running.")
            return 0
        problem = _precondition(cfg, script)
        if problem:
            print("failed.")
            print(f"{label} cannot start: {problem}")
            return 1
        child = proc.spawn(cfg, process)
        if proc.wait_ready(cfg, process, child):
            print("done.")
            return 0
        print("failed.")
        tail = proc.log_tail(cfg, process)
        if tail:
            print(tail, end="" if tail.endswith("\n") else "\n")
        return 1
    print(f"{sys.argv[0]} start|stop|restart|reload|status")
    return 1


def _run_member(cfg: dict[str, Any], member: str, action: str, quiet: bool) -> int:
    # In-process rather than through the member's wrapper: the same code and output, without
    # a Python start-up per member (zmcontrol status asks zmstorectl five times).
    if not quiet:
        return unit(cfg, member, action)
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        return unit(cfg, member, action)


def group(cfg: dict[str, Any], script: str, action: str) -> int:
    members, suffix = config.GROUP_CTL[script]
    status = 0
    if action == "status":
        for member in members:
            if _run_member(cfg, member, "status", quiet=True) != 0:
                print(f"{member} is not running{suffix}", flush=True)
                status = 1
        return status
    if action in ("stop", "restart", "reload"):
        for member in reversed(members):
            _run_member(cfg, member, "stop", quiet=False)
        if action == "stop":
            return 0
    if action in ("start", "restart", "reload"):
        for member in members:
            sys.stdout.flush()
            rc = _run_member(cfg, member, "start", quiet=False)
            if rc != 0:
                print(f"{member} failed to start", flush=True)
                status = rc
        return status
    print(f"{sys.argv[0]} start|stop|restart|reload|status")
    return 1


def main(script: str, argv: list[str]) -> int:
    cfg = config.load()
    action = argv[0] if argv else ""
    if script in config.GROUP_CTL:
        return group(cfg, script, action)
    return unit(cfg, script, action)
