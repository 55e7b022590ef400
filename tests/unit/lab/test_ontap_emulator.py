"""The ONTAP emulator: state machine and HTTP shapes (Flask test client, two clusters in-process),
and fidelity: the unmodified netapp-ontap library driving a served pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.ontap.app import create_app
from lab.ontap.state import Cluster
from lab.ontap.testing import TEST_AUTH as AUTH
from lab.ontap.testing import EmulatorPair, LocalPeer, api, until

FAST = {"job_start": 0.01, "transition": 0.15, "transfer_min": 0.3}


@pytest.fixture
def clusters(tmp_path: Path):
    vols = ("v1", "v2", "v3")
    made: dict[str, Cluster] = {}
    made["dc1"] = Cluster(
        "dc1-ontap",
        "svm_dc1",
        tmp_path / "san",
        tmp_path / "dc1",
        {"volumes": [{"name": v} for v in vols], "latencies": FAST},
        peers={"svm_dc2": LocalPeer(lambda: made["dc2"])},
    )
    made["dc2"] = Cluster(
        "dc2-ontap",
        "svm_dc2",
        tmp_path / "san",
        tmp_path / "dc2",
        {
            "volumes": [{"name": v, "type": "dp"} for v in vols],
            "latencies": FAST,
            "relationships": [
                {
                    "source": f"svm_dc1:{v}",
                    "destination": f"svm_dc2:{v}",
                    "state": "uninitialized" if v == "v3" else "snapmirrored",
                }
                for v in vols
            ],
        },
        peers={"svm_dc1": LocalPeer(lambda: made["dc1"])},
    )
    yield made
    for c in made.values():
        c.close()
        c.marker.set(c.data_root, False)


@pytest.fixture
def dc2(clusters: dict[str, Cluster]):
    return create_app(clusters["dc2"], "admin", "pw").test_client()


def rel(client: Any, dst: str, fields: str = "*") -> dict:
    resp = api(client, "GET", "snapmirror/relationships", query_string={"destination.path": dst, "fields": fields})
    return resp.get_json()["records"][0]


def test_auth_is_required(dc2: Any) -> None:
    resp = dc2.get("/api/snapmirror/relationships")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "6"
    assert "Basic" in resp.headers["WWW-Authenticate"]


def test_filters_fields_and_paging(dc2: Any) -> None:
    body = api(dc2, "GET", "snapmirror/relationships", query_string={"state": "uninitialized|paused"}).get_json()
    assert [r["destination"]["path"] for r in body["records"]] == ["svm_dc2:v3"]
    assert set(body["records"][0]) == {"uuid", "source", "destination", "_links"}
    body = api(dc2, "GET", "snapmirror/relationships", query_string={"state": "!uninitialized", "fields": "state"})
    assert [r["state"] for r in body.get_json()["records"]] == ["snapmirrored", "snapmirrored"]
    seen, url = [], "/api/snapmirror/relationships?max_records=2&fields=state"
    while url:
        page = dc2.get(url, headers=AUTH).get_json()
        seen += [r["destination"]["path"] for r in page["records"]]
        url = page["_links"].get("next", {}).get("href")
    assert seen == ["svm_dc2:v1", "svm_dc2:v2", "svm_dc2:v3"]
    count = api(dc2, "GET", "snapmirror/relationships", query_string={"return_records": "false"}).get_json()
    assert count == {"num_records": 3, "_links": count["_links"]}


def test_error_shapes(dc2: Any) -> None:
    resp = api(dc2, "GET", "snapmirror/relationships/nope")
    assert resp.status_code == 404 and resp.get_json() == {
        "error": {"message": "entry doesn't exist", "code": "4", "target": "uuid"}
    }
    resp = api(dc2, "GET", "snapmirror/relationships", query_string={"return_timeout": "121"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "262197"
    uuid = rel(dc2, "svm_dc2:v3")["uuid"]
    resp = api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "paused"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "13303818"


def test_patch_starts_a_job_and_the_state_lands_later(dc2: Any) -> None:
    uuid = rel(dc2, "svm_dc2:v1")["uuid"]
    resp = api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "paused"})
    assert resp.status_code == 202
    job = resp.get_json()["job"]
    assert job["_links"]["self"]["href"] == f"/api/cluster/jobs/{job['uuid']}"
    assert rel(dc2, "svm_dc2:v1")["state"] == "snapmirrored"  # not yet
    until(lambda: api(dc2, "GET", f"cluster/jobs/{job['uuid']}").get_json()["state"] == "success")
    until(lambda: rel(dc2, "svm_dc2:v1")["state"] == "paused")
    # A second operation while one is pending is refused, not queued.
    resp = api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "broken_off"})
    assert resp.status_code == 202
    again = api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "snapmirrored"})
    assert again.status_code == 400 and "in progress" in again.get_json()["error"]["message"]


def test_transfer_copies_data_as_of_the_snapshot(clusters: dict[str, Cluster], dc2: Any) -> None:
    src = clusters["dc1"].volume_path("v1")
    dst = clusters["dc2"].volume_path("v1")
    (src / "early.txt").write_text("early")
    uuid = rel(dc2, "svm_dc2:v1")["uuid"]
    resp = api(dc2, "POST", f"snapmirror/relationships/{uuid}/transfers", json={})
    assert resp.status_code == 202 and "/transfers/" in resp.headers["Location"]
    until(lambda: rel(dc2, "svm_dc2:v1")["transfer"]["state"] == "transferring")
    (src / "late.txt").write_text("late")  # after the snapshot: must not arrive
    busy = api(dc2, "POST", f"snapmirror/relationships/{uuid}/transfers", json={})
    assert busy.status_code == 400 and busy.get_json()["error"]["code"] == "13303812"
    until(lambda: rel(dc2, "svm_dc2:v1")["transfer"]["state"] == "success")
    assert (dst / "early.txt").read_text() == "early" and not (dst / "late.txt").exists()
    assert rel(dc2, "svm_dc2:v1")["transfer"]["bytes_transferred"] == 5
    with pytest.raises(OSError):
        (dst / "intruder.txt").write_text("dp volumes are read-only")


def test_break_makes_rw_and_resync_discards_newer_data(clusters: dict[str, Cluster], dc2: Any) -> None:
    dst = clusters["dc2"].volume_path("v2")
    uuid = rel(dc2, "svm_dc2:v2")["uuid"]
    api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "broken_off"})
    until(lambda: rel(dc2, "svm_dc2:v2")["state"] == "broken_off")
    vols = api(dc2, "GET", "storage/volumes", query_string={"name": "v2", "fields": "type,x_lab"}).get_json()
    assert vols["records"][0]["type"] == "rw"
    (dst / "newer.txt").write_text("written on the destination after break")
    api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "snapmirrored"})
    until(lambda: rel(dc2, "svm_dc2:v2")["state"] == "snapmirrored")
    assert not (dst / "newer.txt").exists()
    assert rel(dc2, "svm_dc2:v2")["last_transfer_type"] == "resync"
    vols = api(dc2, "GET", "storage/volumes", query_string={"name": "v2", "fields": "type"}).get_json()
    assert vols["records"][0]["type"] == "dp"


def test_destination_keeps_snapshots_and_clones_start_from_one(clusters: dict[str, Cluster], dc2: Any) -> None:
    src = clusters["dc1"].volume_path("v1")
    uuid = rel(dc2, "svm_dc2:v1")["uuid"]
    vol_uuid = clusters["dc2"].volumes["v1"].uuid
    for text in ("first", "second", "third"):
        (src / "mail.db").write_text(text)
        before = rel(dc2, "svm_dc2:v1")["transfer"]["uuid"]
        api(dc2, "POST", f"snapmirror/relationships/{uuid}/transfers", json={})
        until(lambda b=before: rel(dc2, "svm_dc2:v1")["transfer"]["uuid"] != b)
        until(lambda: rel(dc2, "svm_dc2:v1")["transfer"]["state"] == "success")
        if text == "first":
            first = api(dc2, "GET", f"storage/volumes/{vol_uuid}/snapshots").get_json()["records"][-1]["name"]
            # A clone of the oldest snapshot keeps it busy: later transfers do not prune it.
            resp = api(
                dc2,
                "POST",
                "storage/volumes",
                json={
                    "name": "v1_old",
                    "clone": {
                        "is_flexclone": True,
                        "parent_volume": {"name": "v1"},
                        "parent_snapshot": {"name": first},
                    },
                },
            )
            assert resp.status_code == 202
    snaps = api(dc2, "GET", f"storage/volumes/{vol_uuid}/snapshots", query_string={"fields": "create_time"})
    records = snaps.get_json()["records"]
    assert [r["name"] for r in records][0] == first and len(records) == 3
    assert records[-1]["name"] == rel(dc2, "svm_dc2:v1")["exported_snapshot"]
    assert records[0]["create_time"] <= records[-1]["create_time"]
    # No parent_snapshot on a read-only parent: its newest snapshot, not the live tree.
    resp = api(
        dc2,
        "POST",
        "storage/volumes",
        json={"name": "v1_new", "clone": {"is_flexclone": True, "parent_volume": {"name": "v1"}}},
    )
    new = dc2.get(resp.headers["Location"] + "?fields=clone", headers=AUTH).get_json()
    assert new["clone"]["parent_snapshot"]["name"] == records[-1]["name"]
    until((clusters["dc2"].volume_path("v1_new") / "mail.db").exists)
    assert (clusters["dc2"].volume_path("v1_new") / "mail.db").read_text() == "third"
    assert (clusters["dc2"].volume_path("v1_old") / "mail.db").read_text() == "first"
    missing = api(
        dc2,
        "POST",
        "storage/volumes",
        json={
            "name": "v1_x",
            "clone": {
                "is_flexclone": True,
                "parent_volume": {"name": "v1"},
                "parent_snapshot": {"name": "snapmirror.nope"},
            },
        },
    )
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "4"
    # A parent with clones cannot go; the clones can.
    clusters["dc2"].relationships.pop(uuid)
    refused = api(dc2, "DELETE", f"storage/volumes/{vol_uuid}")
    assert refused.status_code == 400 and "v1_new, v1_old" in refused.get_json()["error"]["message"]
    assert api(dc2, "DELETE", f"storage/volumes/{new['uuid']}").status_code == 202
    until(lambda: not clusters["dc2"].volume_path("v1_new").exists())


def test_flexclone_of_a_destination(clusters: dict[str, Cluster], dc2: Any) -> None:
    # The baseline transfer left its snapshot on the destination: a clone starts from it.
    (clusters["dc1"].volume_path("v1") / "mail.db").write_text("db")
    resp = api(
        dc2,
        "POST",
        "storage/volumes",
        json={
            "name": "v1_clone",
            "svm": {"name": "svm_dc2"},
            "clone": {"is_flexclone": True, "parent_volume": {"name": "v1"}},
        },
    )
    assert resp.status_code == 202 and resp.headers["Location"].startswith("/api/storage/volumes/")
    until(clusters["dc2"].volume_path("v1_clone").exists)
    vol = dc2.get(resp.headers["Location"] + "?fields=*", headers=AUTH).get_json()
    baseline = rel(dc2, "svm_dc2:v1")["exported_snapshot"]
    assert vol["type"] == "rw" and vol["clone"] == {
        "is_flexclone": True,
        "parent_volume": {"name": "v1"},
        "parent_snapshot": {"name": baseline},
    }
    assert not (clusters["dc2"].volume_path("v1_clone") / "mail.db").exists()  # not transferred yet
    assert api(dc2, "DELETE", f"storage/volumes/{vol['uuid']}").status_code == 202


def test_faults_and_latencies(clusters: dict[str, Cluster], dc2: Any) -> None:
    admin = {"headers": AUTH}
    assert dc2.post("/x-lab/faults", json={"type": "unhealthy", "match": "svm_dc2:v1"}, **admin).status_code == 201
    r = rel(dc2, "svm_dc2:v1")
    assert r["healthy"] is False and r["unhealthy_reason"][0]["message"].startswith("Injected")
    assert dc2.post("/x-lab/faults", json={"type": "bogus"}, **admin).status_code == 400
    dc2.post("/x-lab/faults", json={"type": "unauthorized"}, **admin)
    assert api(dc2, "GET", "cluster").status_code == 401
    dc2.delete("/x-lab/faults", **admin)
    dc2.post("/x-lab/faults", json={"type": "server_error", "status": 503, "count": 1}, **admin)
    assert api(dc2, "GET", "cluster").status_code == 503
    assert api(dc2, "GET", "cluster").status_code == 200  # count exhausted
    assert dc2.put("/x-lab/latencies", json={"job_retention": 0.05}, **admin).get_json()["job_retention"] == 0.05
    uuid = rel(dc2, "svm_dc2:v1")["uuid"]
    job = api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "paused"}).get_json()["job"]
    until(lambda: api(dc2, "GET", f"cluster/jobs/{job['uuid']}").status_code == 404)
    dc2.post("/x-lab/reset", **admin)
    assert rel(dc2, "svm_dc2:v1")["state"] == "snapmirrored" and dc2.get("/x-lab/faults", **admin).get_json() == {
        "faults": []
    }


def test_reverse_moves_the_relationship(clusters: dict[str, Cluster], dc2: Any) -> None:
    dc1 = create_app(clusters["dc1"], "admin", "pw").test_client()
    uuid = rel(dc2, "svm_dc2:v1")["uuid"]
    api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "broken_off"})
    until(lambda: rel(dc2, "svm_dc2:v1")["state"] == "broken_off")
    (clusters["dc2"].volume_path("v1") / "standby.txt").write_text("new on dc2")
    resp = api(
        dc2,
        "PATCH",
        f"snapmirror/relationships/{uuid}",
        json={"source": {"path": "svm_dc2:v1"}, "destination": {"path": "svm_dc1:v1"}, "state": "snapmirrored"},
    )
    assert resp.status_code == 202
    until(
        lambda: (
            api(dc1, "GET", f"snapmirror/relationships/{uuid}", query_string={"fields": "state"})
            .get_json()
            .get("state")
            == "snapmirrored"
        )
    )
    assert (clusters["dc1"].volume_path("v1") / "standby.txt").read_text() == "new on dc2"
    assert api(dc2, "GET", f"snapmirror/relationships/{uuid}").status_code == 404
    side = api(dc2, "GET", "snapmirror/relationships", query_string={"list_destinations_only": "true"}).get_json()
    assert [r["uuid"] for r in side["records"]] == [uuid]


def test_the_netapp_ontap_library_drives_the_emulator(tmp_path: Path) -> None:
    from netapp_ontap import HostConnection
    from netapp_ontap.error import NetAppRestError
    from netapp_ontap.resources import Cluster as OntapCluster
    from netapp_ontap.resources import (
        Job,
        SnapmirrorRelationship,
        SnapmirrorTransfer,
        Volume,
    )

    with EmulatorPair(tmp_path) as pair:
        conn = HostConnection(
            "127.0.0.1",
            port=pair.dc2.port,
            username="admin",
            password=pair.password,
            verify=str(pair.ca),
            poll_interval=1,
            poll_timeout=20,
        )
        conn.session.trust_env = False
        with conn:
            info = OntapCluster()
            info.get(fields="name,version")
            assert info.name == "dc2-ontap"
            rels = list(SnapmirrorRelationship.get_collection(fields="state,lag_time,healthy"))
            assert {r.state for r in rels} == {"snapmirrored"}
            one = SnapmirrorRelationship(uuid=rels[0].uuid)
            one.get()
            transfer = SnapmirrorTransfer(relationship={"uuid": one.uuid})
            transfer.post(poll=True)  # the library polls the job itself
            assert transfer.uuid
            one.state = "paused"
            resp = one.patch()  # poll=True: the library follows the job to success
            assert resp.http_response.json()["state"] == "success"  # the job, followed to its end
            jobs = list(Job.get_collection(fields="state,message"))
            assert jobs and {j.state for j in jobs} <= {"success", "running", "queued"}
            clone = Volume(
                name="clone1",
                svm={"name": "svm_dc2"},
                clone={"is_flexclone": True, "parent_volume": {"name": "mbox1_db"}},
            )
            clone.post(poll=True)
            clone.get(fields="type,clone")
            assert clone.type == "rw" and clone.clone.is_flexclone is True
            with pytest.raises(NetAppRestError) as err:
                SnapmirrorRelationship(uuid="missing").get()
            assert err.value.response_body["error"]["code"] == "4"
