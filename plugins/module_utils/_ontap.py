# Copyright: contributors to mailops.zimbra_geo
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ONTAP SnapMirror client over the ``netapp-ontap`` library, and the concurrent driver.

:class:`OntapClient` is the only place that talks to a cluster. It reads relationships,
starts state changes and transfers (never letting the library poll a job: its default is
a 5 s poll interval and a 30 s limit), and reads jobs; it also reads and changes FlexClones
and the LUN maps of SAN volumes. Every failure is raised as :class:`OntapError`, whose
message names the cluster.

:class:`SnapmirrorDriver` takes many relationships to one target state at once:

1. one listing of the cluster's relationships (one GET) gives the current state of all;
2. a plan per relationship: the ordered steps to reach the target, or a refusal; any
   refusal fails the whole run *before any change*;
3. the steps are started concurrently (a thread pool for the PATCH/POST calls), then every
   poll round is one listing plus one job query for all relationships at once, so the wall
   time of 100 relationships stays close to the time of one;
4. a relationship's step is done when its state is seen on the relationship itself (a
   successful job does not mean the state was reached), it fails when its job fails or its
   transfer fails; everything is bounded by one deadline.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    from netapp_ontap import HostConnection
    from netapp_ontap.error import NetAppRestError
    from netapp_ontap.resources import (
        Cluster,
        Igroup,
        Job,
        Lun,
        LunMap,
        SnapmirrorRelationship,
        SnapmirrorTransfer,
        Snapshot,
        Svm,
        Volume,
    )
except ImportError:
    HAS_NETAPP_ONTAP = False
    NETAPP_ONTAP_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_NETAPP_ONTAP = True
    NETAPP_ONTAP_IMPORT_ERROR = None

