"""The state machine of one emulated ONTAP cluster (no HTTP in here).

What it models, after NetApp's ONTAP REST documentation:

* SnapMirror relationships owned by the destination cluster, states ``uninitialized``,
  ``snapmirrored``, ``paused``, ``broken_off``; a PATCH of ``state`` only *starts* the
  transition: it returns a job, the job succeeds, and the state lands later.
* Transfers (initialize, update, resync) copy the source volume's data as of a snapshot
  taken when the transfer starts; the destination volume is ``dp`` (read-only) until a
  break flips it to ``rw``; a resync flips it back and discards newer destination data.
* Reverse resync: the relationship moves to the other cluster (same UUID) with source and
  destination swapped. Where the relationship lives afterwards is not settled by a public
  source; the emulator chooses the new destination, like every other relationship.
* Jobs with the ONTAP life cycle (queued, running, success, failure), purged after a while.
* FlexClone volumes of any volume (a test failover clones a destination). A transfer leaves
  its snapshot on the destination volume too (``GET /api/storage/volumes/{uuid}/snapshots``
  lists them, oldest first), as SnapMirror replicates the source's snapshots; a clone made
  from one keeps it ("busy") until the clone is deleted; a clone of a ``dp`` volume given no
  ``parent_snapshot`` starts from its newest snapshot, as the volume itself is read-only
  (unverified: the emulator's reading of ONTAP's ``volume clone create``).
* SAN objects (``san.py``): every volume carries a LUN, made and deleted with it; igroups
  and LUN maps from the config (``igroups``, ``lun_maps``) and the API.
* Latencies and faults, set through the lab-only admin path.

Clusters reach each other through a ``Peer`` (HTTP between emulators in the lab, a direct
call in unit tests). Source data is read from the shared SAN directory.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import json
import logging
import shutil
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lab.ontap.data import ReadOnlyMarker, copy_snapshot, sync_tree, tree_size

LOG = logging.getLogger(__name__)

# Error codes (FACTS.md): "4" missing entry, 13303818 invalid transition, 13303844 transfer
# failed, 262197 bad return_timeout. The rest are the emulator's choice (unverified).
E_NOT_FOUND = "4"
E_BAD_TRANSITION = "13303818"
E_TRANSFER_FAILED = "13303844"
E_TRANSFER_IN_PROGRESS = "13303812"  # unverified: "transfer already in progress"
E_RETURN_TIMEOUT = "262197"
E_INVALID_INPUT = "262179"  # unverified: invalid value for a field
E_DUPLICATE = "1"  # unverified: "duplicate entry"
E_UNAUTHORIZED = "6"

TERMINAL_JOB = ("success", "failure")
RUNNING_TRANSFER = ("queued", "transferring")
STATE_OPS = {
    # target: {current: operation}
    "snapmirrored": {"uninitialized": "initialize", "paused": "resume", "broken_off": "resync"},
    "paused": {"snapmirrored": "quiesce"},
    "broken_off": {"snapmirrored": "break", "paused": "break"},
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def body(self) -> dict:
        err = {"message": self.message, "code": self.code}
        if self.target:
            err["target"] = self.target
        return {"error": err}


class PeerUnreachable(Exception):
    pass


class Peer(Protocol):
    def snapshot(self, volume: str, label: str) -> dict: ...
    def adopt(self, record: dict) -> None: ...
    def relationships_from(self, svm: str) -> list[dict]: ...


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def iso_duration(seconds: float) -> str:
    s = max(0, int(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"PT{h}H{m}M{sec}S"


@dataclass
class Latencies:
    job_start: float = 0.05  # queued -> running -> done, seconds
    transition: float = 0.2  # job done -> state lands
    transfer_min: float = 0.2  # shortest transfer
    transfer_rate: float = 0.0  # bytes per second; 0 = unlimited
    changed_bytes: float = 0.0  # emulated changed data a transfer carries on top of the volume's
    job_retention: float = 300.0  # finished jobs vanish after this


@dataclass
class Volume:
    name: str
    uuid: str
    type: str = "rw"
    state: str = "online"
    clone_parent: str | None = None
    clone_snapshot: str | None = None
    # The volume's own snapshots, oldest first: {uuid, name, create_time}.
    snapshots: list[dict] = field(default_factory=list)


@dataclass
class Relationship:
    uuid: str
    source_path: str
    destination_path: str
    state: str = "uninitialized"
    policy: str = "MirrorAllSnapshots"
    exported_snapshot: str | None = None
    exported_time: float | None = None
    transfer: dict | None = None
    last_transfer_type: str | None = None
    last_error: dict | None = None
    pending: str | None = None
    seq: int = 0


@dataclass
class Job:
    uuid: str
    description: str
    state: str = "queued"
    message: str = ""
    code: int = 0
    start_time: float = field(default_factory=now)
    end_time: float | None = None

    def render(self) -> dict:
        rec: dict[str, Any] = {
            "uuid": self.uuid,
            "description": self.description,
            "state": self.state,
            "message": self.message,
            "code": self.code,
            "start_time": iso(self.start_time),
            "_links": {"self": {"href": f"/api/cluster/jobs/{self.uuid}"}},
        }
        if self.end_time is not None:
            rec["end_time"] = iso(self.end_time)
        if self.state == "failure":
            rec["error"] = {"message": self.message, "code": str(self.code)}
        return rec


class Scheduler:
    """Runs callbacks after a delay on worker threads; the only timing source of state."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ontap-work")
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="ontap-sched", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._heap, (now() + max(0.0, delay), next(self._seq), fn))
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._heap or self._heap[0][0] > now()):
                    timeout = self._heap[0][0] - now() if self._heap else None
                    self._cv.wait(timeout)
                if self._stopped:
                    return
                _due, _seq, fn = heapq.heappop(self._heap)
            self._pool.submit(self._safe, fn)

    @staticmethod
    def _safe(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            LOG.exception("scheduled work failed")

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._heap.clear()
            self._cv.notify()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _matches(pattern: str | None, *values: str) -> bool:
    if not pattern:
        return True
    return any(fnmatch.fnmatchcase(v, pattern) for v in values if v)


class Cluster:
    """One ONTAP cluster with one SVM."""

    def __init__(
        self,
        name: str,
        svm: str,
        san_dir: Path,
        state_dir: Path,
        config: dict | None = None,
        peers: dict[str, Peer] | None = None,
        read_only_marks: bool = True,
    ) -> None:
        self.name = name
        self.svm = svm
        self.uuid = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"cluster.{name}"))
        self.svm_uuid = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"svm.{svm}"))
        self.version = {
            "full": "NetApp Release 9.14.1: emulated (zimbra_geo lab)",
            "generation": 9,
            "major": 14,
            "minor": 1,
        }
        self.san_dir = Path(san_dir)
        self.state_dir = Path(state_dir)
        self.config = config or {}
        self.peers: dict[str, Peer] = dict(peers or {})
        self.marker = ReadOnlyMarker(read_only_marks)
        self.lock = threading.RLock()
        self.latencies = Latencies(**self.config.get("latencies", {}))
        self.faults: list[dict] = []
        self.volumes: dict[str, Volume] = {}
        self.relationships: dict[str, Relationship] = {}
        self.jobs: dict[str, Job] = {}
        from lab.ontap.san import San  # san.py builds on this module's errors

        self.san = San(self)
        self._seq = itertools.count(1)
        self._save_pending = False
        self.scheduler = Scheduler()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self._load():
            self._initialise(wipe=False)

    # ------------------------------------------------------------------ set-up, persistence
    @property
    def data_root(self) -> Path:
        return self.san_dir / self.name

    def volume_path(self, name: str) -> Path:
        return self.data_root / name

    def snapshot_path(self, volume: str, snap: str) -> Path:
        return self.data_root / ".snapshots" / volume / snap

    def _initialise(self, wipe: bool) -> None:
        self.volumes.clear()
        self.relationships.clear()
        self.jobs.clear()
        self.san.clear()
        if wipe and self.data_root.exists():
            self._wipe()
        self.data_root.mkdir(parents=True, exist_ok=True)
        for vol in self.config.get("volumes", []):
            self._add_volume(vol["name"], vol.get("type", "rw"), lun=vol.get("lun"))
        for rel in self.config.get("relationships", []):
            r = self._new_relationship(rel["source"], rel["destination"], rel.get("uuid"))
            if rel.get("state", "snapmirrored") == "snapmirrored":
                # Both volumes start empty, so a baseline is already "transferred".
                r.state = "snapmirrored"
                r.exported_snapshot = f"snapmirror.{r.uuid}_baseline"
                r.exported_time = now()
                dst_vol = r.destination_path.split(":", 1)[1]
                if dst_vol in self.volumes:
                    # The baseline transfer left its snapshot on the destination.
                    self.volumes[dst_vol].snapshots = [
                        {"uuid": str(uuidlib.uuid4()), "name": r.exported_snapshot, "create_time": r.exported_time}
                    ]
                    copy_snapshot(self.volume_path(dst_vol), self.snapshot_path(dst_vol, r.exported_snapshot))
                r.last_transfer_type = "initialize"
                r.transfer = {
                    "uuid": str(uuidlib.uuid4()),
                    "state": "success",
                    "bytes_transferred": 0,
                    "end_time": now(),
                    "type": "initialize",
                }
        self.san.initialise(self.config)
        for vol in self.volumes.values():
            self.marker.set(self.volume_path(vol.name), vol.type == "dp")
        self._save()

    def _wipe(self) -> None:
        """Empty every volume in place: a host may hold a bind mount of the directory itself."""
        self.marker.set(self.data_root, False)
        keep = {v["name"] for v in self.config.get("volumes", [])}
        for entry in self.data_root.iterdir():
            if entry.is_dir() and entry.name in keep:
                for child in entry.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _add_volume(
        self, name: str, vtype: str, parent: str | None = None, snap: str | None = None, lun: dict | None = None
    ) -> Volume:
        """A volume and the LUN it carries (a clone's LUN is new: its own UUID and serial, no maps)."""
        vol = Volume(name=name, uuid=str(uuidlib.uuid4()), type=vtype, clone_parent=parent, clone_snapshot=snap)
        self.volumes[name] = vol
        self.san.add_volume_lun(name, spec=lun, parent=parent)
        self.volume_path(name).mkdir(parents=True, exist_ok=True)
        return vol

    def _new_relationship(self, source: str, destination: str, rel_uuid: str | None = None) -> Relationship:
        r = Relationship(
            uuid=rel_uuid or str(uuidlib.uuid4()), source_path=source, destination_path=destination, seq=next(self._seq)
        )
        self.relationships[r.uuid] = r
        return r

    def _save(self) -> None:
        """Persist soon: many changes in a burst (100 PATCHes) make one write."""
        with self.lock:
            if self._save_pending:
                return
            self._save_pending = True
        self.scheduler.call_later(0.05, self._flush)

    def _flush(self) -> None:
        with self.lock:
            self._save_pending = False
            self._write_state()

    def _write_state(self) -> None:
        data = {
            "volumes": [asdict(v) for v in self.volumes.values()],
            "relationships": [asdict(r) | {"pending": None} for r in self.relationships.values()],
            "san": self.san.dump(),
            "faults": self.faults,
            "latencies": asdict(self.latencies),
        }
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.state_dir / "state.json")

    def _load(self) -> bool:
        path = self.state_dir / "state.json"
        if not path.exists():
            return False
        data = json.loads(path.read_text())
        self.volumes = {v["name"]: Volume(**v) for v in data["volumes"]}
        for r in data["relationships"]:
            rel = Relationship(**r)
            if rel.transfer and rel.transfer.get("state") in RUNNING_TRANSFER:
                rel.transfer["state"] = "aborted"  # the emulator restarted mid-transfer
            self.relationships[rel.uuid] = rel
            rel.seq = next(self._seq)
        self.san.load(data.get("san"))
        self.faults = data.get("faults", [])
        self.latencies = Latencies(**data.get("latencies", {}))
        return True

    def reset(self) -> None:
        with self.lock:
            self.faults = []
            self.latencies = Latencies(**self.config.get("latencies", {}))
            self._initialise(wipe=True)

    def close(self) -> None:
        self.scheduler.stop()
        with self.lock:
            self._write_state()

    # ------------------------------------------------------------------ faults and latencies
    def fault(self, kind: str, *names: str) -> dict | None:
        """The first active fault of ``kind`` whose ``match`` glob matches one of ``names``."""
        with self.lock:
            for f in self.faults:
                if f.get("type") == kind and _matches(f.get("match"), *names):
                    return f
        return None

    def add_fault(self, fault: dict) -> dict:
        known = {
            "unreachable",
            "unauthorized",
            "server_error",
            "job_failure",
            "slow_job",
            "refuse_transition",
            "transfer_running",
            "unhealthy",
            "transfer_failure",
        }
        if fault.get("type") not in known:
            raise ApiError(400, E_INVALID_INPUT, f"unknown fault type {fault.get('type')!r}; known: {sorted(known)}")
        with self.lock:
            self.faults.append(dict(fault))
            self._save()
        return fault

    def clear_faults(self, kind: str | None = None) -> None:
        with self.lock:
            self.faults = [f for f in self.faults if kind and f.get("type") != kind]
            self._save()

    def set_latencies(self, values: dict) -> dict:
        with self.lock:
            for key, value in values.items():
                if not hasattr(self.latencies, key):
                    raise ApiError(400, E_INVALID_INPUT, f"unknown latency {key!r}")
                setattr(self.latencies, key, float(value))
            self._save()
            return asdict(self.latencies)

    # ------------------------------------------------------------------ rendering
    def render_relationship(self, r: Relationship) -> dict:
        src_svm, _src_vol = r.source_path.split(":", 1)
        dst_svm, _dst_vol = r.destination_path.split(":", 1)
        rec: dict[str, Any] = {
            "uuid": r.uuid,
            "source": {"path": r.source_path, "svm": {"name": src_svm}},
            "destination": {"path": r.destination_path, "svm": {"name": dst_svm}},
            "state": r.state,
            "policy": {"name": r.policy, "type": "async"},
            "_links": {"self": {"href": f"/api/snapmirror/relationships/{r.uuid}"}},
        }
        reasons = []
        if r.last_error:
            reasons.append(r.last_error)
        unhealthy = self.fault("unhealthy", r.destination_path, r.source_path)
        if unhealthy:
            reasons.append(
                {
                    "code": str(unhealthy.get("code", E_TRANSFER_FAILED)),
                    "message": unhealthy.get("message", "Injected: relationship is unhealthy."),
                    "arguments": [],
                }
            )
        rec["healthy"] = not reasons
        if reasons:
            rec["unhealthy_reason"] = reasons
        if r.exported_snapshot:
            rec["exported_snapshot"] = r.exported_snapshot
            rec["lag_time"] = iso_duration(now() - (r.exported_time or now()))
        if r.transfer:
            t = r.transfer
            rec["transfer"] = {
                "uuid": t["uuid"],
                "state": t["state"],
                "bytes_transferred": t.get("bytes_transferred", 0),
            }
            if t.get("end_time"):
                rec["transfer"]["end_time"] = iso(t["end_time"])
        if r.last_transfer_type:
            rec["last_transfer_type"] = r.last_transfer_type
        return rec

    def render_transfer(self, r: Relationship) -> dict | None:
        if not r.transfer:
            return None
        t = r.transfer
        rec = {
            "uuid": t["uuid"],
            "state": t["state"],
            "bytes_transferred": t.get("bytes_transferred", 0),
            "relationship": {"uuid": r.uuid, "destination": {"path": r.destination_path}},
            "snapshot": t.get("snapshot"),
            "_links": {"self": {"href": f"/api/snapmirror/relationships/{r.uuid}/transfers/{t['uuid']}"}},
        }
        if t.get("end_time"):
            rec["end_time"] = iso(t["end_time"])
        return rec

    def render_volume(self, v: Volume) -> dict:
        rec: dict[str, Any] = {
            "uuid": v.uuid,
            "name": v.name,
            "svm": {"name": self.svm, "uuid": self.svm_uuid},
            "type": v.type,
            "state": v.state,
            "style": "flexvol",
            "size": tree_size(self.volume_path(v.name)),
            "clone": {"is_flexclone": v.clone_parent is not None},
            # Lab extension: where the volume's files are, for hosts to bind-mount.
            "x_lab": {"data_path": str(self.volume_path(v.name)), "read_only": v.type == "dp"},
            "_links": {"self": {"href": f"/api/storage/volumes/{v.uuid}"}},
        }
        if v.clone_parent:
            rec["clone"]["parent_volume"] = {"name": v.clone_parent}
            if v.clone_snapshot:
                rec["clone"]["parent_snapshot"] = {"name": v.clone_snapshot}
        return rec

    def relationship_records(self) -> list[dict]:
        with self.lock:
            rels = sorted(self.relationships.values(), key=lambda r: r.seq)
            return [self.render_relationship(r) for r in rels]

    def source_side_records(self) -> list[dict]:
        """Relationships whose source is this cluster's SVM, as their destinations see them."""
        out: list[dict] = []
        for svm, peer in list(self.peers.items()):
            if svm == self.svm:
                continue
            try:
                out.extend(peer.relationships_from(self.svm))
            except PeerUnreachable:
                LOG.info("peer %s unreachable for a source-side listing", svm)
        return out

    def records_from(self, svm: str) -> list[dict]:
        with self.lock:
            return [
                self.render_relationship(r)
                for r in sorted(self.relationships.values(), key=lambda r: r.seq)
                if r.source_path.split(":", 1)[0] == svm
            ]

    def get_relationship(self, rel_uuid: str) -> Relationship:
        r = self.relationships.get(rel_uuid)
        if r is None:
            raise ApiError(404, E_NOT_FOUND, "entry doesn't exist", "uuid")
        return r

    def volume_by_uuid(self, vol_uuid: str) -> Volume:
        for v in self.volumes.values():
            if v.uuid == vol_uuid:
                return v
        raise ApiError(404, E_NOT_FOUND, "entry doesn't exist", "uuid")

    def job_records(self) -> list[dict]:
        self._purge_jobs()
        with self.lock:
            return [j.render() for j in self.jobs.values()]

    def get_job(self, job_uuid: str) -> dict:
        self._purge_jobs()
        with self.lock:
            job = self.jobs.get(job_uuid)
            if job is None:
                raise ApiError(404, E_NOT_FOUND, "entry doesn't exist", "uuid")
            return job.render()

    def _purge_jobs(self) -> None:
        with self.lock:
            limit = now() - self.latencies.job_retention
            for key in [k for k, j in self.jobs.items() if j.end_time is not None and j.end_time < limit]:
                del self.jobs[key]

    # ------------------------------------------------------------------ jobs
    def _run_job(
        self,
        description: str,
        names: tuple[str, ...],
        work: Callable[[], None],
        on_failure: Callable[[ApiError], None] | None = None,
    ) -> Job:
        """Queue a job: after the job latency it runs ``work``; an ApiError fails the job."""
        job = Job(uuid=str(uuidlib.uuid4()), description=description)
        with self.lock:
            self.jobs[job.uuid] = job
        delay = self.latencies.job_start
        slow = self.fault("slow_job", *names)
        if slow:
            delay += float(slow.get("seconds", 5))

        def start() -> None:
            with self.lock:
                job.state = "running"
            failing = self.fault("job_failure", *names)
            try:
                if failing:
                    raise ApiError(
                        400, str(failing.get("code", E_BAD_TRANSITION)), failing.get("message", "Injected job failure.")
                    )
                work()
            except ApiError as exc:
                if on_failure:
                    on_failure(exc)
                with self.lock:
                    job.state, job.message, job.code = "failure", exc.message, int(exc.code)
                    job.end_time = now()
                return
            with self.lock:
                job.state, job.message, job.end_time = "success", "success", now()

        self.scheduler.call_later(delay, start)
        return job

    # ------------------------------------------------------------------ SnapMirror operations
    def create_relationship(self, body: dict) -> tuple[Relationship, Job]:
        try:
            source = body["source"]["path"]
            destination = body["destination"]["path"]
        except (KeyError, TypeError):
            raise ApiError(400, E_INVALID_INPUT, "source.path and destination.path are required") from None
        dst_svm, dst_vol = destination.split(":", 1) if ":" in destination else ("", "")
        if dst_svm != self.svm:
            raise ApiError(400, E_INVALID_INPUT, f'SVM "{dst_svm}" is not on this cluster', "destination.path")
        vol = self.volumes.get(dst_vol)
        if vol is None:
            raise ApiError(
                404, E_NOT_FOUND, f'Volume "{dst_vol}" does not exist in SVM "{self.svm}"', "destination.path"
            )
        if vol.type != "dp":
            raise ApiError(400, E_INVALID_INPUT, f'Destination volume "{destination}" must be of type DP')
        src_svm = source.split(":", 1)[0]
        if src_svm not in self.peers:
            raise ApiError(400, E_INVALID_INPUT, f'SVM "{src_svm}" is not peered with SVM "{self.svm}"')
        with self.lock:
            if any(r.destination_path == destination for r in self.relationships.values()):
                raise ApiError(409, E_DUPLICATE, f"A relationship with destination {destination} already exists")
            rel = self._new_relationship(source, destination)
            if body.get("policy", {}).get("name"):
                rel.policy = body["policy"]["name"]
            self._save()
        want = body.get("state")

        def work() -> None:
            if want == "snapmirrored":
                self._start_state_change(rel, "snapmirrored")

        return rel, self._run_job("SnapMirror Create", (destination, source), work)

    def delete_relationship(self, rel_uuid: str) -> Job:
        with self.lock:
            rel = self.get_relationship(rel_uuid)
            if rel.transfer and rel.transfer["state"] in RUNNING_TRANSFER:
                raise ApiError(400, E_TRANSFER_IN_PROGRESS, "A transfer is in progress")

        def work() -> None:
            with self.lock:
                self.relationships.pop(rel.uuid, None)
                self._save()

        return self._run_job("SnapMirror Delete", (rel.destination_path,), work)

    def patch_relationship(self, rel_uuid: str, body: dict, force: bool = False) -> Job:
        with self.lock:
            rel = self.get_relationship(rel_uuid)
            names = (rel.destination_path, rel.source_path)
            want_src = (body.get("source") or {}).get("path")
            want_dst = (body.get("destination") or {}).get("path")
            target = body.get("state")
            if want_src and want_dst and (want_src, want_dst) != (rel.source_path, rel.destination_path):
                return self._reverse(rel, want_src, want_dst, target)
            if "policy" in body and body["policy"].get("name"):
                rel.policy = body["policy"]["name"]
            if target is None:
                self._save()
                return self._run_job("SnapMirror Modify", names, lambda: None)
            refused = self.fault("refuse_transition", *names)
            if refused:
                raise ApiError(
                    400,
                    str(refused.get("code", E_BAD_TRANSITION)),
                    refused.get("message", f'Injected: transition to "{target}" refused.'),
                )
            if target not in STATE_OPS:
                raise ApiError(
                    400, E_BAD_TRANSITION, f'Invalid state "{target}" for a PATCH of relationship "{rel.uuid}"', "state"
                )
            if rel.pending:
                raise ApiError(
                    400,
                    E_BAD_TRANSITION,
                    f'Another operation ({rel.pending}) is in progress on "{rel.destination_path}"',
                )
            if target != rel.state and rel.state not in STATE_OPS[target]:
                raise ApiError(
                    400,
                    E_BAD_TRANSITION,
                    f'Cannot change state of relationship "{rel.destination_path}" from "{rel.state}" to "{target}"',
                    "state",
                )
            if (
                target == "broken_off"
                and rel.state != target
                and not force
                and rel.transfer
                and rel.transfer["state"] in RUNNING_TRANSFER
            ):
                raise ApiError(
                    400,
                    E_BAD_TRANSITION,
                    f'Cannot break relationship "{rel.destination_path}": a transfer is in '
                    "progress. Quiesce the relationship or abort the transfer first.",
                    "state",
                )
            if target != rel.state:
                rel.pending = STATE_OPS[target][rel.state]
        if target == rel.state:
            return self._run_job("SnapMirror Modify", names, lambda: None)

        def clear_pending(_exc: ApiError) -> None:
            with self.lock:
                rel.pending = None

        return self._run_job(
            f"SnapMirror {rel.pending}", names, lambda: self._start_state_change(rel, target), on_failure=clear_pending
        )

    def _start_state_change(self, rel: Relationship, target: str) -> None:
        """Called when the job runs: schedule the landing of the state."""
        op = STATE_OPS[target].get(rel.state)
        if op in ("initialize", "resync"):
            with self.lock:
                rel.pending = op
            self._start_transfer(rel, op)
            return
        if op == "break" and rel.transfer and rel.transfer["state"] in RUNNING_TRANSFER:
            self._abort(rel)  # force=true breaks through a running transfer

        def land() -> None:
            with self.lock:
                if op == "quiesce" and rel.transfer and rel.transfer["state"] in RUNNING_TRANSFER:
                    # A quiesce lets the running transfer finish before the state lands.
                    self.scheduler.call_later(0.05, land)
                    return
            if op == "break":
                # Writable before anyone can see broken_off.
                self._set_volume_type(rel.destination_path.split(":", 1)[1], "rw")
            with self.lock:
                rel.state = target
                rel.pending = None
                self._save()

        self.scheduler.call_later(self.latencies.transition, land)

    def _set_volume_type(self, vol_name: str, vtype: str) -> None:
        with self.lock:
            vol = self.volumes.get(vol_name)
            if vol is None:
                return
            vol.type = vtype
            self._save()
        self.marker.set(self.volume_path(vol_name), vtype == "dp")

    def start_update(self, rel_uuid: str) -> tuple[str, Job]:
        with self.lock:
            rel = self.get_relationship(rel_uuid)
            if rel.state != "snapmirrored" or rel.pending:
                raise ApiError(
                    400,
                    E_BAD_TRANSITION,
                    f'Cannot update relationship "{rel.destination_path}" in state '
                    f'"{rel.pending or rel.state}"; it must be "snapmirrored"',
                )
            if rel.transfer and rel.transfer["state"] in RUNNING_TRANSFER:
                raise ApiError(
                    400, E_TRANSFER_IN_PROGRESS, f'A transfer is already in progress on "{rel.destination_path}"'
                )
            transfer_uuid = self._start_transfer(rel, "update", queue_only=True)
        job = self._run_job(
            "SnapMirror Transfer",
            (rel.destination_path, rel.source_path),
            lambda: self._run_transfer(rel, "update"),
            on_failure=lambda exc: self._fail_transfer(rel, exc.message, exc.code),
        )
        return transfer_uuid, job

    def _start_transfer(self, rel: Relationship, kind: str, queue_only: bool = False) -> str:
        with self.lock:
            rel.transfer = {"uuid": str(uuidlib.uuid4()), "state": "queued", "bytes_transferred": 0, "type": kind}
            transfer_uuid = rel.transfer["uuid"]
        if not queue_only:
            self._run_transfer(rel, kind)
        return transfer_uuid

    def _fail_transfer(self, rel: Relationship, message: str, code: str = E_TRANSFER_FAILED) -> None:
        with self.lock:
            if rel.transfer:
                rel.transfer["state"] = "failed"
                rel.transfer["end_time"] = now()
            rel.last_error = {"code": code, "message": message, "arguments": []}
            if rel.pending in ("initialize", "resync"):
                rel.pending = None
            self._save()

    def _run_transfer(self, rel: Relationship, kind: str) -> None:
        """Take the source snapshot now; copy it after the transfer's duration."""
        src_svm, src_vol = rel.source_path.split(":", 1)
        dst_vol = rel.destination_path.split(":", 1)[1]
        names = (rel.destination_path, rel.source_path)
        with self.lock:
            transfer = rel.transfer
            if not transfer or transfer["state"] != "queued":
                return
            transfer["state"] = "transferring"
        peer = self.peers.get(src_svm)
        failing = self.fault("transfer_failure", *names)
        if peer is None or failing:
            msg = failing.get("message", "Injected transfer failure.") if failing else f"SVM {src_svm} not peered"
            self._fail_transfer(rel, f"Transfer failed: {msg}")
            return
        try:
            snap = peer.snapshot(src_vol, rel.uuid)
        except PeerUnreachable as exc:
            self._fail_transfer(
                rel, f'Transfer failed: the source cluster of "{rel.source_path}" is unreachable ({exc}).'
            )
            return
        size = tree_size(Path(snap["path"]))
        duration = self.latencies.transfer_min
        if self.latencies.transfer_rate > 0:
            duration = max(duration, (size + self.latencies.changed_bytes) / self.latencies.transfer_rate)
        transfer["snapshot"] = snap["name"]

        def finish() -> None:
            with self.lock:
                if transfer["state"] != "transferring" or rel.transfer is not transfer:
                    return  # aborted meanwhile
                if self.fault("transfer_running", *names):
                    self.scheduler.call_later(0.05, finish)
                    return
            dst_path = self.volume_path(dst_vol)
            self.marker.set(dst_path, False)
            written = sync_tree(Path(snap["path"]), dst_path)
            self._keep_snapshot(dst_vol, rel.uuid, snap)
            self.marker.set(dst_path, True)
            with self.lock:
                if transfer["state"] != "transferring":
                    return
                transfer.update(state="success", bytes_transferred=written, end_time=now())
                rel.exported_snapshot = snap["name"]
                rel.exported_time = snap["create_time"]
                rel.last_transfer_type = kind
                rel.last_error = None
                if kind in ("initialize", "resync"):
                    rel.state = "snapmirrored"
                    rel.pending = None
                self._save()

        if kind == "resync":
            self._set_volume_type(dst_vol, "dp")
        self.scheduler.call_later(duration, finish)

    def abort_transfer(self, rel_uuid: str, transfer_uuid: str, state: str) -> dict:
        with self.lock:
            rel = self.get_relationship(rel_uuid)
            if not rel.transfer or rel.transfer["uuid"] != transfer_uuid:
                raise ApiError(404, E_NOT_FOUND, "entry doesn't exist", "uuid")
            if state not in ("aborted", "hard_aborted"):
                raise ApiError(400, E_INVALID_INPUT, 'state must be "aborted" or "hard_aborted"', "state")
            if rel.transfer["state"] in RUNNING_TRANSFER:
                self._abort(rel, state)
            return self.render_transfer(rel) or {}

    def _abort(self, rel: Relationship, state: str = "aborted") -> None:
        with self.lock:
            if rel.transfer:
                rel.transfer.update(state=state, end_time=now())
            if rel.pending in ("initialize", "resync"):
                rel.pending = None
            self._save()

    # ------------------------------------------------------------------ reverse resync
    def _reverse(self, rel: Relationship, new_src: str, new_dst: str, target: str | None) -> Job:
        if (new_src, new_dst) != (rel.destination_path, rel.source_path):
            raise ApiError(
                400, E_INVALID_INPUT, "To reverse a relationship, source.path and destination.path must be swapped"
            )
        if target not in ("snapmirrored", None):
            raise ApiError(400, E_BAD_TRANSITION, 'A reverse resync must ask for state "snapmirrored"')
        if (
            rel.pending
            or rel.state not in ("broken_off", "snapmirrored")
            or (rel.transfer and rel.transfer["state"] in RUNNING_TRANSFER)
        ):
            raise ApiError(
                400,
                E_BAD_TRANSITION,
                f'Cannot reverse relationship "{rel.destination_path}" in state "{rel.pending or rel.state}"',
                "state",
            )
        rel.pending = "reverse"
        peer_svm = new_dst.split(":", 1)[0]

        def work() -> None:
            peer = self.peers.get(peer_svm)
            try:
                if peer is None:
                    raise PeerUnreachable(f"SVM {peer_svm} is not peered")
                peer.adopt(
                    {
                        "uuid": rel.uuid,
                        "source": new_src,
                        "destination": new_dst,
                        "policy": rel.policy,
                        "exported_snapshot": rel.exported_snapshot,
                        "exported_time": rel.exported_time,
                    }
                )
            except PeerUnreachable as exc:
                with self.lock:
                    rel.pending = None
                raise ApiError(
                    400, E_TRANSFER_FAILED, f'Reverse resync of "{rel.destination_path}" failed: {exc}'
                ) from None
            with self.lock:
                self.relationships.pop(rel.uuid, None)
                self._save()

        def clear_pending(_exc: ApiError) -> None:
            with self.lock:
                rel.pending = None

        return self._run_job(
            "SnapMirror Reverse Resync", (rel.destination_path, rel.source_path), work, on_failure=clear_pending
        )

    def adopt(self, record: dict) -> None:
        """Peer call: become the destination of a reversed relationship, then resync."""
        dst_vol = record["destination"].split(":", 1)[1]
        with self.lock:
            if dst_vol not in self.volumes:
                raise ApiError(404, E_NOT_FOUND, f'Volume "{dst_vol}" does not exist')
            rel = Relationship(
                uuid=record["uuid"],
                source_path=record["source"],
                destination_path=record["destination"],
                state="broken_off",
                policy=record.get("policy", "MirrorAllSnapshots"),
                exported_snapshot=record.get("exported_snapshot"),
                exported_time=record.get("exported_time"),
                seq=next(self._seq),
            )
            self.relationships[rel.uuid] = rel
            rel.pending = "resync"
            self._save()
        self._start_transfer(rel, "resync")

    # ------------------------------------------------------------------ peer side: snapshots
    def make_snapshot(self, volume: str, label: str) -> dict:
        with self.lock:
            if volume not in self.volumes:
                raise ApiError(404, E_NOT_FOUND, f'Volume "{volume}" does not exist')
        created = now()
        name = f"snapmirror.{label}_{int(created * 1000)}"
        path = self.snapshot_path(volume, name)
        copy_snapshot(self.volume_path(volume), path)
        # Keep the two newest SnapMirror snapshots of this relationship, like ONTAP's policy.
        snaps = sorted(p for p in path.parent.iterdir() if p.name.startswith(f"snapmirror.{label}_"))
        for old in snaps[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        return {"name": name, "path": str(path), "create_time": created}

    def _keep_snapshot(self, volume: str, label: str, snap: dict) -> None:
        """The destination's copy of a transferred snapshot; the two newest of the relationship
        stay, and any snapshot a clone was made from (busy, as ONTAP keeps it)."""
        copy_snapshot(self.volume_path(volume), self.snapshot_path(volume, snap["name"]))
        with self.lock:
            vol = self.volumes.get(volume)
            if vol is None:
                return
            vol.snapshots = [s for s in vol.snapshots if s["name"] != snap["name"]] + [
                {"uuid": str(uuidlib.uuid4()), "name": snap["name"], "create_time": snap["create_time"]}
            ]
            busy = {v.clone_snapshot for v in self.volumes.values() if v.clone_parent == volume}
            ours = [s for s in vol.snapshots if s["name"].startswith(f"snapmirror.{label}_")]
            drop = {s["name"] for s in ours[:-2] if s["name"] not in busy}
            vol.snapshots = [s for s in vol.snapshots if s["name"] not in drop]
            self._save()
        for name in drop:
            shutil.rmtree(self.snapshot_path(volume, name), ignore_errors=True)

    def render_snapshot(self, vol: Volume, snap: dict) -> dict:
        return {
            "uuid": snap["uuid"],
            "name": snap["name"],
            "create_time": iso(snap["create_time"]),
            "volume": {"name": vol.name, "uuid": vol.uuid},
            "svm": {"name": self.svm, "uuid": self.svm_uuid},
            "_links": {"self": {"href": f"/api/storage/volumes/{vol.uuid}/snapshots/{snap['uuid']}"}},
        }

    # ------------------------------------------------------------------ volumes
    def create_volume(self, body: dict) -> tuple[Volume, Job]:
        name = body.get("name")
        if not name or not isinstance(name, str) or "/" in name:
            raise ApiError(400, E_INVALID_INPUT, 'Field "name" is required', "name")
        svm = (body.get("svm") or {}).get("name", self.svm)
        if svm != self.svm:
            raise ApiError(400, E_INVALID_INPUT, f'SVM "{svm}" does not exist', "svm.name")
        clone = body.get("clone") or {}
        with self.lock:
            if name in self.volumes:
                raise ApiError(409, E_DUPLICATE, f"Duplicate volume name {name}", "name")
            parent = None
            snap_name = (clone.get("parent_snapshot") or {}).get("name")
            if clone.get("is_flexclone"):
                parent = (clone.get("parent_volume") or {}).get("name")
                if parent not in self.volumes:
                    raise ApiError(404, E_NOT_FOUND, f'Volume "{parent}" does not exist', "clone.parent_volume.name")
                known = [s["name"] for s in self.volumes[parent].snapshots]
                if snap_name and known and snap_name not in known:
                    raise ApiError(
                        404, E_NOT_FOUND, f'Snapshot "{snap_name}" does not exist', "clone.parent_snapshot.name"
                    )
                if not snap_name and self.volumes[parent].type == "dp" and known:
                    snap_name = known[-1]  # a read-only parent: its newest snapshot
            vol = self._add_volume(name, body.get("type", "rw"), parent, snap_name)
            self._save()

        def work() -> None:
            if parent:
                src = self.volume_path(parent)
                snap = vol.clone_snapshot
                if snap:
                    src = self.snapshot_path(parent, snap)
                    if not src.exists():
                        raise ApiError(404, E_NOT_FOUND, f'Snapshot "{snap}" does not exist')
                sync_tree(src, self.volume_path(name))
            if vol.type == "dp":
                self.marker.set(self.volume_path(name), True)

        return vol, self._run_job("Volume Create", (f"{self.svm}:{name}",), work)

    def delete_volume(self, vol_uuid: str) -> Job:
        with self.lock:
            vol = self.volume_by_uuid(vol_uuid)
            path = f"{self.svm}:{vol.name}"
            if any(path in (r.source_path, r.destination_path) for r in self.relationships.values()):
                raise ApiError(400, E_INVALID_INPUT, f'Volume "{vol.name}" is in a SnapMirror relationship')
            clones = sorted(v.name for v in self.volumes.values() if v.clone_parent == vol.name)
            if clones:
                raise ApiError(400, E_INVALID_INPUT, f'Volume "{vol.name}" has FlexClone volumes: {", ".join(clones)}')

        def work() -> None:
            with self.lock:
                self.volumes.pop(vol.name, None)
                self.san.drop_volume(vol.name)
                self._save()
            self.marker.set(self.volume_path(vol.name), False)
            shutil.rmtree(self.volume_path(vol.name), ignore_errors=True)

        return self._run_job("Volume Delete", (path,), work)
