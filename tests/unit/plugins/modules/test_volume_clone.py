"""volume_clone against a scripted ONTAP cluster (``responses``): the exact REST exchange,
check mode without a change, idempotence, refusals before any change, the newest snapshot."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import OntapError
from ansible_collections.mailops.zimbra_geo.plugins.modules import volume_clone

BASE = "https://ontap.test:443"
OLD, NEW = "snapmirror.u1_2148504322.2026-11-30_040000", "snapmirror.u1_2148504322.2026-11-30_041500"


class Cluster:
    """Volumes and snapshots of one SVM; a clone or a deletion lands one listing after its job."""

    def __init__(self) -> None:
        self.volumes: dict[str, dict] = {
            "mbox1_db": {"uuid": "v-db", "name": "mbox1_db", "type": "dp", "clone": {"is_flexclone": False}},
            "mbox1_index": {"uuid": "v-ix", "name": "mbox1_index", "type": "dp", "clone": {"is_flexclone": False}},
        }
        self.snaps = [
            {"uuid": "s0", "name": "hourly.2026-11-30_0405", "create_time": "2026-11-30T04:05:00+00:00"},
            {"uuid": "s1", "name": NEW, "create_time": "2026-11-30T04:15:00+00:00"},
            {"uuid": "s2", "name": OLD, "create_time": "2026-11-30T04:00:00+00:00"},
        ]
        self.landing: list[tuple[str, dict | None]] = []
        self.changes: list[tuple[str, Any]] = []

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.get(f"{BASE}/api/cluster", json={"name": "dc2-ontap", "version": {"full": "9.14.1"}})
        rsps.add_callback("GET", f"{BASE}/api/storage/volumes", callback=self.list)
        rsps.add_callback("POST", f"{BASE}/api/storage/volumes", callback=self.post)
        rsps.add_callback("GET", f"{BASE}/api/cluster/jobs", callback=lambda r: (200, {}, '{"records": []}'))
        for vol in ("v-db", "v-ix"):
            rsps.get(f"{BASE}/api/storage/volumes/{vol}/snapshots", json={"records": self.snaps})
        for vol in ("c-mbox1_db_drtest", "c-mbox1_index_drtest", "v-other"):
            rsps.add_callback("DELETE", f"{BASE}/api/storage/volumes/{vol}", callback=self.delete)

    def list(self, request: Any) -> tuple[int, dict, str]:
        for name, record in self.landing:
            if record is None:
                self.volumes.pop(name, None)
            else:
                self.volumes[name] = record
        self.landing = []
        query = parse_qs(urlparse(request.url).query)
        names = query["name"][0].split("|")
        assert query["svm.name"] == ["svm_dc2"]
        records = [v for n, v in self.volumes.items() if n in names]
        return 200, {}, json.dumps({"records": records, "num_records": len(records)})

    def post(self, request: Any) -> tuple[int, dict, str]:
        body = json.loads(request.body)
        self.changes.append(("POST", body))
        record = {"uuid": f"c-{body['name']}", "name": body["name"], "type": "rw", "clone": body["clone"]}
        self.landing.append((body["name"], record))
        return 202, {}, json.dumps({"job": {"uuid": "j1", "_links": {"self": {"href": "/api/cluster/jobs/j1"}}}})

    def delete(self, request: Any) -> tuple[int, dict, str]:
        uuid = urlparse(request.url).path.rsplit("/", 1)[1]
        self.changes.append(("DELETE", uuid))
        self.landing.append((next(n for n, v in self.volumes.items() if v["uuid"] == uuid), None))
        return 202, {}, json.dumps({"job": {"uuid": "j2", "_links": {"self": {"href": "/api/cluster/jobs/j2"}}}})


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volume_clone, "POLL_INTERVAL", 0.01)


def params(**kw: Any) -> dict:
    p = {
        "hostname": "ontap.test",
        "port": 443,
        "username": "admin",
        "password": "secret",
        "validate_certs": True,
        "ca_path": None,
        "timeout": 5.0,
        "svm": "svm_dc2",
        "volumes": ["mbox1_db", "mbox1_index"],
        "clone_suffix": "_drtest",
        "state": "present",
        "snapshot": None,
        "snapshot_prefix": "snapmirror.",
        "wait_timeout": 10.0,
        "max_workers": 4,
    }
    p.update(kw)
    return p


def run(cluster: Cluster, check: bool = False, **kw: Any) -> dict:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cluster.install(rsps)
        return volume_clone.CloneRunner(params(**kw), check, True).run()


def test_check_mode_predicts_the_newest_snapmirror_snapshot_and_changes_nothing() -> None:
    cluster = Cluster()
    res = run(cluster, check=True)
    assert res["changed"] is True and cluster.changes == []
    assert [(c["name"], c["snapshot"], c["snapshot_time"]) for c in res["clones"]] == [
        ("mbox1_db_drtest", NEW, "2026-11-30T04:15:00+00:00"),
        ("mbox1_index_drtest", NEW, "2026-11-30T04:15:00+00:00"),
    ]
    assert res["diff"] == {"before": {}, "after": {"mbox1_db_drtest": NEW, "mbox1_index_drtest": NEW}}


def test_create_then_nothing_to_do_then_delete_then_nothing_to_do() -> None:
    cluster = Cluster()
    res = run(cluster)
    assert res["changed"] is True and all(c["present"] and c["uuid"] for c in res["clones"])
    posts = sorted(cluster.changes, key=lambda c: c[1]["name"])
    assert posts[0] == (
        "POST",
        {
            "name": "mbox1_db_drtest",
            "svm": {"name": "svm_dc2"},
            "type": "rw",
            "clone": {"is_flexclone": True, "parent_volume": {"name": "mbox1_db"}, "parent_snapshot": {"name": NEW}},
        },
    )
    again = run(cluster)
    assert again["changed"] is False and len(cluster.changes) == 2
    assert [c["snapshot"] for c in again["clones"]] == [NEW, NEW]
    gone = run(cluster, state="absent")
    assert gone["changed"] is True and gone["leftovers"] == []
    assert sorted(c[1] for c in cluster.changes[2:]) == ["c-mbox1_db_drtest", "c-mbox1_index_drtest"]
    assert "mbox1_db" in cluster.volumes and "mbox1_db_drtest" not in cluster.volumes
    assert run(cluster, state="absent")["changed"] is False and len(cluster.changes) == 4


def test_a_named_snapshot_is_used() -> None:
    cluster = Cluster()
    res = run(cluster, snapshot=OLD)
    assert [c["snapshot_time"] for c in res["clones"]] == ["2026-11-30T04:00:00+00:00"] * 2


@pytest.mark.parametrize(
    ("setup", "kw", "message"),
    [
        (lambda c: c.volumes.pop("mbox1_index"), {}, "svm_dc2:mbox1_index does not exist"),
        (lambda c: c.snaps.clear(), {}, "has no snapshot named snapmirror.*"),
        (lambda c: None, {"snapshot": "nope"}, "has no snapshot nope"),
        (
            lambda c: c.volumes.update(
                mbox1_db_drtest={"uuid": "v-other", "name": "mbox1_db_drtest", "clone": {"is_flexclone": False}}
            ),
            {"state": "absent"},
            "svm_dc2:mbox1_db_drtest exists and is not a FlexClone of mbox1_db",
        ),
    ],
)
def test_refusals_come_before_any_change(setup: Any, kw: dict, message: str) -> None:
    cluster = Cluster()
    setup(cluster)
    with pytest.raises(OntapError, match="Nothing was changed") as err:
        run(cluster, **kw)
    assert message in str(err.value) and cluster.changes == []


def test_the_password_is_no_log() -> None:
    assert volume_clone.argument_spec()["password"]["no_log"] is True
    assert volume_clone.argument_spec()["validate_certs"]["default"] is True
