"""lun_map run through main() against a scripted ONTAP cluster (``responses``): the exact REST
exchange, check mode without a change, idempotence, ``absent`` touching only this igroup's
maps, refusals before any change, diff only when asked, library errors as clear failures."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mailops.zimbra_geo.plugins.module_utils._ontap import lun_volume
from ansible_collections.mailops.zimbra_geo.plugins.modules import lun_map

BASE = "https://ontap.test:443"
PASSWORD = "pw-never-shown"
DB = "/vol/mbox1_db/lun0"
IX = "/vol/mbox1_index/lun0"


class Cluster:
    """One SVM's volumes, LUNs, igroups and LUN maps; records every request it is sent."""

    def __init__(self) -> None:
        self.volumes = {"mbox1_db": "v-db", "mbox1_index": "v-ix", "mbox1_spare": "v-sp"}
        self.luns = {
            "l-db": {"name": DB, "volume": "mbox1_db", "serial": "wf0Iq+N4uck3", "read_only": True},
            "l-ix": {"name": IX, "volume": "mbox1_index", "serial": "wf0Iq+N4uck4", "read_only": True},
        }
        self.igroups = {"g-mbox1": "dc2-mbox1", "g-other": "dc2-mbox2"}
        self.maps: dict[tuple[str, str], int] = {}  # (LUN uuid, igroup uuid) -> logical unit number
        self.calls: list[tuple[str, str, dict]] = []  # (method, path, query) of every request
        self.changes: list[tuple[str, Any]] = []  # (method, body or path) of every change
        self.fail_post: dict[str, tuple[int, dict]] = {}  # LUN name -> (status, body) to answer

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback("GET", f"{BASE}/api/storage/luns", callback=self.list_luns)
        rsps.add_callback("GET", f"{BASE}/api/protocols/san/igroups", callback=self.list_igroups)
        rsps.add_callback("GET", f"{BASE}/api/storage/volumes", callback=self.list_volumes)
        rsps.add_callback("POST", f"{BASE}/api/protocols/san/lun-maps", callback=self.post_map)
        for lun in self.luns:
            for group in self.igroups:
                rsps.add_callback("DELETE", f"{BASE}/api/protocols/san/lun-maps/{lun}/{group}", callback=self.delete)

    def record(self, request: Any) -> dict[str, str]:
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append((request.method, url.path, query))
        return query

    @staticmethod
    def answer(records: list[dict]) -> tuple[int, dict, str]:
        return 200, {}, json.dumps({"records": records, "num_records": len(records)})

    def list_luns(self, request: Any) -> tuple[int, dict, str]:
        query = self.record(request)
        if query["svm.name"] != "svm_dc2":
            return self.answer([])
        wanted = query["location.volume.name"].split("|")
        return self.answer(
            [
                {
                    "uuid": uuid,
                    "name": lun["name"],
                    "serial_number": lun["serial"],
                    "status": {"read_only": lun["read_only"]},
                    "location": {"volume": {"name": lun["volume"], "uuid": self.volumes[lun["volume"]]}},
                }
                for uuid, lun in self.luns.items()
                if lun["volume"] in wanted
            ]
        )

    def list_igroups(self, request: Any) -> tuple[int, dict, str]:
        query = self.record(request)
        return self.answer(
            [
                {
                    "uuid": uuid,
                    "name": name,
                    "lun_maps": [
                        {"lun": {"uuid": lun, "name": self.luns[lun]["name"]}, "logical_unit_number": number}
                        for (lun, group), number in self.maps.items()
                        if group == uuid
                    ],
                }
                for uuid, name in self.igroups.items()
                if name == query["name"] and query["svm.name"] == "svm_dc2"
            ]
        )

    def list_volumes(self, request: Any) -> tuple[int, dict, str]:
        query = self.record(request)
        names = query["name"].split("|")
        return self.answer([{"uuid": u, "name": n} for n, u in self.volumes.items() if n in names])

    def post_map(self, request: Any) -> tuple[int, dict, str]:
        query = self.record(request)
        body = json.loads(request.body)
        self.changes.append(("POST", body))
        if body["lun"]["name"] in self.fail_post:
            status, error = self.fail_post[body["lun"]["name"]]
            return status, {}, json.dumps(error)
        lun = next(u for u, v in self.luns.items() if v["name"] == body["lun"]["name"])
        group = next(u for u, n in self.igroups.items() if n == body["igroup"]["name"])
        used = {n for (_lun, g), n in self.maps.items() if g == group}
        number = min(n for n in range(len(used) + 1) if n not in used)  # ONTAP: the lowest free one
        self.maps[(lun, group)] = number
        record = {"lun": {"uuid": lun}, "igroup": {"uuid": group}, "logical_unit_number": number}
        answer = {"num_records": 1, "records": [record]} if query.get("return_records") == "true" else {}
        return 201, {"Location": f"/api/protocols/san/lun-maps/{lun}/{group}"}, json.dumps(answer)

    def delete(self, request: Any) -> tuple[int, dict, str]:
        self.record(request)
        lun, group = urlparse(request.url).path.rsplit("/", 2)[1:]
        self.changes.append(("DELETE", f"{lun}/{group}"))
        self.maps.pop((lun, group))
        return 200, {}, "{}"


