"""The Supervisor REST API (``/api/v0.1/``, HTTPS, Basic auth, JSON).

The Supervisor holds no data: on each request it asks every site's storage (the lab-only
``/x-lab/site`` path of that site's sproxyd host) and builds the vendor's view from the
answers. A site it cannot reach shows as its servers ``MISSING`` and its nodes unreachable,
laid out as last seen (``<state>/supervisor-layout.json``), as a real Supervisor keeps its
inventory. :func:`build_view` is that pure translation; :func:`create_app` the HTTP layer.

Vendor shapes: collections take ``offset``/``limit`` and answer
``{"_items": [...], "_meta": {"count": N, "offset": o, "limit": l}}``; one item
``{"_items": [obj]}``. Emulator additions (not in the public API): ``rings/<name>/tasks/``
(the rebuild backlog, one item per zone with ``pending``), fields prefixed ``x_``, and the
``/x-lab/`` paths.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, abort, jsonify, request

from lab.scality.faults import FaultStore
from lab.scality.sproxyd import register_fault_routes

API = "/api/v0.1"
DEFAULT_LIMIT = 20
# (connect, read) seconds: a cut site drops packets, so connecting hangs until the timeout;
# after a failure the zone counts as unreachable for a while without being asked again.
AGENT_TIMEOUT = (0.5, 3.0)
AGENT_HOLD_OFF = 2.0


def build_view(ring: str, reports: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Vendor-shaped collections from each zone's storage report (``None``: unreachable)."""
    servers: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    disks: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    reachable_objects = []
    for zone, rep in sorted(reports.items()):
        reachable = bool(rep.get("x_reachable", True)) if rep else False
        for srv in (rep or {}).get("servers", []):
            srv_disks = []
            for d in srv["disks"]:
                ok = reachable and d["in_service"]
                state = ["OK"] if ok else (["OOS_PERM"] if reachable else ["CONNERR"])
                srv_disks.append(
                    {
                        "id": d["name"],
                        "name": d["name"].rsplit("-", 1)[-1],
                        "host": srv["ip"],
                        "server": srv["id"],
                        "fsid": d["name"],
                        "rings": [ring],
                        "state": state,
                        "status": "OK" if ok else "CRITICAL",
                        "diskspace_total": d["size"],
                        "diskspace_used": d["used"],
                        "diskspace_stored": d["used"],
                        "number_inodes": 0,
                        "x_zone": zone,
                    }
                )
            disks.extend(srv_disks)
            crit = sum(1 for d in srv_disks if d["status"] == "CRITICAL")
            node_ok = all(n["up"] for n in srv["nodes"])
            servers.append(
                {
                    "id": srv["id"],
                    "name": srv["name"],
                    "zone": zone,
                    "management_ip_address": srv["ip"],
                    "server_type": "storage",
                    "roles": ["STORAGE"],
                    "rings": [{"name": ring}],
                    "disks": [d["name"] for d in srv_disks],
                    "state": ["ONLINE"] if reachable else ["MISSING"],
                    "status": "CRITICAL" if not reachable else ("OK" if crit == 0 and node_ok else "WARNING"),
                    "diskcount_status_ok": len(srv_disks) - crit,
                    "diskcount_status_warning": 0,
                    "diskcount_status_critical": crit,
                }
            )
            for n in srv["nodes"]:
                up = reachable and n["up"]
                nodes.append(
                    {
                        "id": f"{srv['ip']}:{n['admin_port']}",
                        "name": n["name"],
                        "ring": ring,
                        "admin_address": srv["ip"],
                        "admin_port": n["admin_port"],
                        "chord_address": srv["ip"],
                        "chord_port": n["admin_port"] - 1000,
                        "server": f"{srv['ip']}:7084",
                        "state": "RUN" if up else "OFFLINE",
                        "reachable": up,
                        "conf_mismatch": False,
                        "tasks_blocked": False,
                        "nb_chunks": n["nb_chunks"] if up else 0,
                        "nb_tasks": 0,
                    }
                )
        if rep and reachable:
            pending = rep["missing_replicas"] + rep["injected_backlog"]
            reachable_objects.append(rep["objects"])
            if pending:
                tasks.append({"id": f"rebuild-{zone}", "type": "REBUILD", "zone": zone, "pending": pending})
            for peer, count in sorted(rep["outbox"].items()):
                if count:
                    tasks.append(
                        {
                            "id": f"resync-{zone}-{peer}",
                            "type": "RESYNC",
                            "zone": peer,
                            "source_zone": zone,
                            "pending": count,
                        }
                    )
    state: list[str] = []
    if any(not n["reachable"] for n in nodes):
        state.append("MISSING NODE")
    if any(d["status"] != "OK" for d in disks):
        state.append("OUT OF SERVICE")
    status = "CRITICAL" if "MISSING NODE" in state else ("WARNING" if state else "OK")
    total = sum(d["diskspace_total"] for d in disks)
    used = sum(d["diskspace_used"] for d in disks)
    ring_obj = {
        "name": ring,
        "type": "DATA",
        "status": status,
        "state": state or ["RUN"],
        "diskspace_total": total,
        "diskspace_used": used,
        "diskspace_stored": used,
        "diskspace_net": used,
        "diskspace_est_net_available": max(total - used, 0),
        "number_of_objects": sum(n["nb_chunks"] for n in nodes),
        "unique_number_of_objects": max(reachable_objects, default=0),
        "planning_used_capacity_age": 0,
        "planning_usage_growth": 0,
    }
    return {"rings": [ring_obj], "servers": servers, "storenodes": nodes, "disks": disks, "tasks": tasks}


