"""The sproxyd connector of one site (plain HTTP, as sproxyd listens on port 81).

Vendor paths: ``/proxy/<alias>/<40-hex key>`` PUT/GET/HEAD/DELETE with user metadata in
``x-scal-usermd``, ``/proxy/<alias>/.conf`` (``key=value`` lines, the liveness probe) and
``/proxy/<alias>/.stats`` (JSON counters). Lab-only paths, under ``/x-lab/``: the site's
storage as the Supervisor and the peer site see it (``site``, ``replicas/<key>``) and the
shared fault switchboard (``faults``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from typing import Any

import requests
from flask import Flask, Response, abort, jsonify, request

from lab.scality.faults import FaultStore
from lab.scality.store import KEY_RE, NotFound, PeerUnavailable, SiteStore, Unavailable

# (connect, read) seconds. A cut link drops packets, so a connection attempt to the other site
# hangs until the connect timeout: keep it short, and after a failure stop trying for a while
# (the RING marks the remote nodes down) so that client requests are not held up each time.
PEER_TIMEOUT = (0.5, 3.0)
PEER_HOLD_OFF = 2.0


class HttpPeer:
    """Another site's store, reached through that site's sproxyd ``/x-lab/replicas/`` path."""

    def __init__(
        self, base_url: str, timeout: tuple[float, float] = PEER_TIMEOUT, hold_off: float = PEER_HOLD_OFF
    ) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.hold_off = hold_off
        self.down_until = 0.0
        self.session = requests.Session()
        self.session.trust_env = False  # never an environment proxy between lab hosts

    def _call(self, method: str, key: str, **kw: Any) -> requests.Response:
        if time.monotonic() < self.down_until:
            raise PeerUnavailable(f"{self.base} marked down")
        try:
            resp = self.session.request(method, f"{self.base}/x-lab/replicas/{key}", timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            self.down_until = time.monotonic() + self.hold_off
            raise PeerUnavailable(str(exc)) from exc
        if resp.status_code >= 500:
            self.down_until = time.monotonic() + self.hold_off
            raise PeerUnavailable(f"{method} {key}: HTTP {resp.status_code}")
        self.down_until = 0.0
        return resp

    def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        headers = {"X-Lab-Meta": _json_header(meta)}
        self._call("PUT", key, data=data, headers=headers)

    def get(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        resp = self._call("GET", key)
        if resp.status_code == 404:
            return None
        return resp.content, _json_unheader(resp.headers["X-Lab-Meta"])

    def delete(self, key: str) -> None:
        self._call("DELETE", key)


def _json_header(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _json_unheader(value: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(value))


def create_app(store: SiteStore, faults: FaultStore, alias: str = "chord") -> Flask:
    app = Flask(f"sproxyd-{store.site}")
    stats: Counter[str] = Counter()
    site = store.site

    def site_down() -> bool:
        return site in faults.read()["sites_down"]

    def connector_faults() -> None:
        """Faults of the connector itself (not of the site's storage)."""
        conf = faults.read()["sproxyd"].get(site)
        if conf:
            if conf["delay"]:
                time.sleep(conf["delay"])
            if conf["status"]:
                stats["errors"] += 1
                abort(Response(f"injected sproxyd fault {conf['status']}\n", status=conf["status"]))

    @app.before_request
    def _site_down() -> Response | None:
        if request.path.startswith("/x-lab/faults"):
            return None
        if site_down():
            # Stands for a site that answers nothing; a real cut (lab fault cut-site) refuses
            # connections instead. Clients must treat both as "unreachable".
            return Response("site down (injected)\n", status=503, headers={"X-Lab-Fault": "site-down"})
        return None

    def check(alias_in_path: str, key: str) -> str:
        if alias_in_path != alias:
            abort(404)
        if not KEY_RE.match(key):
            abort(Response("invalid key: 40 hexadecimal characters expected\n", status=400))
        return key.upper()

    @app.get(f"/proxy/{alias}/.conf")
    def conf() -> Response:
        connector_faults()
        stats["conf"] += 1
        body = "".join(
            f"{k}={v}\n"
            for k, v in {
                "ring": store.ring,
                "site": site,
                "by_path_enabled": 0,
                "alias": alias,
                "copies_per_site": store.copies,
                "peers": ",".join(sorted(store.peers)),
            }.items()
        )
        return Response(body, mimetype="text/plain")

    @app.get(f"/proxy/{alias}/.stats")
    def conf_stats() -> Response:
        connector_faults()
        return jsonify({"site": site, **stats})

    @app.route("/proxy/<alias_in_path>/<key>", methods=["PUT"])
    def put(alias_in_path: str, key: str) -> Response:
        key = check(alias_in_path, key)
        connector_faults()
        stats["put"] += 1
        try:
            store.put(key, request.get_data(), request.headers.get("x-scal-usermd"))
        except Unavailable as exc:
            return Response(f"{exc}\n", status=503)
        return Response(status=200)

    @app.route("/proxy/<alias_in_path>/<key>", methods=["GET", "HEAD"])
    def get(alias_in_path: str, key: str) -> Response:
        key = check(alias_in_path, key)
        connector_faults()
        stats["head" if request.method == "HEAD" else "get"] += 1
        try:
            data, meta = store.get(key)
        except NotFound:
            return Response(status=404)
        except Unavailable as exc:
            return Response(f"{exc}\n", status=503)
        headers = {"Content-Type": "application/octet-stream"}
        if meta.get("usermd"):
            headers["X-Scal-Usermd"] = meta["usermd"]
        return Response(data, headers=headers)

    @app.route("/proxy/<alias_in_path>/<key>", methods=["DELETE"])
    def delete(alias_in_path: str, key: str) -> Response:
        key = check(alias_in_path, key)
        connector_faults()
        stats["delete"] += 1
        if faults.take_delete_lock(site):
            return Response("object locked (injected)\n", status=423)
        return Response(status=200 if store.delete(key) else 404)

    # -- lab-only: storage of this site as the Supervisor and the peer site see it ------------
    @app.get("/x-lab/site")
    def site_report() -> Response:
        return jsonify(store.report())

    @app.route("/x-lab/replicas/<key>", methods=["PUT"])
    def replica_put(key: str) -> Response:
        store.put_local(key, request.get_data(), _json_unheader(request.headers["X-Lab-Meta"]))
        return Response(status=200)

    @app.route("/x-lab/replicas/<key>", methods=["GET"])
    def replica_get(key: str) -> Response:
        found = store.get_local(key)
        if found is None:
            return Response(status=404)
        return Response(found[0], headers={"X-Lab-Meta": _json_header(found[1])})

    @app.route("/x-lab/replicas/<key>", methods=["DELETE"])
    def replica_delete(key: str) -> Response:
        store.delete_local(key)
        return Response(status=200)

    @app.post("/x-lab/reset")
    def reset() -> Response:
        store.reset()
        stats.clear()
        return Response(status=204)

    register_fault_routes(app, faults)
    return app


def register_fault_routes(app: Flask, faults: FaultStore) -> None:
    """``GET``/``PATCH``/``DELETE /x-lab/faults``: read, change (partial JSON), heal."""

    @app.get("/x-lab/faults")
    def faults_get() -> Response:
        return jsonify(faults.read())

    @app.route("/x-lab/faults", methods=["PATCH", "PUT"])
    def faults_patch() -> Response:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return Response("a JSON object is expected\n", status=400)
        try:
            if request.method == "PUT":
                return jsonify(faults.update(lambda _cur: body))
            return jsonify(faults.patch(body))
        except (ValueError, TypeError) as exc:
            return Response(f"{exc}\n", status=400)

    @app.delete("/x-lab/faults")
    def faults_heal() -> Response:
        return jsonify(faults.heal())


def start_rebuilder(store: SiteStore, interval: float, stop: threading.Event) -> threading.Thread:
    """The background rebuild: repairs missing replicas and drains the outbox."""

    def loop() -> None:
        while not stop.wait(interval):
            try:
                store.rebuild_once()
            except (OSError, ValueError, KeyError) as exc:  # keep rebuilding; the report shows what is left
                print(f"rebuild: {exc!r}", flush=True)

    thread = threading.Thread(target=loop, name=f"rebuild-{store.site}", daemon=True)
    thread.start()
    return thread