def args(**kw: Any) -> dict:
    a = {
        "hostname": "ontap.test",
        "password": PASSWORD,
        "timeout": 5,
        "svm": "svm_dc2",
        "igroup": "dc2-mbox1",
        "volumes": ["mbox1_db", "mbox1_index"],
    }
    a.update(kw)
    return a


def run(cluster: Cluster, capsys: pytest.CaptureFixture, check: bool = False, diff: bool = False, **kw: Any) -> dict:
    """Run the module's main() as Ansible would; returns its JSON result (failed or not)."""
    module_args = {**args(**kw), "_ansible_check_mode": check, "_ansible_diff": diff}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        cluster.install(rsps)
        with patch_module_args(module_args), pytest.raises(SystemExit):
            lun_map.main()
    out = capsys.readouterr().out
    assert PASSWORD not in out
    return json.loads(out)


def post(lun: str) -> dict:
    return {"svm": {"name": "svm_dc2"}, "lun": {"name": lun}, "igroup": {"name": "dc2-mbox1"}}


def test_maps_every_lun_of_two_volumes_with_one_post_each(capsys) -> None:
    cluster = Cluster()
    res = run(cluster, capsys)
    assert res["changed"] is True and "failed" not in res
    # Two reads (every LUN of both volumes in one listing, the igroup with its maps), two POSTs.
    assert cluster.calls[:2] == [
        (
            "GET",
            "/api/storage/luns",
            {
                "svm.name": "svm_dc2",
                "location.volume.name": "mbox1_db|mbox1_index",
                "fields": "uuid,name,serial_number,status.read_only,location.volume.name",
            },
        ),
        (
            "GET",
            "/api/protocols/san/igroups",
            {"svm.name": "svm_dc2", "name": "dc2-mbox1", "fields": "uuid,name,lun_maps"},
        ),
    ]
    assert [c[:2] for c in cluster.calls[2:]] == [("POST", "/api/protocols/san/lun-maps")] * 2
    assert cluster.changes == [("POST", post(DB)), ("POST", post(IX))]
    assert cluster.maps == {("l-db", "g-mbox1"): 0, ("l-ix", "g-mbox1"): 1}
    assert res["mapped"] == [DB, IX] and res["unmapped"] == []
    assert res["maps"] == [
        {
            "volume": "mbox1_db",
            "name": DB,
            "uuid": "l-db",
            "serial_number": "wf0Iq+N4uck3",
            "read_only": True,
            "mapped": True,
            "logical_unit_number": 0,
            "changed": True,
        },
        {
            "volume": "mbox1_index",
            "name": IX,
            "uuid": "l-ix",
            "serial_number": "wf0Iq+N4uck4",
            "read_only": True,
            "mapped": True,
            "logical_unit_number": 1,
            "changed": True,
        },
    ]
    assert (res["igroup"], res["svm"]) == ("dc2-mbox1", "svm_dc2")


