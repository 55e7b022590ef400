"""The ONTAP emulator's SAN objects (LUNs, igroups, LUN maps): state machine and HTTP shapes
(Flask test client, two clusters in-process), and fidelity: the unmodified netapp-ontap library
driving a served pair."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.ontap.app import create_app
from lab.ontap.san import E_LUN_ID_IN_USE
from lab.ontap.state import Cluster
from lab.ontap.testing import TEST_AUTH as AUTH
from lab.ontap.testing import EmulatorPair, LocalPeer, api, until

FAST = {"job_start": 0.01, "transition": 0.1, "transfer_min": 0.1}
IQN1 = "iqn.2026-01.test.example:dc2-mbox1"
IQN2 = "iqn.2026-01.test.example:dc2-mbox2"
SAN_CONFIG = {
    "igroups": [{"name": "dc2-mbox1", "protocol": "iscsi", "os_type": "linux", "initiators": [IQN1]}],
    "lun_maps": [{"lun": "/vol/v1/lun0", "igroup": "dc2-mbox1"}],
}


def dc2_config(extra: dict | None = None) -> dict:
    return {
        "volumes": [{"name": "v1", "type": "dp"}, {"name": "v2", "type": "dp", "lun": {"name": "data", "size": "2G"}}],
        "latencies": FAST,
        "relationships": [
            {"source": f"svm_dc1:{v}", "destination": f"svm_dc2:{v}", "state": "snapmirrored"} for v in ("v1", "v2")
        ],
        **(extra or {}),
    }


def make_dc2(tmp_path: Path, made: dict[str, Cluster], extra: dict | None = None) -> Cluster:
    return Cluster(
        "dc2-ontap",
        "svm_dc2",
        tmp_path / "san",
        tmp_path / "dc2",
        dc2_config(extra),
        peers={"svm_dc1": LocalPeer(lambda: made["dc1"])},
    )


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[dict[str, Cluster]]:
    made: dict[str, Cluster] = {}
    made["dc1"] = Cluster(
        "dc1-ontap",
        "svm_dc1",
        tmp_path / "san",
        tmp_path / "dc1",
        {"volumes": [{"name": "v1"}, {"name": "v2"}], "latencies": FAST},
        peers={"svm_dc2": LocalPeer(lambda: made["dc2"])},
    )
    made["dc2"] = make_dc2(tmp_path, made, SAN_CONFIG)
    yield made
    for c in made.values():
        c.close()
        c.marker.set(c.data_root, False)


@pytest.fixture
def dc2(clusters: dict[str, Cluster]) -> Any:
    return create_app(clusters["dc2"], "admin", "pw").test_client()


def lun(client: Any, name: str, fields: str = "*") -> dict:
    records = api(client, "GET", "storage/luns", query_string={"name": name, "fields": fields}).get_json()["records"]
    assert len(records) == 1, records
    return records[0]


def igroup(client: Any, name: str, **body: Any) -> dict:
    body = {"svm": {"name": "svm_dc2"}, "name": name, "os_type": "linux", "protocol": "iscsi"} | body
    resp = api(client, "POST", "protocols/san/igroups", json=body, query_string={"return_records": "true"})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["records"][0]


def lun_map(client: Any, lun_name: str, ig_name: str, **body: Any) -> Any:
    body = {"svm": {"name": "svm_dc2"}, "lun": {"name": lun_name}, "igroup": {"name": ig_name}} | body
    return api(client, "POST", "protocols/san/lun-maps", json=body, query_string={"return_records": "true"})


def rel_uuid(client: Any, dst: str) -> str:
    resp = api(client, "GET", "snapmirror/relationships", query_string={"destination.path": dst})
    return resp.get_json()["records"][0]["uuid"]


def test_every_volume_carries_its_own_lun(clusters: dict[str, Cluster], dc2: Any) -> None:
    dc1 = create_app(clusters["dc1"], "admin", "pw").test_client()
    body = api(dc2, "GET", "storage/luns").get_json()
    assert [r["name"] for r in body["records"]] == ["/vol/v1/lun0", "/vol/v2/data"]
    assert set(body["records"][0]) == {"uuid", "name", "_links"}  # a collection answers the keys
    v1 = lun(dc2, "/vol/v1/lun0")
    assert v1["location"]["logical_unit"] == "lun0"
    assert v1["location"]["volume"] == {
        "name": "v1",
        "uuid": clusters["dc2"].volumes["v1"].uuid,
        "_links": {"self": {"href": f"/api/storage/volumes/{clusters['dc2'].volumes['v1'].uuid}"}},
    }
    assert v1["svm"] == {"name": "svm_dc2", "uuid": clusters["dc2"].svm_uuid}
    assert v1["status"]["state"] == "online" and v1["enabled"] is True and v1["os_type"] == "linux"
    assert "lun_maps" not in v1  # expensive: only when asked for by name
    assert lun(dc2, "/vol/v2/data", "space.size")["space"]["size"] == 2 << 30
    # A destination LUN is read-only and has its own serial number.
    assert v1["status"]["read_only"] is True
    source = lun(dc1, "/vol/v1/lun0")
    assert source["status"]["read_only"] is False
    serials = [lun(c, "/vol/v1/lun0", "serial_number")["serial_number"] for c in (dc1, dc2)]
    serials += [lun(dc1, "/vol/v2/lun0")["serial_number"], lun(dc2, "/vol/v2/data")["serial_number"]]
    assert all(len(s) == 12 for s in serials) and len(set(serials)) == 4
    # A volume made through the API carries one too, at once.
    resp = api(dc2, "POST", "storage/volumes", json={"name": "scratch", "svm": {"name": "svm_dc2"}})
    assert resp.status_code == 202
    made = lun(dc2, "/vol/scratch/lun0")
    assert made["status"]["read_only"] is False and made["serial_number"] not in serials
    one = api(dc2, "GET", f"storage/luns/{made['uuid']}").get_json()
    assert one["uuid"] == made["uuid"] and "lun_maps" not in one and one["space"]["size"] > 0
    assert "lun_maps" in api(dc2, "GET", f"storage/luns/{made['uuid']}", query_string={"fields": "**"}).get_json()


def test_config_igroups_and_maps_survive_restart_and_reset(clusters: dict[str, Cluster], tmp_path: Path) -> None:
    dc2 = create_app(clusters["dc2"], "admin", "pw").test_client()
    ig = api(dc2, "GET", "protocols/san/igroups", query_string={"fields": "*"}).get_json()["records"]
    assert [(i["name"], i["protocol"], i["os_type"], i["initiators"][0]["name"]) for i in ig] == [
        ("dc2-mbox1", "iscsi", "linux", IQN1)
    ]
    assert "lun_maps" not in ig[0]
    v1 = lun(dc2, "/vol/v1/lun0", "lun_maps,serial_number,status")
    assert v1["lun_maps"] == [
        {
            "igroup": {
                "name": "dc2-mbox1",
                "uuid": ig[0]["uuid"],
                "_links": {"self": {"href": f"/api/protocols/san/igroups/{ig[0]['uuid']}"}},
            },
            "logical_unit_number": 0,
            "_links": {"self": {"href": f"/api/protocols/san/lun-maps/{v1['uuid']}/{ig[0]['uuid']}"}},
        }
    ]
    assert v1["status"]["mapped"] is True
    extra = igroup(dc2, "extra", initiators=[{"name": IQN2}])
    assert lun_map(dc2, "/vol/v2/data", "extra").status_code == 201
    # Restart: the same objects, serials and maps.
    clusters["dc2"].close()
    clusters["dc2"] = make_dc2(tmp_path, clusters, SAN_CONFIG)
    dc2 = create_app(clusters["dc2"], "admin", "pw").test_client()
    assert lun(dc2, "/vol/v1/lun0", "serial_number")["serial_number"] == v1["serial_number"]
    maps = api(dc2, "GET", "protocols/san/lun-maps", query_string={"fields": "logical_unit_number"}).get_json()
    assert [(m["lun"]["name"], m["igroup"]["name"], m["logical_unit_number"]) for m in maps["records"]] == [
        ("/vol/v1/lun0", "dc2-mbox1", 0),
        ("/vol/v2/data", "extra", 0),
    ]
    assert api(dc2, "GET", f"protocols/san/igroups/{extra['uuid']}").status_code == 200
    # Reset: back to the configuration; the LUNs are new ones.
    assert dc2.post("/x-lab/reset", headers=AUTH).status_code == 200
    assert [i["name"] for i in api(dc2, "GET", "protocols/san/igroups").get_json()["records"]] == ["dc2-mbox1"]
    maps = api(dc2, "GET", "protocols/san/lun-maps").get_json()["records"]
    assert [(m["lun"]["name"], m["igroup"]["name"]) for m in maps] == [("/vol/v1/lun0", "dc2-mbox1")]
    assert lun(dc2, "/vol/v1/lun0", "serial_number")["serial_number"] != v1["serial_number"]


def test_a_clone_carries_a_new_unmapped_lun(clusters: dict[str, Cluster], dc2: Any) -> None:
    parent = lun(dc2, "/vol/v2/data", "lun_maps,serial_number,space.size,os_type")
    assert lun_map(dc2, "/vol/v2/data", "dc2-mbox1").status_code == 201
    resp = api(
        dc2,
        "POST",
        "storage/volumes",
        json={
            "name": "v2_clone",
            "svm": {"name": "svm_dc2"},
            "clone": {"is_flexclone": True, "parent_volume": {"name": "v2"}},
        },
    )
    assert resp.status_code == 202
    clone = lun(dc2, "/vol/v2_clone/data", "lun_maps,serial_number,space.size,os_type,status")
    assert clone["uuid"] != parent["uuid"] and clone["serial_number"] != parent["serial_number"]
    assert clone["lun_maps"] == [] and clone["status"]["mapped"] is False
    assert clone["space"]["size"] == parent["space"]["size"] and clone["os_type"] == parent["os_type"]
    assert clone["status"]["read_only"] is False  # the clone is rw though its parent is dp
    assert len(lun(dc2, "/vol/v2/data", "lun_maps")["lun_maps"]) == 1  # the parent keeps its map


def test_read_only_follows_break_and_resync(dc2: Any) -> None:
    uuid = rel_uuid(dc2, "svm_dc2:v1")
    assert lun(dc2, "/vol/v1/lun0", "status")["status"]["read_only"] is True
    api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "broken_off"})
    until(lambda: lun(dc2, "/vol/v1/lun0", "status")["status"]["read_only"] is False)
    # Writable before the relationship shows broken_off, as the volume is.
    query = {"fields": "state"}
    until(
        lambda: (
            api(dc2, "GET", f"snapmirror/relationships/{uuid}", query_string=query).get_json()["state"] == "broken_off"
        )
    )
    assert lun(dc2, "/vol/v1/lun0", "status")["status"]["read_only"] is False
    api(dc2, "PATCH", f"snapmirror/relationships/{uuid}", json={"state": "snapmirrored"})
    until(lambda: lun(dc2, "/vol/v1/lun0", "status")["status"]["read_only"] is True)
    filtered = api(dc2, "GET", "storage/luns", query_string={"status.read_only": "true"}).get_json()
    assert {r["name"] for r in filtered["records"]} == {"/vol/v1/lun0", "/vol/v2/data"}


def test_deleting_a_volume_deletes_its_lun_and_maps(clusters: dict[str, Cluster], dc2: Any) -> None:
    api(dc2, "POST", "storage/volumes", json={"name": "gone", "svm": {"name": "svm_dc2"}})
    created = lun_map(dc2, "/vol/gone/lun0", "dc2-mbox1")
    assert created.status_code == 201 and created.get_json()["records"][0]["logical_unit_number"] == 1
    vol_uuid = clusters["dc2"].volumes["gone"].uuid
    assert api(dc2, "DELETE", f"storage/volumes/{vol_uuid}").status_code == 202
    until(lambda: api(dc2, "GET", "storage/luns", query_string={"name": "/vol/gone/*"}).get_json()["num_records"] == 0)
    maps = api(dc2, "GET", "protocols/san/lun-maps").get_json()["records"]
    assert [m["lun"]["name"] for m in maps] == ["/vol/v1/lun0"]
    ig = api(dc2, "GET", "protocols/san/igroups", query_string={"fields": "lun_maps"}).get_json()["records"][0]
    assert [m["lun"]["name"] for m in ig["lun_maps"]] == ["/vol/v1/lun0"]


def test_map_conflicts_and_lun_numbers(dc2: Any) -> None:
    again = lun_map(dc2, "/vol/v1/lun0", "dc2-mbox1")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "1"
    taken = lun_map(dc2, "/vol/v2/data", "dc2-mbox1", logical_unit_number=0)
    assert taken.status_code == 409 and taken.get_json()["error"] == {
        "message": 'Logical unit number 0 is already in use for the initiators of "dc2-mbox1"',
        "code": E_LUN_ID_IN_USE,
        "target": "logical_unit_number",
    }
    # An igroup sharing an initiator shares its numbers, and a LUN reaches an initiator once.
    igroup(dc2, "alias", initiators=[IQN1, IQN2])
    twice = lun_map(dc2, "/vol/v1/lun0", "alias")
    assert twice.status_code == 409 and "already mapped" in twice.get_json()["error"]["message"]
    assert lun_map(dc2, "/vol/v2/data", "alias").get_json()["records"][0]["logical_unit_number"] == 1
    igroup(dc2, "other", initiators=["iqn.2026-01.test.example:other"])
    assert lun_map(dc2, "/vol/v2/data", "other").get_json()["records"][0]["logical_unit_number"] == 0
    bad = lun_map(dc2, "/vol/v2/data", "dc2-mbox1", logical_unit_number=4096)
    assert bad.status_code == 400 and bad.get_json()["error"]["target"] == "logical_unit_number"
    missing = lun_map(dc2, "/vol/v9/lun0", "dc2-mbox1")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "5374875"
    missing = lun_map(dc2, "/vol/v1/lun0", "nobody")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "5374878"
    # Maps page on (lun.uuid, igroup.uuid).
    seen, url = [], "/api/protocols/san/lun-maps?max_records=1&fields=logical_unit_number"
    while url:
        page = dc2.get(url, headers=AUTH).get_json()
        seen += [(m["lun"]["name"], m["igroup"]["name"]) for m in page["records"]]
        url = page["_links"].get("next", {}).get("href")
    assert seen == [("/vol/v1/lun0", "dc2-mbox1"), ("/vol/v2/data", "alias"), ("/vol/v2/data", "other")]


def test_mapped_igroups_and_luns_are_deleted_only_when_allowed(dc2: Any) -> None:
    ig = api(dc2, "GET", "protocols/san/igroups", query_string={"name": "dc2-mbox1"}).get_json()["records"][0]
    v1 = lun(dc2, "/vol/v1/lun0")
    refused = api(dc2, "DELETE", f"protocols/san/igroups/{ig['uuid']}")
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "1254213"
    refused = api(dc2, "DELETE", f"storage/luns/{v1['uuid']}")
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "1254197"
    forced = api(
        dc2, "DELETE", f"protocols/san/igroups/{ig['uuid']}", query_string={"allow_delete_while_mapped": "true"}
    )
    assert forced.status_code == 200
    assert api(dc2, "GET", "protocols/san/lun-maps").get_json()["num_records"] == 0
    assert lun(dc2, "/vol/v1/lun0", "status")["status"]["mapped"] is False
    gone = api(dc2, "DELETE", f"protocols/san/igroups/{ig['uuid']}")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "5374852"
    gone = api(dc2, "DELETE", f"protocols/san/lun-maps/{v1['uuid']}/{ig['uuid']}")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "5374878"
    # An igroup with delete_on_unmap goes with its last map.
    temp = igroup(dc2, "temp", delete_on_unmap=True)
    lun_map(dc2, "/vol/v1/lun0", "temp")
    assert api(dc2, "GET", "protocols/san/lun-maps/nope/nope").status_code == 404
    nomap = api(dc2, "DELETE", f"protocols/san/lun-maps/{lun(dc2, '/vol/v2/data')['uuid']}/{temp['uuid']}")
    assert nomap.status_code == 404 and nomap.get_json()["error"]["code"] == "5374922"
    assert api(dc2, "DELETE", f"protocols/san/lun-maps/{v1['uuid']}/{temp['uuid']}").status_code == 200
    assert api(dc2, "GET", f"protocols/san/igroups/{temp['uuid']}").status_code == 404


def test_lun_and_igroup_create_patch_delete(clusters: dict[str, Cluster], dc2: Any) -> None:
    dc1 = create_app(clusters["dc1"], "admin", "pw").test_client()
    old = lun(dc1, "/vol/v1/lun0")
    assert api(dc1, "DELETE", f"storage/luns/{old['uuid']}").status_code == 200
    gone = api(dc1, "DELETE", f"storage/luns/{old['uuid']}")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "5374875"
    assert api(dc1, "GET", f"storage/luns/{old['uuid']}").get_json()["error"]["code"] == "4"
    body = {"svm": {"name": "svm_dc1"}, "name": "/vol/v1/db", "os_type": "linux", "space": {"size": 1 << 20}}
    resp = api(dc1, "POST", "storage/luns", json=body)
    assert resp.status_code == 201 and resp.get_json() == {}
    made = dc1.get(resp.headers["Location"], headers=AUTH).get_json()
    assert made["name"] == "/vol/v1/db" and made["space"]["size"] == 1 << 20 and made["uuid"] != old["uuid"]
    second = api(dc1, "POST", "storage/luns", json=body | {"name": "/vol/v1/db2"})
    assert second.status_code == 400 and "one per volume" in second.get_json()["error"]["message"]
    no_size = api(dc1, "POST", "storage/luns", json={k: v for k, v in body.items() if k != "space"})
    assert no_size.status_code == 400 and no_size.get_json()["error"]["target"] == "space.size"
    ro = api(dc2, "DELETE", f"storage/luns/{lun(dc2, '/vol/v2/data')['uuid']}")
    assert ro.status_code == 200
    ro = api(dc2, "POST", "storage/luns", json=body | {"svm": {"name": "svm_dc2"}, "name": "/vol/v2/data"})
    assert ro.status_code == 400 and "read-only" in ro.get_json()["error"]["message"]
    patched = api(dc1, "PATCH", f"storage/luns/{made['uuid']}", json={"enabled": False, "name": "/vol/v1/db0"})
    assert patched.status_code == 200
    after = api(dc1, "GET", f"storage/luns/{made['uuid']}").get_json()
    assert after["status"]["state"] == "offline" and after["enabled"] is False and after["name"] == "/vol/v1/db0"
    moved = api(dc1, "PATCH", f"storage/luns/{made['uuid']}", json={"name": "/vol/v2/db0"})
    assert moved.status_code == 400
    # Igroups: required fields, protocol-checked initiators, unique names, PATCH.
    missing = api(dc2, "POST", "protocols/san/igroups", json={"svm": {"name": "svm_dc2"}, "name": "x"})
    assert missing.status_code == 400 and missing.get_json()["error"]["target"] == "os_type"
    wrong = api(
        dc2,
        "POST",
        "protocols/san/igroups",
        json={
            "svm": {"name": "svm_dc2"},
            "name": "fc",
            "os_type": "linux",
            "protocol": "fcp",
            "initiators": [{"name": IQN1}],
        },
    )
    assert wrong.status_code == 400 and wrong.get_json()["error"]["target"] == "initiators.name"
    fc = igroup(dc2, "fc", protocol="fcp", initiators=[{"name": "20:01:00:50:56:bb:70:72"}])
    assert fc["initiators"][0]["name"] == "20:01:00:50:56:bb:70:72" and fc["svm"]["name"] == "svm_dc2"
    dup = api(dc2, "POST", "protocols/san/igroups", json={"svm": {"name": "svm_dc2"}, "name": "fc", "os_type": "linux"})
    assert dup.status_code == 409
    assert api(dc2, "PATCH", f"protocols/san/igroups/{fc['uuid']}", json={"name": "fc2"}).status_code == 200
    assert api(dc2, "GET", f"protocols/san/igroups/{fc['uuid']}").get_json()["name"] == "fc2"
    default = igroup(dc2, "plain", protocol=None)
    assert default["protocol"] == "mixed"


def test_the_netapp_ontap_library_drives_san_objects(tmp_path: Path) -> None:
    from netapp_ontap import HostConnection
    from netapp_ontap.error import NetAppRestError
    from netapp_ontap.resources import Igroup, Lun, LunMap, SnapmirrorRelationship

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
            luns = list(Lun.get_collection(fields="serial_number,status,location,lun_maps,space.size"))
            assert [x.name for x in luns] == ["/vol/mbox1_db/lun0", "/vol/mbox1_index/lun0"]
            assert all(x.status.read_only is True and len(x.serial_number) == 12 for x in luns)
            assert luns[0].location.volume.name == "mbox1_db" and luns[0].lun_maps == []

            host = Igroup(
                svm={"name": "svm_dc2"},
                name="dc2-mbox1",
                os_type="linux",
                protocol="iscsi",
                initiators=[{"name": IQN1}],
            )
            host.post()
            assert host.uuid  # from the Location header
            for name in ("/vol/mbox1_db/lun0", "/vol/mbox1_index/lun0"):
                LunMap(svm={"name": "svm_dc2"}, lun={"name": name}, igroup={"name": "dc2-mbox1"}).post()
            maps = list(LunMap.get_collection(fields="logical_unit_number"))
            assert [(m.lun.name, m.igroup.uuid, m.logical_unit_number) for m in maps] == [
                ("/vol/mbox1_db/lun0", host.uuid, 0),
                ("/vol/mbox1_index/lun0", host.uuid, 1),
            ]
            with pytest.raises(NetAppRestError) as err:
                LunMap(svm={"name": "svm_dc2"}, lun={"name": "/vol/mbox1_db/lun0"}, igroup={"name": "dc2-mbox1"}).post()
            assert err.value.response_body["error"]["code"] == "1"
            with pytest.raises(NetAppRestError) as err:
                host.delete()
            assert err.value.response_body["error"]["code"] == "1254213"

            db = Lun(uuid=maps[0].lun.uuid)
            db.get(fields="lun_maps,status")
            assert db.lun_maps[0].igroup.name == "dc2-mbox1" and db.status.mapped is True
            LunMap(lun={"uuid": maps[0].lun.uuid}, igroup={"uuid": host.uuid}).delete()
            assert [m.lun.name for m in LunMap.get_collection()] == ["/vol/mbox1_index/lun0"]
            host.delete(allow_delete_while_mapped=True)
            assert list(LunMap.get_collection()) == [] and list(Igroup.get_collection()) == []

            # The break makes the destination LUN writable; its serial stays its own.
            rel = SnapmirrorRelationship.find(**{"destination.path": "svm_dc2:mbox1_db"})
            rel.state = "broken_off"
            rel.patch()
            deadline = time.monotonic() + 10
            while True:
                db = Lun(uuid=maps[0].lun.uuid)
                db.get()
                if db.status.read_only is False or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert db.status.read_only is False and db.serial_number == luns[0].serial_number
            assert db.name == "/vol/mbox1_db/lun0" and not hasattr(db, "lun_maps")
        dc1 = HostConnection(
            "127.0.0.1", port=pair.dc1.port, username="admin", password=pair.password, verify=str(pair.ca)
        )
        dc1.session.trust_env = False
        with dc1:
            source = Lun.find(name="/vol/mbox1_db/lun0", fields="serial_number,status")
            assert source.status.read_only is False and source.serial_number != luns[0].serial_number