TARGETS = ("paused", "broken_off", "snapmirrored", "updated", "reversed")
RUNNING = ("queued", "transferring")
LUN_FIELDS = "uuid,name,serial_number,status.read_only,location.volume.name"
RELATIONSHIP_FIELDS = (
    "uuid,source.path,destination.path,state,healthy,unhealthy_reason,lag_time,"
    "exported_snapshot,transfer.uuid,transfer.state,transfer.bytes_transferred,transfer.end_time,"
    "last_transfer_type,policy.name"
)
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class OntapError(Exception):
    """Any failure talking to an ONTAP cluster, or input that cannot be acted on."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def ontap_argument_spec() -> dict:
    """The connection options shared by the modules that talk to an ONTAP cluster."""
    return {
        "hostname": {"type": "str", "required": True},
        "port": {"type": "int", "default": 443},
        "username": {"type": "str", "default": "admin"},
        "password": {"type": "str", "required": True, "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "float", "default": 30.0},
    }


def parse_duration(value: str | None) -> int | None:
    """ISO-8601 duration as ONTAP writes ``lag_time`` (``PT8H35M42S``, ``P1DT2H``) -> seconds."""
    if not value:
        return None
    match = _DURATION.match(value)
    if not match:
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return int(parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"])


def lun_volume(name: str) -> str:
    """The volume of a LUN path (``/vol/<volume>/<lun>``, or ``/vol/<volume>/<qtree>/<lun>``)."""
    parts = name.split("/")
    return parts[2] if len(parts) > 3 and parts[1] == "vol" else name


def normalise(record: dict) -> dict:
    """An ONTAP relationship record -> the flat dict the modules return."""
    transfer = record.get("transfer") or {}
    reasons = record.get("unhealthy_reason") or []
    return {
        "uuid": record.get("uuid"),
        "source": (record.get("source") or {}).get("path"),
        "destination": (record.get("destination") or {}).get("path"),
        "state": record.get("state"),
        "healthy": record.get("healthy"),
        "unhealthy_reasons": [r.get("message", "") for r in reasons if isinstance(r, dict)],
        "lag_time": record.get("lag_time"),
        "lag_seconds": parse_duration(record.get("lag_time")),
        "exported_snapshot": record.get("exported_snapshot"),
        "transfer_state": transfer.get("state"),
        "transfer_uuid": transfer.get("uuid"),
        "transfer_bytes": transfer.get("bytes_transferred"),
        "last_transfer_type": record.get("last_transfer_type"),
        "policy": (record.get("policy") or {}).get("name"),
    }


class OntapClient:
    """One cluster, reached through ``netapp-ontap`` with one connection per thread."""

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> OntapClient:
        """A client from a module's parameters (mailops.zimbra_geo.ontap's options, and
        max_workers where the module has it; otherwise the constructor's default)."""
        extra = {"max_workers": params["max_workers"]} if params.get("max_workers") else {}
        return cls(
            params["hostname"],
            params["username"],
            params["password"],
            port=params["port"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            timeout=params["timeout"],
            **extra,
        )

    def __init__(
        self,
        hostname: str,
        username: str,
        password: str,
        port: int = 443,
        validate_certs: bool = True,
        ca_path: str | None = None,
        timeout: float = 30.0,
        max_workers: int = 16,
    ) -> None:
        if not HAS_NETAPP_ONTAP:
            raise OntapError("the netapp-ontap Python library is required")
        self.hostname = hostname
        self.port = port
        self.where = f"ONTAP cluster {hostname}:{port}"
        self._args = {
            "username": username,
            "password": password,
            "port": port,
            "verify": (ca_path or True) if validate_certs else False,
            "protocol_timeouts": (min(5.0, timeout), timeout),
            "poll_timeout": max(1, int(timeout)),
            "poll_interval": 1,
        }
        self._local = threading.local()
        self.max_workers = max(1, max_workers)
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -------------------------------------------------------------- plumbing
    def connection(self) -> HostConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = HostConnection(self.hostname, **self._args)
            # The library only keeps verify=False away from REQUESTS_CA_BUNDLE; a CA path
            # given here must win over the environment too, and no proxy may sit between.
            conn.session.trust_env = False
            self._local.conn = conn
        return conn

    def _error(self, exc: Exception, what: str) -> OntapError:
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "response_body", None) or {}
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if status == 401:
            return OntapError(f"{self.where} refused the credentials while trying to {what}", err.get("code"), 401)
        if status is None:
            cause = getattr(exc, "cause", exc)
            return OntapError(
                f"{self.where} is unreachable (while trying to {what}): {cause.__class__.__name__}: {cause}"
            )
        message = err.get("message") or str(exc)
        code = err.get("code")
        return OntapError(f"{self.where}: failed to {what}: {message} (HTTP {status}, code {code})", code, status)

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except NetAppRestError as exc:
            raise self._error(exc, what) from None

    def map(self, fn: Callable[[Any], Any], items: list) -> list[tuple[Any, Any, OntapError | None]]:
        """Run ``fn`` on every item concurrently: [(item, result, error)] in input order."""

        def one(item: Any) -> tuple[Any, Any, OntapError | None]:
            try:
                return item, fn(item), None
            except OntapError as exc:
                return item, None, exc

        if len(items) <= 1:
            return [one(i) for i in items]
        if self._pool is None:
            # Kept for the client's life: its threads keep their connections (and TLS sessions).
            self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="ontap")
        return list(self._pool.map(one, items))

    # -------------------------------------------------------------- reads
    def cluster(self) -> dict:
        def get() -> dict:
            res = Cluster()
            res.set_connection(self.connection())
            res.get(fields="name,version")
            return res.to_dict()

        return self.call("read the cluster", get)

    def svm_names(self) -> list[str]:
        def get() -> list[str]:
            return [s.name for s in Svm.get_collection(fields="name", connection=self.connection())]

        return self.call("list the SVMs", get)

    def relationships(self, source_side: bool = False) -> list[dict]:
        """Every relationship whose destination is this cluster (``source_side``: whose source is)."""
        query: dict[str, Any] = {"fields": RELATIONSHIP_FIELDS}
        if source_side:
            query["list_destinations_only"] = "true"

        def get() -> list[dict]:
            # The library's fast path (no schema round trip): a 100-record listing is polled
            # many times, and the schema objects cost ~10 ms per record.
            return [
                normalise(r.resource_data)
                for r in SnapmirrorRelationship.fast_get_collection(connection=self.connection(), **query)
            ]

        return self.call("list SnapMirror relationships", get)

    def jobs(self, uuids: list[str]) -> dict[str, dict]:
        if not uuids:
            return {}

        def get() -> dict[str, dict]:
            out = {}
            for job in Job.fast_get_collection(
                uuid="|".join(uuids), fields="state,message,code", connection=self.connection()
            ):
                rec = job.resource_data
                out[rec["uuid"]] = rec
            return out

        return self.call("read jobs", get)

    # -------------------------------------------------------------- changes (each returns a job UUID)
    @staticmethod
    def _job_uuid(response: Any, what: str) -> str | None:
        try:
            return response.http_response.json()["job"]["uuid"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def set_state(self, uuid: str, state: str, force: bool = False) -> str | None:
        def patch() -> str | None:
            rel = SnapmirrorRelationship(uuid=uuid)
            rel.state = state
            query = {"force": "true"} if force else {}
            return self._job_uuid(rel.patch(poll=False, connection=self.connection(), **query), "patch")

        return self.call(f"set relationship {uuid} to {state}", patch)

    def reverse(self, uuid: str, new_source: str, new_destination: str) -> str | None:
        def patch() -> str | None:
            rel = SnapmirrorRelationship(uuid=uuid)
            rel.source = {"path": new_source}
            rel.destination = {"path": new_destination}
            rel.state = "snapmirrored"
            return self._job_uuid(rel.patch(poll=False, connection=self.connection()), "reverse")

        return self.call(f"reverse relationship {uuid} to {new_source} -> {new_destination}", patch)

    def start_transfer(self, uuid: str) -> tuple[str | None, str | None]:
        """Start an update; returns (transfer UUID, job UUID)."""

        def post() -> tuple[str | None, str | None]:
            transfer = SnapmirrorTransfer(relationship={"uuid": uuid})
            resp = transfer.post(poll=False, connection=self.connection())
            return getattr(transfer, "uuid", None), self._job_uuid(resp, "post")

        return self.call(f"start a transfer on relationship {uuid}", post)

    def abort_transfer(self, uuid: str, transfer_uuid: str) -> None:
        def patch() -> None:
            transfer = SnapmirrorTransfer(relationship={"uuid": uuid}, uuid=transfer_uuid)
            transfer.state = "aborted"
            transfer.patch(poll=False, connection=self.connection())

        self.call(f"abort transfer {transfer_uuid} of relationship {uuid}", patch)

    # -------------------------------------------------------------- volumes and FlexClones
    def volumes(self, svm: str, names: list[str]) -> dict[str, dict]:
        """The named volumes of an SVM that exist: name -> {uuid, name, type, clone}."""
        if not names:
            return {}

        def get() -> dict[str, dict]:
            return {
                v.resource_data["name"]: v.resource_data
                for v in Volume.fast_get_collection(
                    connection=self.connection(),
                    name="|".join(names),
                    **{"svm.name": svm, "fields": "uuid,name,type,clone"},
                )
            }

        return self.call(f"list the volumes {', '.join(names)} of {svm}", get)

    def snapshots(self, volume_uuid: str) -> list[dict]:
        """A volume's snapshots: [{uuid, name, create_time}]."""

        def get() -> list[dict]:
            return [
                s.resource_data
                for s in Snapshot.fast_get_collection(
                    volume_uuid, connection=self.connection(), fields="uuid,name,create_time"
                )
            ]

        return self.call(f"list the snapshots of volume {volume_uuid}", get)

    def create_clone(self, svm: str, name: str, parent: str, snapshot: str) -> str | None:
        """Start a read-write FlexClone of ``parent`` as of ``snapshot``; returns the job UUID."""

        def post() -> str | None:
            vol = Volume(
                name=name,
                svm={"name": svm},
                type="rw",
                clone={"is_flexclone": True, "parent_volume": {"name": parent}, "parent_snapshot": {"name": snapshot}},
            )
            return self._job_uuid(vol.post(poll=False, connection=self.connection()), "post")

        return self.call(f"clone {svm}:{parent} as {name}", post)

    def delete_volume(self, uuid: str, name: str) -> str | None:
        """Start the deletion of a volume (ONTAP takes it offline first); returns the job UUID."""

        def delete() -> str | None:
            return self._job_uuid(Volume(uuid=uuid).delete(poll=False, connection=self.connection()), "delete")

        return self.call(f"delete volume {name}", delete)

    # -------------------------------------------------------------- SAN: LUNs and LUN maps
    def luns(self, svm: str, volumes: list[str]) -> list[dict]:
        """Every LUN in the named volumes of an SVM, in one listing:
        [{uuid, name, serial_number, read_only, volume}] (a LUN's name is /vol/<volume>/<lun>)."""
        if not volumes:
            return []

        def get() -> list[dict]:
            out = []
            for lun in Lun.fast_get_collection(
                connection=self.connection(),
                **{"svm.name": svm, "location.volume.name": "|".join(volumes), "fields": LUN_FIELDS},
            ):
                rec = lun.resource_data
                out.append(
                    {
                        "uuid": rec.get("uuid"),
                        "name": rec.get("name"),
                        "serial_number": rec.get("serial_number"),
                        "read_only": bool((rec.get("status") or {}).get("read_only")),
                        "volume": ((rec.get("location") or {}).get("volume") or {}).get("name"),
                    }
                )
            return out

        return self.call(f"list the LUNs of volumes {', '.join(volumes)} in SVM {svm}", get)

    def igroup(self, svm: str, name: str) -> dict | None:
        """An initiator group of an SVM with its LUN maps, or None when there is none of that
        name: {uuid, name, lun_maps: {LUN uuid: logical unit number}}. ONTAP returns an
        igroup's ``lun_maps`` only when asked for, so one listing gives both."""

        def get() -> dict | None:
            for group in Igroup.fast_get_collection(
                connection=self.connection(), name=name, **{"svm.name": svm, "fields": "uuid,name,lun_maps"}
            ):
                rec = group.resource_data
                if rec.get("name") != name:  # ONTAP's query is a pattern match; keep the exact name
                    continue
                maps = {
                    (m.get("lun") or {}).get("uuid"): m.get("logical_unit_number")
                    for m in rec.get("lun_maps") or []
                    if isinstance(m, dict)
                }
                return {"uuid": rec.get("uuid"), "name": name, "lun_maps": maps}
            return None

        return self.call(f"read initiator group {name} in SVM {svm}", get)

    def map_lun(self, svm: str, lun: str, igroup: str) -> int | None:
        """Map a LUN (by name) to an initiator group; ONTAP answers synchronously (201) and
        picks the lowest free logical unit number, returned here (None if not reported)."""

        def post() -> int | None:
            lun_map = LunMap(svm={"name": svm}, lun={"name": lun}, igroup={"name": igroup})
            response = lun_map.post(poll=False, connection=self.connection(), return_records="true")
            try:
                records = response.http_response.json().get("records") or [{}]
            except (ValueError, AttributeError):
                return None
            number = records[0].get("logical_unit_number")
            return number if isinstance(number, int) else None

        return self.call(f"map LUN {lun} (volume {lun_volume(lun)}) to initiator group {igroup} in SVM {svm}", post)

    def unmap_lun(self, svm: str, lun_uuid: str, lun: str, igroup_uuid: str, igroup: str) -> None:
        """Remove the map of one LUN to one initiator group (other groups' maps stay)."""

        def delete() -> None:
            lun_map = LunMap(lun={"uuid": lun_uuid}, igroup={"uuid": igroup_uuid})
            lun_map.delete(poll=False, connection=self.connection())

        self.call(f"unmap LUN {lun} (volume {lun_volume(lun)}) from initiator group {igroup} in SVM {svm}", delete)


# ---------------------------------------------------------------------------- the driver
STEP_DONE: dict[str, Callable[[dict], bool]] = {
    "quiesce": lambda r: r["state"] == "paused",
    "break": lambda r: r["state"] == "broken_off",
    "resume": lambda r: r["state"] == "snapmirrored",
    "abort": lambda r: r["transfer_state"] not in RUNNING,
    "wait_transfer": lambda r: r["transfer_state"] not in RUNNING,
}
STATE_AFTER = {
    "paused": "paused",
    "broken_off": "broken_off",
    "snapmirrored": "snapmirrored",
    "updated": "snapmirrored",
    "reversed": "snapmirrored",
}


class Refusal(Exception):
    pass


class Work:
    """One relationship on its way to the target."""

    def __init__(self, rel: dict, steps: list[str], reversed_rel: dict | None = None) -> None:
        self.rel = rel
        self.before = dict(rel)
        self.reversed_rel = reversed_rel
        self.steps = steps
        self.index = 0
        self.launched = False
        self.job: str | None = None
        self.transfer: str | None = None
        self.transfer_before = rel.get("transfer_uuid")
        self.error: str | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.lag_at_break: int | None = None
        self.bytes = 0

    @property
    def step(self) -> str | None:
        return self.steps[self.index] if self.index < len(self.steps) else None

    @property
    def active(self) -> bool:
        return self.error is None and self.step is not None


class SnapmirrorDriver:
    """Plans and drives many relationships of one cluster to one target state."""

    def __init__(
        self,
        client: OntapClient,
        target: str,
        transfer_running: str = "wait",
        force: bool = False,
        update_max_lag: int = 0,
        timeout: float = 600.0,
        poll_max: float = 1.0,
    ) -> None:
        if target not in TARGETS:
            raise OntapError(f"unknown target state {target!r}; expected one of {', '.join(TARGETS)}")
        self.client = client
        self.target = target
        self.transfer_running = transfer_running
        self.force = force
        self.update_max_lag = update_max_lag
        self.timeout = timeout
        self.poll_max = poll_max
        self.polls = 0

    # -------------------------------------------------------------- selection
    def select(self, destinations: list[str] | None, svm: str | None, pattern: str | None) -> list[Work]:
        """Read the cluster and plan every selected relationship; refuse bad input up front."""
        cluster = self.client.cluster().get("name", self.client.hostname)
        svms = self.client.svm_names()
        for path in destinations or []:
            if ":" not in path:
                raise OntapError(f"relationship {path!r} is not a destination path of the form svm:volume")
            if path.split(":", 1)[0] not in svms:
                raise OntapError(
                    f"destination {path} is not on cluster {cluster} (its SVMs: {', '.join(svms)}); "
                    "connect to the destination cluster"
                )
        if svm is not None and svm not in svms:
            raise OntapError(f"SVM {svm} is not on cluster {cluster} (its SVMs: {', '.join(svms)})")
        rels = self.client.relationships()
        reversed_rels = self.client.relationships(source_side=True) if self.target == "reversed" else []
        by_dst = {r["destination"]: r for r in rels}
        rev_by_src = {r["source"]: r for r in reversed_rels}
        if destinations:
            wanted = list(dict.fromkeys(destinations))
        else:
            pat = pattern or "*"
            names = [
                p
                for p in list(by_dst) + list(rev_by_src)
                if p.split(":", 1)[0] == svm and fnmatch.fnmatchcase(p.split(":", 1)[1], pat)
            ]
            wanted = list(dict.fromkeys(names))
            if not wanted:
                raise OntapError(
                    f"no SnapMirror relationship on cluster {cluster} has a destination in SVM {svm} matching {pat!r}"
                )
        works, problems = [], []
        for path in wanted:
            rel, rev = by_dst.get(path), rev_by_src.get(path)
            if rel is None and rev is None:
                problems.append(f"{path}: no SnapMirror relationship with this destination on cluster {cluster}")
                continue
            try:
                works.append(self.plan(rel, rev))
            except Refusal as exc:
                problems.append(f"{path}: {exc}")
        if problems:
            raise OntapError("nothing was changed, because: " + "; ".join(problems))
        return works

    # -------------------------------------------------------------- planning
    def plan(self, rel: dict | None, rev: dict | None) -> Work:
        target = self.target
        if target == "reversed" and rev is not None and rel is None:
            if rev["state"] == "snapmirrored" and rev["transfer_state"] not in RUNNING:
                return Work(rev, [], rev)
            raise Refusal(
                f"already reversed, but the reverse relationship is {rev['state']}; drive it on the other cluster"
            )
        if rel is None:
            raise Refusal("no relationship with this destination")
        state, running = rel["state"], rel["transfer_state"] in RUNNING
        unhealthy = rel.get("healthy") is False
        reasons = "; ".join(rel.get("unhealthy_reasons") or []) or "no reason given"

        def transfer_guard() -> list[str]:
            if not running:
                return []
            if self.transfer_running == "abort":
                return ["abort"]
            if self.transfer_running == "fail":
                raise Refusal("a transfer is running (transfer_running=fail)")
            return ["wait_transfer"]

        def needs_health() -> None:
            if unhealthy and not self.force:
                raise Refusal(f"relationship is unhealthy ({reasons}); set force=true to go ahead")

        if state == "uninitialized" and target not in ("snapmirrored",):
            raise Refusal(
                f"relationship is uninitialized; cannot reach {target} (initialize it with state=snapmirrored first)"
            )
        if target == "paused":
            if state == "paused":
                return Work(rel, [])
            if state == "snapmirrored":
                return Work(rel, [*transfer_guard(), "quiesce"])
            raise Refusal(f"relationship is {state}; only a snapmirrored relationship can be paused")
        if target == "broken_off":
            if state == "broken_off":
                return Work(rel, [])
            if state == "paused":
                return Work(rel, [*transfer_guard(), "break"])
            return Work(rel, [*transfer_guard(), "quiesce", "break"])
        if target == "snapmirrored":
            if state == "snapmirrored" and not running:
                return Work(rel, [])
            if state == "snapmirrored":
                return Work(rel, ["wait_transfer"])
            needs_health()
            return Work(rel, [{"uninitialized": "initialize", "paused": "resume", "broken_off": "resync"}[state]])
        if target == "updated":
            if state != "snapmirrored":
                raise Refusal(f"relationship is {state}; only a snapmirrored relationship can be updated")
            needs_health()
            lag = rel.get("lag_seconds")
            if not running and self.update_max_lag > 0 and lag is not None and lag <= self.update_max_lag:
                return Work(rel, [])
            return Work(rel, ["wait_transfer", "update"] if running else ["update"])
        # reversed
        if state == "snapmirrored" and not self.force:
            raise Refusal(
                "relationship is still snapmirrored; break it first (or set force=true after "
                "stopping writes and a final update)"
            )
        if state not in ("broken_off", "snapmirrored"):
            raise Refusal(f"relationship is {state}; only a broken_off relationship can be reversed")
        if running:
            raise Refusal("a transfer is running")
        needs_health()
        return Work(rel, ["reverse"])

    # -------------------------------------------------------------- execution
    def _launch(self, work: Work) -> None:
        step, rel = work.step, work.rel
        uuid = rel["uuid"]
        if step in ("wait_transfer",):
            return
        if step == "abort":
            work.job = None
            if rel.get("transfer_uuid"):
                self.client.abort_transfer(uuid, rel["transfer_uuid"])
            return
        if step == "quiesce":
            work.job = self.client.set_state(uuid, "paused")
        elif step == "break":
            work.lag_at_break = rel.get("lag_seconds")
            work.job = self.client.set_state(uuid, "broken_off", force=self.force)
        elif step in ("resume", "initialize", "resync"):
            work.transfer_before = rel.get("transfer_uuid")
            work.job = self.client.set_state(uuid, "snapmirrored")
        elif step == "update":
            work.transfer, work.job = self.client.start_transfer(uuid)
        elif step == "reverse":
            work.job = self.client.reverse(uuid, rel["destination"], rel["source"])

    def _step_done(self, work: Work, rel: dict | None, rev: dict | None) -> bool:
        step = work.step
        if step == "reverse":
            if rev is None:
                return False
            work.reversed_rel = rev
            if rev["transfer_state"] == "failed":
                work.error = f"reverse resync transfer failed: {'; '.join(rev['unhealthy_reasons'])}"
                return False
            return rev["state"] == "snapmirrored" and rev["transfer_state"] == "success"
        if rel is None:
            work.error = "the relationship disappeared from the cluster"
            return False
        work.rel = rel
        if step in STEP_DONE:
            return STEP_DONE[step](rel)
        if step in ("initialize", "resync"):
            new = rel["transfer_uuid"] and rel["transfer_uuid"] != work.transfer_before
            if new and rel["transfer_state"] == "failed":
                work.error = f"{step} transfer failed: {'; '.join(rel['unhealthy_reasons'])}"
                return False
            return bool(new) and rel["state"] == "snapmirrored" and rel["transfer_state"] == "success"
        if step == "update":
            if rel["transfer_uuid"] != work.transfer:
                return False
            if rel["transfer_state"] in ("failed", "aborted", "hard_aborted"):
                reasons = "; ".join(rel["unhealthy_reasons"]) or rel["transfer_state"]
                work.error = f"update transfer {rel['transfer_state']}: {reasons}"
                return False
            if rel["transfer_state"] == "success":
                work.bytes += rel.get("transfer_bytes") or 0
                return True
        return False

    def run(self, works: list[Work]) -> float:
        """Drive every work to its target; returns the wall time. Errors stay on each work."""
        start = time.monotonic()
        deadline = start + self.timeout
        interval = 0.05
        for w in works:
            if not w.active:
                w.finished = start
        while any(w.active for w in works):
            to_launch = [w for w in works if w.active and not w.launched]
            for w, _res, err in self.client.map(self._launch, to_launch):
                w.launched = True
                if err is not None:
                    w.error = err.message
                    w.finished = time.monotonic()
            if not any(w.active for w in works):
                break
            if time.monotonic() >= deadline:
                for w in works:
                    if w.active:
                        w.error = (
                            f"timed out after {self.timeout:g} s waiting for step {w.step} "
                            f"(state {w.rel.get('state')}, transfer {w.rel.get('transfer_state')})"
                            + (f"; last poll error: {w.rel['poll_error']}" if w.rel.get("poll_error") else "")
                        )
                        w.finished = time.monotonic()
                break
            time.sleep(interval)
            interval = min(self.poll_max, interval * 1.5)
            self._poll(works)
        return time.monotonic() - start

    def _poll(self, works: list[Work]) -> None:
        self.polls += 1
        active = [w for w in works if w.active and w.launched]
        try:
            rels = {r["uuid"]: r for r in self.client.relationships()}
            revs = (
                {r["uuid"]: r for r in self.client.relationships(source_side=True)}
                if any(w.step == "reverse" for w in active)
                else {}
            )
            jobs = self.client.jobs([w.job for w in active if w.job])
        except OntapError as exc:
            # A poll that fails is retried until the deadline; the last error is kept.
            for w in active:
                w.rel = dict(w.rel, poll_error=exc.message)
            return
        for w in active:
            job = jobs.get(w.job or "")
            if job and job.get("state") == "failure":
                w.error = f"{w.step} job failed: {job.get('message')} (code {job.get('code')})"
                w.finished = time.monotonic()
                continue
            if self._step_done(w, rels.get(w.rel["uuid"]), revs.get(w.rel["uuid"])):
                w.index += 1
                w.launched = False
                w.job = None
            if not w.active:
                w.finished = time.monotonic()

    # -------------------------------------------------------------- reporting
    def result(self, work: Work, check_mode: bool) -> dict:
        before, rel = work.before, work.reversed_rel if work.steps and work.steps[-1] == "reverse" else work.rel
        steps = work.steps
        if self.target == "reversed" and not steps and work.reversed_rel is not None:
            # Already reversed: report it in its original orientation, like the others.
            rev = work.reversed_rel
            before = dict(rev, source=rev["destination"], destination=rev["source"])
        changed = bool(steps) and steps != ["wait_transfer"]
        if self.target == "updated" and steps and not check_mode and work.error is None:
            changed = work.bytes > 0
        out = {
            "destination": before["destination"],
            "source": before["source"],
            "uuid": before["uuid"],
            "actions": [s for s in steps if s != "wait_transfer"],
            "changed": changed,
            "state_before": before["state"],
            "state_after": (STATE_AFTER[self.target] if steps else before["state"])
            if check_mode
            else (rel or {}).get("state"),
            "healthy": (rel or before).get("healthy"),
            "lag_seconds_before": before.get("lag_seconds"),
            "lag_at_break_seconds": work.lag_at_break,
            "duration_seconds": round((work.finished or time.monotonic()) - work.started, 3),
        }
        if self.target == "reversed" and rel is not None:
            out["reversed_source"] = rel["source"]
            out["reversed_destination"] = rel["destination"]
        if self.target == "updated":
            out["bytes_transferred"] = work.bytes
        if work.error:
            out["error"] = work.error
        return out