def test_check_mode_predicts_and_sends_no_change(capsys) -> None:
    cluster = Cluster()
    cluster.maps[("l-db", "g-mbox1")] = 4
    res = run(cluster, capsys, check=True, diff=True)
    assert res["changed"] is True and cluster.changes == [] and cluster.maps == {("l-db", "g-mbox1"): 4}
    assert {c[0] for c in cluster.calls} == {"GET"}
    assert res["mapped"] == [IX]
    assert [(m["name"], m["mapped"], m["logical_unit_number"], m["changed"]) for m in res["maps"]] == [
        (DB, True, 4, False),
        (IX, True, None, True),  # ONTAP picks the number when the map is made
    ]
    assert res["diff"]["after"][IX] == {"mapped": True, "logical_unit_number": None}


def test_second_run_changes_nothing(capsys) -> None:
    cluster = Cluster()
    assert run(cluster, capsys)["changed"] is True
    calls = len(cluster.calls)
    again = run(cluster, capsys)
    assert again["changed"] is False and again["mapped"] == [] and len(cluster.changes) == 2
    assert [c[0] for c in cluster.calls[calls:]] == ["GET", "GET"]
    assert [(m["mapped"], m["logical_unit_number"]) for m in again["maps"]] == [(True, 0), (True, 1)]


def test_absent_removes_only_this_igroups_maps(capsys) -> None:
    cluster = Cluster()
    cluster.maps = {("l-db", "g-mbox1"): 0, ("l-db", "g-other"): 3, ("l-ix", "g-mbox1"): 1}
    res = run(cluster, capsys, state="absent")
    assert res["changed"] is True and res["unmapped"] == [DB, IX] and res["mapped"] == []
    assert cluster.changes == [("DELETE", "l-db/g-mbox1"), ("DELETE", "l-ix/g-mbox1")]
    assert cluster.maps == {("l-db", "g-other"): 3}
    assert all(m["mapped"] is False and m["logical_unit_number"] is None for m in res["maps"])
    again = run(cluster, capsys, state="absent")
    assert again["changed"] is False and len(cluster.changes) == 2


def test_a_read_only_lun_is_mapped_unless_refused(capsys) -> None:
    cluster = Cluster()
    refused = run(cluster, capsys, read_only_ok=False)
    assert refused["failed"] is True and cluster.changes == []
    assert f"LUN {DB} of volume mbox1_db is read-only" in refused["msg"]
    assert f"LUN {IX} of volume mbox1_index is read-only" in refused["msg"]
    cluster.luns["l-db"]["read_only"] = cluster.luns["l-ix"]["read_only"] = False  # after the break
    assert run(cluster, capsys, read_only_ok=False)["mapped"] == [DB, IX]


@pytest.mark.parametrize(
    ("setup", "kw", "problems"),
    [
        (lambda c: c.igroups.pop("g-mbox1"), {}, ["initiator group dc2-mbox1 does not exist in SVM svm_dc2"]),
        (lambda c: None, {"volumes": ["mbox1_db", "mbox1_spare"]}, ["volume mbox1_spare has no LUN"]),
        (lambda c: None, {"volumes": ["mbox1_db", "nope"]}, ["volume nope does not exist in SVM svm_dc2"]),
        (
            lambda c: c.igroups.pop("g-mbox1"),
            {"volumes": ["nope", "mbox1_db", "mbox1_spare"], "state": "absent"},
            [
                "volume nope does not exist in SVM svm_dc2",
                "volume mbox1_spare has no LUN",
                "initiator group dc2-mbox1 does not exist in SVM svm_dc2",
            ],
        ),
    ],
)
def test_refusals_come_before_any_change_in_one_message(capsys, setup: Any, kw: dict, problems: list[str]) -> None:
    cluster = Cluster()
    setup(cluster)
    res = run(cluster, capsys, **kw)
    assert res["failed"] is True and cluster.changes == []
    prefix = "Nothing was changed on ONTAP cluster ontap.test:443, SVM svm_dc2, initiator group dc2-mbox1: "
    assert res["msg"] == prefix + "; ".join(problems)
    assert {c[0] for c in cluster.calls} == {"GET"}


