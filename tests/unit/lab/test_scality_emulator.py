"""The Scality emulator's state machine (placement, rebuild, faults) and its Flask layers.

Two sites are wired to each other in-process through Flask test clients standing in for the
HTTP peer channel, so placement, replication, rebuild and the Supervisor's view are exercised
without sockets.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from lab.scality import sproxyd, supervisor
from lab.scality.faults import FaultStore, normalise
from lab.scality.store import PeerUnavailable, SiteStore

KEY = "0123456789ABCDEF0123456789ABCDEF01234567"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"supervisor:pw").decode()}


class ClientPeer:
    """The peer channel over a Flask test client; ``down`` makes it unreachable."""

    def __init__(self, app) -> None:
        self.client = app.test_client()
        self.down = False

    def _call(self, method: str, key: str, **kw: Any):
        if self.down:
            raise PeerUnavailable("cut")
        resp = self.client.open(f"/x-lab/replicas/{key}", method=method, **kw)
        if resp.status_code >= 500:
            raise PeerUnavailable(str(resp.status_code))
        return resp

    def put(self, key: str, data: bytes, meta: dict) -> None:
        self._call("PUT", key, data=data, headers={"X-Lab-Meta": sproxyd._json_header(meta)})

    def get(self, key: str):
        resp = self._call("GET", key)
        if resp.status_code == 404:
            return None
        return resp.data, sproxyd._json_unheader(resp.headers["X-Lab-Meta"])

    def delete(self, key: str) -> None:
        self._call("DELETE", key)


@pytest.fixture
def ring(tmp_path: Path):
    faults = FaultStore(tmp_path)
    stores = {s: SiteStore(tmp_path, s, faults=faults) for s in ("dc1", "dc2")}
    apps = {s: sproxyd.create_app(st, faults) for s, st in stores.items()}
    peers = {s: ClientPeer(a) for s, a in apps.items()}
    stores["dc1"].peers = {"dc2": peers["dc2"]}
    stores["dc2"].peers = {"dc1": peers["dc1"]}
    clients = {s: a.test_client() for s, a in apps.items()}

    class Ring:
        pass

    r = Ring()
    r.dir, r.faults, r.stores, r.peers, r.clients = tmp_path, faults, stores, peers, clients
    return r


def replicas(root: Path, site: str, key: str) -> list[Path]:
    return sorted((root / "sites" / site / "nodes").glob(f"*/*/{key}"))


def test_class_3_keeps_two_copies_per_site_on_distinct_nodes(ring) -> None:
    resp = ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob", headers={"x-scal-usermd": "bWQ="})
    assert resp.status_code == 200
    for site in ("dc1", "dc2"):
        copies = replicas(ring.dir, site, KEY)
        assert len(copies) == 2
        assert len({p.parts[-3] for p in copies}) == 2, "two copies on one node protect nothing"
        assert all(p.read_bytes() == b"blob" for p in copies)


def test_objects_written_on_one_site_read_through_the_other_with_metadata(ring) -> None:
    ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob", headers={"x-scal-usermd": "bWQ="})
    got = ring.clients["dc2"].get(f"/proxy/chord/{KEY}")
    assert got.status_code == 200 and got.data == b"blob" and got.headers["X-Scal-Usermd"] == "bWQ="
    head = ring.clients["dc2"].head(f"/proxy/chord/{KEY}")
    assert head.status_code == 200 and head.headers["Content-Length"] == "4" and head.data == b""
    assert ring.clients["dc2"].delete(f"/proxy/chord/{KEY}").status_code == 200
    assert ring.clients["dc1"].get(f"/proxy/chord/{KEY}").status_code == 404
    assert replicas(ring.dir, "dc1", KEY) == replicas(ring.dir, "dc2", KEY) == []


def test_a_node_down_leaves_a_backlog_that_drains_when_it_returns(ring) -> None:
    store = ring.stores["dc1"]
    node = store.placement(KEY)[0].name
    ring.faults.patch({"nodes_down": [node]})
    ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob")
    assert [(k, n.name) for k, n in store.missing_replicas()] == [(KEY, node)]
    assert ring.clients["dc1"].get(f"/proxy/chord/{KEY}").data == b"blob"  # the other copy
    assert store.rebuild_once() == 0  # nothing to do while the node is down
    ring.faults.heal()
    assert store.rebuild_once() == 1
    assert store.missing_replicas() == []


def test_a_disk_out_of_service_is_rebuilt_onto_the_nodes_other_disk(ring) -> None:
    store = ring.stores["dc2"]
    ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob")
    disk = replicas(ring.dir, "dc2", KEY)[0].parts[-2]
    ring.faults.patch({"disks_out": [disk]})
    assert len(store.missing_replicas()) == 1
    store.rebuild_once()
    assert store.missing_replicas() == []
    assert len(replicas(ring.dir, "dc2", KEY)) == 3  # the old copy stays on the disk out of service


def test_writes_while_the_peer_is_cut_are_queued_and_resynced(ring) -> None:
    ring.peers["dc2"].down = True
    assert ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob").status_code == 200
    assert ring.stores["dc1"].outbox() == {"dc2": 1}
    assert replicas(ring.dir, "dc2", KEY) == []
    assert ring.stores["dc1"].rebuild_once() == 0
    ring.peers["dc2"].down = False
    assert ring.stores["dc1"].rebuild_once() == 1
    assert ring.stores["dc1"].outbox() == {"dc2": 0}
    assert len(replicas(ring.dir, "dc2", KEY)) == 2


def test_connector_faults_5xx_and_423(ring) -> None:
    c = ring.clients["dc1"]
    c.put(f"/proxy/chord/{KEY}", data=b"blob")
    ring.faults.patch({"sproxyd": {"dc1": {"delete_423": 2}}})
    assert [c.delete(f"/proxy/chord/{KEY}").status_code for _i in range(3)] == [423, 423, 200]
    ring.faults.patch({"sproxyd": {"dc1": {"status": 502}}})
    assert c.get("/proxy/chord/.conf").status_code == 502
    assert ring.clients["dc2"].get("/proxy/chord/.conf").status_code == 200
    # The storage behind the connector is unaffected: the Supervisor still sees it.
    assert c.get("/x-lab/site").status_code == 200


def test_site_down_answers_nothing_but_the_fault_path(ring) -> None:
    c = ring.clients["dc2"]
    c.patch("/x-lab/faults", json={"sites_down": ["dc2"]})
    assert c.get("/proxy/chord/.conf").status_code == 503
    assert c.get("/x-lab/site").status_code == 503
    assert c.delete("/x-lab/faults").get_json()["sites_down"] == []
    assert c.get("/proxy/chord/.conf").status_code == 200


def test_keys_must_be_40_hex_and_aliases_known(ring) -> None:
    c = ring.clients["dc1"]
    assert c.put("/proxy/chord/not-a-key", data=b"x").status_code == 400
    assert c.get(f"/proxy/other/{KEY}").status_code == 404


def test_fault_file_rejects_unknown_faults(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        normalise({"node_down": ["x"]})
    with pytest.raises(ValueError, match="5xx"):
        FaultStore(tmp_path).patch({"sproxyd": {"dc1": {"status": 404}}})


def test_supervisor_view_from_reports_and_a_missing_zone(ring, tmp_path: Path) -> None:
    ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob")
    reports = {"dc1": ring.stores["dc1"].report(), "dc2": ring.stores["dc2"].report()}
    healthy = supervisor.build_view("DATA", reports)
    assert healthy["rings"][0]["status"] == "OK" and healthy["rings"][0]["state"] == ["RUN"]
    assert {s["zone"] for s in healthy["servers"]} == {"dc1", "dc2"}
    assert healthy["rings"][0]["number_of_objects"] == 4
    lost = supervisor.build_view("DATA", {"dc1": reports["dc1"], "dc2": {**reports["dc2"], "x_reachable": False}})
    dc2 = [s for s in lost["servers"] if s["zone"] == "dc2"]
    assert all(s["state"] == ["MISSING"] for s in dc2)
    assert lost["rings"][0]["status"] == "CRITICAL" and "MISSING NODE" in lost["rings"][0]["state"]
    assert sum(not n["reachable"] for n in lost["storenodes"]) == 3


def test_supervisor_api_paging_auth_and_unreachable_fault(tmp_path: Path, monkeypatch) -> None:
    faults = FaultStore(tmp_path)
    model = supervisor.SupervisorModel(tmp_path, "DATA", {"dc1": "http://unused", "dc2": "http://unused"}, "dc1")
    store = SiteStore(tmp_path, "dc1", faults=faults)
    monkeypatch.setattr(model, "_fetch", lambda zone, base: store.report() if zone == "dc1" else None)
    c = supervisor.create_app(model, faults, "supervisor", "pw").test_client()
    assert c.get("/api/v0.1/status/").status_code == 401
    page = c.get("/api/v0.1/disks/?offset=2&limit=3", headers=AUTH).get_json()
    assert page["_meta"]["count"] == 6 and len(page["_items"]) == 3
    one = c.get("/api/v0.1/rings/DATA/", headers=AUTH).get_json()
    assert len(one["_items"]) == 1 and one["_items"][0]["name"] == "DATA"
    assert c.get("/api/v0.1/rings/DATA/tasks/", headers=AUTH).get_json()["_meta"]["count"] == 0
    faults.patch({"supervisor_unreachable": True})
    assert c.get("/api/v0.1/status/", headers=AUTH).status_code == 503
    faults.patch({"supervisor_unreachable": False, "backlog": {"dc1": 5}})
    tasks = c.get("/api/v0.1/rings/DATA/tasks/", headers=AUTH).get_json()["_items"]
    assert tasks == [{"id": "rebuild-dc1", "type": "REBUILD", "zone": "dc1", "pending": 5}]


def test_sha256_guard_skips_a_corrupt_replica(ring) -> None:
    ring.clients["dc1"].put(f"/proxy/chord/{KEY}", data=b"blob")
    first = replicas(ring.dir, "dc1", KEY)[0]
    first.write_bytes(b"rot!")
    data, meta = ring.stores["dc1"].get_local(KEY)
    assert data == b"blob" and meta["sha256"] == hashlib.sha256(b"blob").hexdigest()
