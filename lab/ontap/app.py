"""The HTTP layer: ONTAP REST endpoints over a ``Cluster``, plus the lab-only ``/x-lab/`` path.

``/api/...`` follows ONTAP's documented shapes: collections ``{"records", "num_records",
"_links"}``, dotted-field filters (``*`` wildcards, ``|`` alternatives, ``!`` negation),
``fields=``, ``max_records`` paging through ``_links.next``, ``return_records``,
``return_timeout`` (0-120), 202 + job link for asynchronous operations, errors as
``{"error": {"message", "code", "target"}}``. "Expensive" fields (a LUN's or an igroup's
``lun_maps``) are left out unless ``fields=`` names them or is ``**``. SAN objects (LUNs,
igroups, LUN maps) are created synchronously: 201 + ``Location``, the record with
``return_records=true``; their PATCH and DELETE answer 200.

``/x-lab/...`` is not ONTAP: fault injection, latencies, reset, and the peer channel the
emulated clusters use between themselves (snapshots, reverse resync, source-side listing).
"""

from __future__ import annotations

import base64
import fnmatch
import hmac
import time
import urllib.parse
import uuid as uuidlib
from typing import Any

import requests
from flask import Flask, Response, jsonify, request

from lab.ontap.state import (
    E_NOT_FOUND,
    E_RETURN_TIMEOUT,
    E_UNAUTHORIZED,
    TERMINAL_JOB,
    ApiError,
    Cluster,
    PeerUnreachable,
)

RESERVED = {
    "fields",
    "max_records",
    "return_records",
    "return_timeout",
    "order_by",
    "start.uuid",
    "list_destinations_only",
    "force",
    "failback",
    "return_all",
    "allow_delete_while_mapped",
}