def test_the_volumes_are_read_only_for_those_without_a_lun(capsys) -> None:
    cluster = Cluster()
    run(cluster, capsys, volumes=["mbox1_db", "mbox1_spare", "nope"])
    volume_reads = [c[2] for c in cluster.calls if c[1] == "/api/storage/volumes"]
    assert [q["name"] for q in volume_reads] == ["mbox1_spare|nope"]


def test_no_volume_is_refused_before_any_call(capsys) -> None:
    cluster = Cluster()
    res = run(cluster, capsys, volumes=[])
    assert res["failed"] is True and "at least one volume" in res["msg"] and cluster.calls == []


def test_diff_only_when_asked(capsys) -> None:
    cluster = Cluster()
    cluster.maps[("l-db", "g-mbox1")] = 2
    assert "diff" not in run(cluster, capsys, check=True)
    res = run(cluster, capsys, diff=True)
    assert res["diff"] == {
        "before": {
            DB: {"mapped": True, "logical_unit_number": 2},
            IX: {"mapped": False, "logical_unit_number": None},
        },
        "after": {
            DB: {"mapped": True, "logical_unit_number": 2},
            IX: {"mapped": True, "logical_unit_number": 0},
        },
    }


def test_an_ontap_error_fails_naming_cluster_svm_igroup_and_volume(capsys) -> None:
    cluster = Cluster()
    message = f'LUN "{IX}" is already mapped to initiator group "x"'
    cluster.fail_post[IX] = (409, {"error": {"message": message, "code": "5374922"}})
    res = run(cluster, capsys)
    assert res["failed"] is True and res["error_code"] == "5374922"
    assert res["msg"] == (
        f"ONTAP cluster ontap.test:443: failed to map LUN {IX} (volume mbox1_index) to initiator group dc2-mbox1 "
        f'in SVM svm_dc2: LUN "{IX}" is already mapped to initiator group "x" (HTTP 409, code 5374922); '
        f"changed before it: {DB}"
    )
    assert cluster.maps == {("l-db", "g-mbox1"): 0}


def test_refused_credentials_fail_without_the_password(capsys) -> None:
    cluster = Cluster()

    def refuse(request: Any) -> tuple[int, dict, str]:
        cluster.record(request)
        return 401, {}, json.dumps({"error": {"message": "not authorized", "code": "6"}})

    cluster.list_luns = refuse  # type: ignore[method-assign]
    res = run(cluster, capsys)  # run() asserts the password is nowhere in the output
    assert res["failed"] is True and cluster.changes == []
    assert res["msg"] == (
        "ONTAP cluster ontap.test:443 refused the credentials while trying to list the LUNs of "
        "volumes mbox1_db, mbox1_index in SVM svm_dc2"
    )


def test_options_match_the_house_rules() -> None:
    spec = lun_map.argument_spec()
    assert spec["password"]["no_log"] is True and spec["validate_certs"]["default"] is True
    assert spec["state"]["default"] == "present" and spec["read_only_ok"]["default"] is True
    assert spec["volumes"]["required"] and spec["igroup"]["required"] and spec["svm"]["required"]


@pytest.mark.parametrize(
    ("name", "volume"), [(DB, "mbox1_db"), ("/vol/mbox1_db/qt1/lun0", "mbox1_db"), ("odd", "odd")]
)
def test_the_volume_of_a_lun_path(name: str, volume: str) -> None:
    assert lun_volume(name) == volume


def test_turning_verification_off_is_warned_about(capsys, monkeypatch) -> None:
    # In a test process Ansible hands module warnings to its controller display: catch them here.
    seen: list[str] = []
    monkeypatch.setattr(lun_map.AnsibleModule, "warn", lambda self, warning, **kw: seen.append(warning))
    res = run(Cluster(), capsys, validate_certs=False)
    assert res["changed"] is True
    assert [w.split(":")[0] for w in seen] == ["validate_certs=false"] and "impersonate" in seen[0]