class SupervisorModel:
    """Collects the zones' reports; remembers each zone's layout for when it goes missing."""

    def __init__(self, state_dir: str | os.PathLike[str], ring: str, zones: dict[str, str], zone: str | None) -> None:
        self.ring = ring
        self.zones = zones  # zone -> base URL of that site's sproxyd host
        self.zone = zone  # where the Supervisor itself runs
        self.layout_path = Path(state_dir) / "supervisor-layout.json"
        self.session = requests.Session()
        self.session.trust_env = False  # never an environment proxy between lab hosts
        self.pool = ThreadPoolExecutor(max_workers=max(len(zones), 1))
        self.down_until: dict[str, float] = {}

    def _fetch(self, zone: str, base: str) -> dict[str, Any] | None:
        if time.monotonic() < self.down_until.get(zone, 0.0):
            return None
        try:
            resp = self.session.get(f"{base.rstrip('/')}/x-lab/site", timeout=AGENT_TIMEOUT)
            if resp.status_code == 200:
                self.down_until.pop(zone, None)
                return resp.json()
        except (requests.RequestException, ValueError):
            pass
        self.down_until[zone] = time.monotonic() + AGENT_HOLD_OFF
        return None

    def view(self) -> dict[str, Any]:
        futures = {z: self.pool.submit(self._fetch, z, b) for z, b in self.zones.items()}
        reports = {z: f.result() for z, f in futures.items()}
        try:
            known = json.loads(self.layout_path.read_text())
        except (FileNotFoundError, ValueError):
            known = {}
        fresh = {z: {"servers": r["servers"]} for z, r in reports.items() if r}
        if fresh and any(known.get(z) != v for z, v in fresh.items()):
            known.update(fresh)
            tmp = self.layout_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, self.layout_path)
        for z, r in reports.items():
            if r is None and z in known:
                reports[z] = {"servers": known[z]["servers"], "x_reachable": False}
        return build_view(self.ring, reports)


def _page(items: list[dict[str, Any]]) -> Response:
    try:
        offset = max(int(request.args.get("offset", 0)), 0)
        limit = max(int(request.args.get("limit", DEFAULT_LIMIT)), 1)
    except ValueError:
        abort(Response(json.dumps({"error": "offset and limit must be integers"}), 400, mimetype="application/json"))
    return jsonify(
        {"_items": items[offset : offset + limit], "_meta": {"count": len(items), "offset": offset, "limit": limit}}
    )


def _one(items: list[dict[str, Any]], key: str, value: str) -> Response:
    for item in items:
        if str(item[key]) == value:
            return jsonify({"_items": [item]})
    return Response(json.dumps({"error": f"{value} not found"}), 404, mimetype="application/json")


def create_app(model: SupervisorModel, faults: FaultStore, username: str, password: str) -> Flask:
    app = Flask("supervisor")

    @app.before_request
    def _gate() -> Response | None:
        if request.path.startswith("/x-lab/"):
            return None
        current = faults.read()
        if current["supervisor_unreachable"] or (model.zone and model.zone in current["sites_down"]):
            # A real outage refuses or drops connections; the injected one answers 503.
            return Response("supervisor unreachable (injected)\n", status=503, headers={"X-Lab-Fault": "supervisor"})
        auth = request.authorization
        if not auth or auth.type != "basic" or auth.username != username or auth.password != password:
            return Response(
                json.dumps({"error": "authentication required"}),
                401,
                {"WWW-Authenticate": 'Basic realm="supervisor"'},
                mimetype="application/json",
            )
        return None

    @app.get(f"{API}/status/")
    def status() -> Response:
        return jsonify(
            {
                "supv2_status": "Running",
                "bizstoresup_status": "Running",
                "supapi_version": "0.1",
                "supapi_complete_version": "0.1.0-zglab",
            }
        )

    @app.get(f"{API}/<collection>/")
    def collection(collection: str) -> Response:
        if collection not in ("rings", "servers", "storenodes", "disks"):
            abort(404)
        return _page(model.view()[collection])

    @app.get(f"{API}/<collection>/<ident>/")
    def item(collection: str, ident: str) -> Response:
        keys = {"rings": "name", "servers": "id", "storenodes": "id", "disks": "id"}
        if collection not in keys:
            abort(404)
        return _one(model.view()[collection], keys[collection], ident)

    @app.get(f"{API}/rings/<name>/tasks/")
    def ring_tasks(name: str) -> Response:
        view = model.view()
        if name not in {r["name"] for r in view["rings"]}:
            return Response(json.dumps({"error": f"{name} not found"}), 404, mimetype="application/json")
        return _page(view["tasks"])

    register_fault_routes(app, faults)
    return app
