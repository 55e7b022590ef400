"""Processes of the stand-in: spawn, find, stop. A pid file under ``$ZIMBRA_HOME/log`` names a
running process only if that process is alive and carries the stand-in's tag in its command
line, so a stale pid file (or a recycled pid) reads as "not running", as on a real host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from . import config

# An idle process that takes `$1` seconds to shut down after SIGTERM, like a daemon flushing.
IDLE_SCRIPT = (
    'trap \'kill $! 2>/dev/null; sleep "$1"; exit 0\' TERM; '
    "while :; do sleep 3600 & wait $!; done"
)


def tag(process: str) -> str:
    return "zmstandin-" + process


def pid_file(cfg: dict[str, Any], process: str) -> str:
    return os.path.join(config.log_dir(cfg), process + ".pid")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_ours(pid: int, process: str) -> bool:
    if tag(process) not in _cmdline(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def running_pid(cfg: dict[str, Any], process: str) -> int | None:
    try:
        with open(pid_file(cfg, process), encoding="ascii") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_ours(pid, process) else None


def write_pid(cfg: dict[str, Any], process: str, pid: int) -> None:
    path = pid_file(cfg, process)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{pid}\n")
    os.replace(tmp, path)


def remove_pid(cfg: dict[str, Any], process: str) -> None:
    try:
        os.unlink(pid_file(cfg, process))
    except FileNotFoundError:
        pass


def faults_path(cfg: dict[str, Any]) -> str:
    """The lab's fault file of this host (``lab fault zimbra ...`` writes it)."""
    return os.path.join(cfg["zimbra_home"], "conf", "x-lab-faults.json")


def start_failure(cfg: dict[str, Any], process: str) -> str | None:
    """The message `process` dies with when it starts, if the lab injected a start failure."""
    try:
        with open(faults_path(cfg), encoding="utf-8") as handle:
            failures = json.load(handle).get("start_failure", {})
    except (OSError, ValueError):
        return None
    return failures.get(process)


def spawn(cfg: dict[str, Any], process: str) -> subprocess.Popen:
    """Start `process` detached (its own session, output to its log file)."""
    os.makedirs(config.log_dir(cfg), exist_ok=True)
    log = open(os.path.join(config.log_dir(cfg), process + ".log"), "ab")  # noqa: SIM115
    kind = config.DAEMON_KINDS.get(process)
    failure = start_failure(cfg, process)
    if failure is not None:
        # The lab's injected start failure: the process dies at once with its message in its
        # log, as a mailboxd that cannot bind its port or a mysqld with a damaged table does.
        argv = ["/bin/sh", "-c", 'echo "$1" >&2; exit 1', tag(process), failure]
    elif kind:
        argv = [sys.executable, "-m", __package__, "daemon", process, "--tag", tag(process)]
    else:
        stop_delay = f"{config.timing(cfg, process, 'stop'):g}"
        argv = ["/bin/sh", "-c", IDLE_SCRIPT, tag(process), stop_delay]
    env = dict(os.environ, ZIMBRA_HOME=cfg["zimbra_home"])
    try:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True, cwd=cfg["zimbra_home"],
        )
    finally:
        log.close()
    # Known from birth, so that kill_all finds a process still starting up.
    with open(os.path.join(config.log_dir(cfg), process + ".spawn"), "w",
              encoding="ascii") as handle:
        handle.write(f"{child.pid}\n")
    return child


def wait_ready(cfg: dict[str, Any], process: str, child: subprocess.Popen) -> bool:
    """Bring `process` to "running": idle ones after their start time, daemons when they write
    their own pid file (after binding their port). False if it died first or timed out."""
    deadline = time.monotonic() + float(cfg.get("start_timeout", 600))
    if process not in config.DAEMON_KINDS:
        start_delay = config.timing(cfg, process, "start")
        end = time.monotonic() + start_delay
        while time.monotonic() < end:
            if child.poll() is not None:
                return False
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        write_pid(cfg, process, child.pid)
        return True
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        if running_pid(cfg, process) == child.pid:
            return True
        time.sleep(0.05)
    child.kill()
    return False


def stop(cfg: dict[str, Any], process: str) -> bool:
    """SIGTERM, then wait for the process to finish its shutdown; SIGKILL after stop_timeout.
    Returns False if it was not running."""
    pid = running_pid(cfg, process)
    if pid is None:
        remove_pid(cfg, process)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + float(cfg.get("stop_timeout", 1800))
    while _is_ours(pid, process) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_ours(pid, process):
        kill_group(pid)
    remove_pid(cfg, process)
    return True


def kill_group(pid: int) -> None:
    # Each process leads its own session and group: the group takes its children with it.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all(cfg: dict[str, Any]) -> list[str]:
    """SIGKILL every stand-in process of this host at once (lab teardown, test cleanup)."""
    killed = []
    for name in sorted(os.listdir(config.log_dir(cfg))) if os.path.isdir(config.log_dir(cfg)) \
            else []:
        process, ext = os.path.splitext(name)
        if ext not in (".pid", ".spawn"):
            continue
        path = os.path.join(config.log_dir(cfg), name)
        try:
            with open(path, encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if _is_ours(pid, process):
            kill_group(pid)
            if process not in killed:
                killed.append(process)
        os.unlink(path)
    return killed


def log_tail(cfg: dict[str, Any], process: str, lines: int = 5) -> str:
    try:
        with open(os.path.join(config.log_dir(cfg), process + ".log"), encoding="utf-8",
                  errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""