# ---------------------------------------------------------------------- query helpers
def _get(record: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _match_one(value: Any, pattern: str) -> bool:
    if isinstance(value, list):
        return any(_match_one(v, pattern) for v in value)
    negate = pattern.startswith("!")
    if negate:
        pattern = pattern[1:]
    hit = fnmatch.fnmatchcase(_as_text(value).lower(), pattern.lower())
    return hit != negate


def matches(record: dict, filters: dict[str, str]) -> bool:
    for key, expr in filters.items():
        value = _get(record, key)
        if not any(_match_one(value, alt) for alt in expr.split("|")):
            return False
    return True


def project(record: dict, fields: str | None, keys: tuple[str, ...], expensive: tuple[str, ...] = ()) -> dict:
    asked = [f for f in (fields or "").split(",") if f]
    if "**" in asked:
        return record
    if "*" in asked:
        named = {f.split(".", 1)[0] for f in asked}
        return {k: v for k, v in record.items() if k not in expensive or k in named}
    wanted = list(keys) + asked
    out: dict = {}
    for path in wanted + ["_links"]:
        value = _get(record, path)
        if value is None:
            continue
        parts = path.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def collection(
    records: list[dict],
    default_keys: tuple[str, ...],
    expensive: tuple[str, ...] = (),
    cursor: tuple[str, ...] = ("uuid",),
) -> Response:
    """A filtered, projected, paged collection; ``cursor`` names the fields ``start.<field>`` pages on."""
    args = request.args
    filters = {k: v for k, v in args.items() if k not in RESERVED and not k.startswith("start.")}
    selected = [r for r in records if matches(r, filters)]
    starts = {f: args.get(f"start.{f}") for f in cursor}
    if any(starts.values()):
        idx = next(
            (i for i, r in enumerate(selected) if all(_as_text(_get(r, f)) == (v or "") for f, v in starts.items())),
            len(selected),
        )
        selected = selected[idx:]
    body: dict[str, Any] = {}
    limit = args.get("max_records")
    nxt = None
    if limit:
        try:
            n = int(limit)
        except ValueError:
            raise ApiError(400, "262179", "max_records must be an integer", "max_records") from None
        if n >= 1 and len(selected) > n:
            query = [(k, v) for k, v in args.items(multi=True) if not k.startswith("start.")]
            query += [(f"start.{f}", _as_text(_get(selected[n], f))) for f in cursor]
            nxt = f"{request.path}?{urllib.parse.urlencode(query)}"
            selected = selected[:n]
    if args.get("return_records", "true").lower() == "false":
        body["num_records"] = len(selected)
    else:
        body["records"] = [project(r, args.get("fields"), default_keys, expensive) for r in selected]
        body["num_records"] = len(selected)
    body["_links"] = {"self": {"href": request.full_path.rstrip("?")}}
    if nxt:
        body["_links"]["next"] = {"href": nxt}
    return jsonify(body)


def single(record: dict, default_keys: tuple[str, ...], expensive: tuple[str, ...] = ()) -> Response:
    """A GET of one record answers every field but the expensive ones unless ``fields`` says
    otherwise (collections: keys only)."""
    return jsonify(project(record, request.args.get("fields") or "*", default_keys, expensive))


def created(record: dict, location: str, expensive: tuple[str, ...] = ()) -> Response:
    """201 of a synchronous POST; the record itself only with ``return_records=true``."""
    body: dict[str, Any] = {}
    if request.args.get("return_records", "false").lower() == "true":
        body = {"num_records": 1, "records": [project(record, "*", (), expensive)]}
    resp = jsonify(body)
    resp.status_code = 201
    resp.headers["Location"] = location
    return resp


def flag(name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


def accepted(job: dict, location: str | None = None, status: int = 202) -> Response:
    resp = jsonify({"job": {"uuid": job["uuid"], "_links": job["_links"]}})
    resp.status_code = status
    if location:
        resp.headers["Location"] = location
    return resp


# ---------------------------------------------------------------------- peers over HTTP
class HttpPeer:
    """Reaches another emulated cluster through its lab-only peer endpoints."""

    def __init__(self, url: str, username: str, password: str, ca_path: str | bool, timeout: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override the lab CA
        self.session.auth = (username, password)
        self.session.verify = ca_path
        self.timeout = timeout

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.session.request(method, f"{self.url}/x-lab/peer/{path}", timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise PeerUnreachable(f"{self.url}: {exc.__class__.__name__}") from None
        if resp.status_code >= 500:
            raise PeerUnreachable(f"{self.url}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            err = resp.json().get("error", {})
            raise ApiError(resp.status_code, err.get("code", "1"), err.get("message", resp.text))
        return resp.json()

    def snapshot(self, volume: str, label: str) -> dict:
        return self._call("POST", "snapshots", json={"volume": volume, "label": label})

    def adopt(self, record: dict) -> None:
        self._call("POST", "adopt", json=record)

    def relationships_from(self, svm: str) -> list[dict]:
        return self._call("GET", "relationships", params={"source_svm": svm})["records"]


# ---------------------------------------------------------------------- the application
def create_app(cluster: Cluster, username: str, password: str) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def authorised() -> bool:
        return hmac.compare_digest(request.headers.get("Authorization", ""), expected)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        resp = jsonify(exc.body())
        resp.status_code = exc.status
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="ONTAP"'
        return resp

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return api_error(ApiError(404, E_NOT_FOUND, "API not found", request.path))

    @app.before_request
    def gate() -> Response | None:
        path = request.path
        if path.startswith("/x-lab/"):
            if not authorised():
                raise ApiError(401, E_UNAUTHORIZED, "not authorized for that command")
            if path.startswith("/x-lab/peer/") and cluster.fault("unreachable"):
                _drop_connection()
            return None
        if cluster.fault("unreachable"):
            _drop_connection()
        if cluster.fault("unauthorized") or not authorised():
            raise ApiError(401, E_UNAUTHORIZED, "not authorized for that command")
        err = cluster.fault("server_error", path)
        if err:
            status = int(err.get("status", 500))
            if err.get("count") is not None:
                with cluster.lock:
                    err["count"] = int(err["count"]) - 1
                    if err["count"] <= 0:
                        cluster.faults.remove(err)
            raise ApiError(status, str(err.get("code", "1")), err.get("message", "Injected server error"))
        timeout = request.args.get("return_timeout")
        if timeout is not None:
            try:
                ok = 0 <= int(timeout) <= 120
            except ValueError:
                ok = False
            if not ok:
                raise ApiError(
                    400,
                    E_RETURN_TIMEOUT,
                    "The value for return_timeout must be in the range 0 to 120.",
                    "return_timeout",
                )
        return None

    def wait_job(job: dict) -> None:
        """Honour return_timeout: hold the answer until the job ends or the time is up."""
        deadline = time.monotonic() + int(request.args.get("return_timeout", 0) or 0)
        while time.monotonic() < deadline and cluster.get_job(job["uuid"])["state"] not in TERMINAL_JOB:
            time.sleep(0.02)

    def json_body() -> dict:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "262179", "The request body must be a JSON object")
        return body

    # --- cluster, SVMs
    @app.get("/api/cluster")
    def get_cluster() -> Response:
        rec = {
            "name": cluster.name,
            "uuid": cluster.uuid,
            "version": cluster.version,
            "_links": {"self": {"href": "/api/cluster"}},
        }
        return single(rec, ("name", "uuid", "version"))

    @app.get("/api/svm/svms")
    def svms() -> Response:
        rec = {
            "uuid": cluster.svm_uuid,
            "name": cluster.svm,
            "state": "running",
            "_links": {"self": {"href": f"/api/svm/svms/{cluster.svm_uuid}"}},
        }
        return collection([rec], ("uuid", "name"))

    @app.get("/api/svm/peers")
    def svm_peers() -> Response:
        # One record per peered SVM of the other clusters (ONTAP's SVM peer relationship);
        # `name` is the local name of the peer SVM, the same as its own name in the lab.
        recs = [
            {
                "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"svm-peer:{cluster.svm}:{svm}")),
                "name": svm,
                "svm": {"name": cluster.svm, "uuid": cluster.svm_uuid},
                "peer": {"svm": {"name": svm}},
                "state": "peered",
                "applications": ["snapmirror"],
            }
            for svm in sorted(cluster.peers)
            if svm != cluster.svm
        ]
        return collection(recs, ("uuid", "name", "svm.name", "peer.svm.name"))

    # --- SnapMirror relationships
    rel_keys = ("uuid", "source.path", "destination.path")

    @app.get("/api/snapmirror/relationships")
    def list_relationships() -> Response:
        if request.args.get("list_destinations_only", "false").lower() == "true":
            return collection(cluster.source_side_records(), rel_keys)
        return collection(cluster.relationship_records(), rel_keys)

    @app.post("/api/snapmirror/relationships")
    def create_relationship() -> Response:
        rel, job = cluster.create_relationship(json_body())
        rendered = job.render()
        wait_job(rendered)
        return accepted(rendered, f"/api/snapmirror/relationships/{rel.uuid}")

    @app.get("/api/snapmirror/relationships/<rel_uuid>")
    def get_relationship(rel_uuid: str) -> Response:
        with cluster.lock:
            rec = cluster.render_relationship(cluster.get_relationship(rel_uuid))
        return single(rec, rel_keys)

    @app.patch("/api/snapmirror/relationships/<rel_uuid>")
    def patch_relationship(rel_uuid: str) -> Response:
        force = request.args.get("force", "false").lower() == "true"
        job = cluster.patch_relationship(rel_uuid, json_body(), force=force).render()
        wait_job(job)
        return accepted(job)

    @app.delete("/api/snapmirror/relationships/<rel_uuid>")
    def delete_relationship(rel_uuid: str) -> Response:
        job = cluster.delete_relationship(rel_uuid).render()
        wait_job(job)
        return accepted(job)

    # --- transfers
    transfer_keys = ("uuid", "relationship.uuid")

    @app.get("/api/snapmirror/relationships/<rel_uuid>/transfers")
    def list_transfers(rel_uuid: str) -> Response:
        with cluster.lock:
            rec = cluster.render_transfer(cluster.get_relationship(rel_uuid))
        return collection([rec] if rec else [], transfer_keys)

    @app.post("/api/snapmirror/relationships/<rel_uuid>/transfers")
    def start_transfer(rel_uuid: str) -> Response:
        request.get_json(silent=True)
        transfer_uuid, job = cluster.start_update(rel_uuid)
        rendered = job.render()
        wait_job(rendered)
        return accepted(rendered, f"/api/snapmirror/relationships/{rel_uuid}/transfers/{transfer_uuid}")

    @app.get("/api/snapmirror/relationships/<rel_uuid>/transfers/<transfer_uuid>")
    def get_transfer(rel_uuid: str, transfer_uuid: str) -> Response:
        with cluster.lock:
            rec = cluster.render_transfer(cluster.get_relationship(rel_uuid))
        if not rec or rec["uuid"] != transfer_uuid:
            raise ApiError(404, E_NOT_FOUND, "entry doesn't exist", "uuid")
        return single(rec, transfer_keys)

    @app.patch("/api/snapmirror/relationships/<rel_uuid>/transfers/<transfer_uuid>")
    def patch_transfer(rel_uuid: str, transfer_uuid: str) -> Response:
        rec = cluster.abort_transfer(rel_uuid, transfer_uuid, json_body().get("state", ""))
        return jsonify(project(rec, None, transfer_keys))

    # --- jobs
    @app.get("/api/cluster/jobs")
    def list_jobs() -> Response:
        return collection(cluster.job_records(), ("uuid",))

    @app.get("/api/cluster/jobs/<job_uuid>")
    def get_job(job_uuid: str) -> Response:
        return single(cluster.get_job(job_uuid), ("uuid",))

    # --- volumes
    vol_keys = ("uuid", "name")

    @app.get("/api/storage/volumes")
    def list_volumes() -> Response:
        with cluster.lock:
            recs = [cluster.render_volume(v) for v in cluster.volumes.values()]
        return collection(recs, vol_keys)

    @app.post("/api/storage/volumes")
    def create_volume() -> Response:
        vol, job = cluster.create_volume(json_body())
        rendered = job.render()
        wait_job(rendered)
        return accepted(rendered, f"/api/storage/volumes/{vol.uuid}")

    @app.get("/api/storage/volumes/<vol_uuid>")
    def get_volume(vol_uuid: str) -> Response:
        with cluster.lock:
            rec = cluster.render_volume(cluster.volume_by_uuid(vol_uuid))
        return single(rec, vol_keys)

    snap_keys = ("uuid", "name")

    @app.get("/api/storage/volumes/<vol_uuid>/snapshots")
    def list_snapshots(vol_uuid: str) -> Response:
        with cluster.lock:
            vol = cluster.volume_by_uuid(vol_uuid)
            recs = [cluster.render_snapshot(vol, s) for s in vol.snapshots]
        return collection(recs, snap_keys)

    @app.get("/api/storage/volumes/<vol_uuid>/snapshots/<snap_uuid>")
    def get_snapshot(vol_uuid: str, snap_uuid: str) -> Response:
        with cluster.lock:
            vol = cluster.volume_by_uuid(vol_uuid)
            recs = [cluster.render_snapshot(vol, s) for s in vol.snapshots if s["uuid"] == snap_uuid]
        if not recs:
            raise ApiError(404, "4", "entry doesn't exist", "uuid")
        return single(recs[0], snap_keys)

    @app.delete("/api/storage/volumes/<vol_uuid>")
    def delete_volume(vol_uuid: str) -> Response:
        job = cluster.delete_volume(vol_uuid).render()
        wait_job(job)
        return accepted(job)

    # --- SAN: LUNs, igroups, LUN maps (synchronous)
    san = cluster.san
    lun_keys = ("uuid", "name")
    lun_expensive = ("lun_maps",)

    @app.get("/api/storage/luns")
    def list_luns() -> Response:
        return collection(san.lun_records(), lun_keys, lun_expensive)

    @app.post("/api/storage/luns")
    def create_lun() -> Response:
        with cluster.lock:
            lun = san.create_lun(json_body())
            rec = san.render_lun(lun)
        return created(rec, f"/api/storage/luns/{lun.uuid}", lun_expensive)

    @app.get("/api/storage/luns/<lun_uuid>")
    def get_lun(lun_uuid: str) -> Response:
        with cluster.lock:
            rec = san.render_lun(san.get_lun(lun_uuid))
        return single(rec, lun_keys, lun_expensive)

    @app.patch("/api/storage/luns/<lun_uuid>")
    def patch_lun(lun_uuid: str) -> Response:
        san.patch_lun(lun_uuid, json_body())
        return jsonify({})

    @app.delete("/api/storage/luns/<lun_uuid>")
    def delete_lun(lun_uuid: str) -> Response:
        san.delete_lun(lun_uuid, allow_mapped=flag("allow_delete_while_mapped"))
        return jsonify({})

    igroup_keys = ("uuid", "name")
    igroup_expensive = ("lun_maps",)

    @app.get("/api/protocols/san/igroups")
    def list_igroups() -> Response:
        return collection(san.igroup_records(), igroup_keys, igroup_expensive)

    @app.post("/api/protocols/san/igroups")
    def create_igroup() -> Response:
        with cluster.lock:
            ig = san.create_igroup(json_body())
            rec = san.render_igroup(ig)
        return created(rec, f"/api/protocols/san/igroups/{ig.uuid}", igroup_expensive)

    @app.get("/api/protocols/san/igroups/<igroup_uuid>")
    def get_igroup(igroup_uuid: str) -> Response:
        with cluster.lock:
            rec = san.render_igroup(san.get_igroup(igroup_uuid))
        return single(rec, igroup_keys, igroup_expensive)

    @app.patch("/api/protocols/san/igroups/<igroup_uuid>")
    def patch_igroup(igroup_uuid: str) -> Response:
        san.patch_igroup(igroup_uuid, json_body())
        return jsonify({})

    @app.delete("/api/protocols/san/igroups/<igroup_uuid>")
    def delete_igroup(igroup_uuid: str) -> Response:
        san.delete_igroup(igroup_uuid, allow_mapped=flag("allow_delete_while_mapped"))
        return jsonify({})

    map_keys = ("svm.uuid", "svm.name", "lun.uuid", "lun.name", "igroup.uuid", "igroup.name")
    map_cursor = ("lun.uuid", "igroup.uuid")

    @app.get("/api/protocols/san/lun-maps")
    def list_lun_maps() -> Response:
        return collection(san.map_records(), map_keys, cursor=map_cursor)

    @app.post("/api/protocols/san/lun-maps")
    def create_lun_map() -> Response:
        with cluster.lock:
            m = san.create_map(json_body())
            rec = san.render_map(m)
        return created(rec, f"/api/protocols/san/lun-maps/{m.lun}/{m.igroup}")

    @app.get("/api/protocols/san/lun-maps/<lun_uuid>/<igroup_uuid>")
    def get_lun_map(lun_uuid: str, igroup_uuid: str) -> Response:
        with cluster.lock:
            rec = san.render_map(san.get_map(lun_uuid, igroup_uuid))
        return single(rec, map_keys)

    @app.delete("/api/protocols/san/lun-maps/<lun_uuid>/<igroup_uuid>")
    def delete_lun_map(lun_uuid: str, igroup_uuid: str) -> Response:
        san.delete_map(lun_uuid, igroup_uuid)
        return jsonify({})

    # --- lab-only administration (not ONTAP)
    @app.get("/x-lab/faults")
    def get_faults() -> Response:
        return jsonify({"faults": cluster.faults})

    @app.post("/x-lab/faults")
    def add_fault() -> Response:
        return jsonify(cluster.add_fault(json_body())), 201

    @app.delete("/x-lab/faults")
    def clear_faults() -> Response:
        cluster.clear_faults(request.args.get("type"))
        return jsonify({"faults": cluster.faults})

    @app.get("/x-lab/latencies")
    def get_latencies() -> Response:
        return jsonify(cluster.set_latencies({}))

    @app.put("/x-lab/latencies")
    def put_latencies() -> Response:
        return jsonify(cluster.set_latencies(json_body()))

    @app.post("/x-lab/reset")
    def reset() -> Response:
        cluster.reset()
        return jsonify({"reset": True})

    @app.get("/x-lab/health")
    def health() -> Response:
        return jsonify({"cluster": cluster.name, "svm": cluster.svm})

    @app.post("/x-lab/peer/snapshots")
    def peer_snapshot() -> Response:
        body = json_body()
        return jsonify(cluster.make_snapshot(body["volume"], body["label"]))

    @app.post("/x-lab/peer/adopt")
    def peer_adopt() -> Response:
        cluster.adopt(json_body())
        return jsonify({"adopted": True})

    @app.get("/x-lab/peer/relationships")
    def peer_relationships() -> Response:
        return jsonify({"records": cluster.records_from(request.args.get("source_svm", ""))})

    return app


def _drop_connection() -> None:
    """Injected 'unreachable': close the TCP connection without an answer."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        import socket

        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    raise ApiError(503, "1", "cluster unreachable (injected)")
