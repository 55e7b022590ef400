"""Injected faults, shared by every process of one emulated RING through one JSON file.

The Supervisor and the sproxyd of each site run as separate processes (in separate lab
hosts) but share the state directory. Faults are small and read on every request, so they
live in ``<state>/faults.json``, read under a shared ``flock`` and rewritten atomically under
an exclusive one. Anything can set them: the ``/x-lab/faults`` path of any of the processes,
``python -m lab.scality fault ...``, or the lab's ``fault`` command.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A fault-free RING. ``sproxyd`` and ``backlog`` are keyed by site.
HEALTHY: dict[str, Any] = {
    "sites_down": [],  # sites whose storage and connector answer nothing useful
    "nodes_down": [],  # storage node names, e.g. "dc1-node2"
    "disks_out": [],  # disk names out of service, e.g. "dc1-store1-disk2"
    "supervisor_unreachable": False,
    "sproxyd": {},  # site -> {"status": 5xx or 0, "delay": seconds, "delete_423": count, -1 = always}
    "backlog": {},  # site -> extra rebuild tasks reported on top of the real ones
}
SPROXYD_DEFAULTS: dict[str, Any] = {"status": 0, "delay": 0.0, "delete_423": 0}


def normalise(faults: dict[str, Any]) -> dict[str, Any]:
    """Fill in missing keys and reject unknown ones (a typo must not silently do nothing)."""
    unknown = set(faults) - set(HEALTHY)
    if unknown:
        raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
    out = copy.deepcopy(HEALTHY)
    out.update(copy.deepcopy(faults))
    for key in ("sites_down", "nodes_down", "disks_out"):
        if not isinstance(out[key], list) or not all(isinstance(x, str) for x in out[key]):
            raise ValueError(f"{key} must be a list of names")
        out[key] = sorted(set(out[key]))
    out["supervisor_unreachable"] = bool(out["supervisor_unreachable"])
    for site, conf in list(out["sproxyd"].items()):
        unknown = set(conf) - set(SPROXYD_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown sproxyd fault(s) for {site}: {', '.join(sorted(unknown))}")
        merged = dict(SPROXYD_DEFAULTS, **conf)
        status = int(merged["status"])
        if status and not 500 <= status <= 599:
            raise ValueError("sproxyd status fault must be 0 or a 5xx code")
        out["sproxyd"][site] = {
            "status": status,
            "delay": float(merged["delay"]),
            "delete_423": int(merged["delete_423"]),
        }
    out["backlog"] = {site: int(n) for site, n in out["backlog"].items()}
    return out


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a partial update: lists and flags replace, per-site maps merge per site."""
    merged = copy.deepcopy(current)
    for key, value in patch.items():
        if key == "sproxyd" and isinstance(value, dict):
            for site, conf in value.items():
                merged.setdefault("sproxyd", {}).setdefault(site, {}).update(conf)
        elif key == "backlog" and isinstance(value, dict):
            merged.setdefault("backlog", {}).update(value)
        else:
            merged[key] = value
    return normalise(merged)


class FaultStore:
    """The faults of one RING, in ``<state_dir>/faults.json``."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "faults.json"
        self._lock_path = self.dir / "faults.lock"

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, mode)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_unlocked(self) -> dict[str, Any]:
        try:
            return normalise(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return copy.deepcopy(HEALTHY)

    def _write_unlocked(self, faults: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(faults, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any]:
        with self._locked(fcntl.LOCK_SH):
            return self._read_unlocked()

    def update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Read-modify-write under the exclusive lock; returns the new faults."""
        with self._locked(fcntl.LOCK_EX):
            new = normalise(change(self._read_unlocked()))
            self._write_unlocked(new)
            return new

    def patch(self, patch: dict[str, Any]) -> dict[str, Any]:
        return self.update(lambda cur: merge(cur, patch))

    def heal(self) -> dict[str, Any]:
        return self.update(lambda _cur: copy.deepcopy(HEALTHY))

    def take_delete_lock(self, site: str) -> bool:
        """Consume one injected 423 for ``site``; True if this DELETE must answer 423."""
        answer = False

        def change(cur: dict[str, Any]) -> dict[str, Any]:
            nonlocal answer
            conf = cur["sproxyd"].get(site)
            if conf and conf["delete_423"]:
                answer = True
                if conf["delete_423"] > 0:
                    conf["delete_423"] -= 1
            return cur

        self.update(change)
        return answer
